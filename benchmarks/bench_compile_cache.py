"""Compile time of a short CPU training run without, with an empty and with a warm persistent
compilation cache (bnstudy.core.backend.use_compilation_cache).

Each run is a fresh Python process that trains the study's candidate (BN) model of the chosen
environment for ``--steps`` steps on synthetic data with ``train_seeds``, as the training node
of ``kedro run --env cpu --pipelines training --namespaces candidate`` does: every program such
a run compiles (the plain and the measured step, the evaluation, the snapshot) is compiled or
loaded once. Per repeat, three processes run in this order:

* off: ``BNSTUDY_JAX_CACHE=0`` (JAX compiles everything, writes nothing);
* cold: a new, empty cache folder (JAX compiles everything and writes it);
* warm: the same folder again (JAX loads everything).

Printed per mode, medians over the repeats:

* XLA s: the time JAX spent in XLA compilation or in loading from the cache, summed over the
  process's programs (JAX's ``/jax/core/compile/backend_compile_duration`` events);
* trace+lower s: tracing to jaxprs and lowering to StableHLO, which no cache skips;
* train s: the wall time of the ``train_seeds`` call (compiles and the steps);
* process s: the whole child process, imports and data included; CPU s its CPU time (user +
  system, all threads), which other work on a shared machine inflates less than wall times;
* programs, hits, writes: compiled programs, cache hits and cache entries written.

The traces of the three processes are compared bit for bit (a SHA-256 over every array of the
results): a loaded executable has to compute exactly what a compiled one does.

    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/bench_compile_cache.py --config cpu --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = ("off", "cold", "warm")
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
TRACE_AND_LOWER = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration")
CACHE_HITS = "/jax/compilation_cache/cache_hits"
CACHE_WRITES = "/jax/compilation_cache/cache_misses"  # recorded when an entry is written


TIMING_FIELDS = ("wall_time_s", "compile_time_s")  # of the run, not of its numbers


def results_digest(results) -> str:
    """SHA-256 over every array and value of a list of TrainingResult, in a fixed order,
    its timings left out."""
    import numpy as np

    digest = hashlib.sha256()

    def walk(value) -> None:
        if isinstance(value, dict):
            for key in sorted(value, key=str):
                digest.update(repr(key).encode())
                walk(value[key])
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, np.ndarray | np.generic):
            array = np.ascontiguousarray(value)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
        else:
            digest.update(repr(value).encode())

    walk([{key: value for key, value in dataclasses.asdict(result).items()
           if key not in TIMING_FIELDS} for result in results])
    return digest.hexdigest()


def child(config: str, steps: int) -> dict:
    """One training run in this process; returns its timings, counts and digest."""
    from bnstudy.core.backend import use_compilation_cache, use_cpu_flags

    use_cpu_flags()  # as kedro run starts (bnstudy.xla_hooks), before JAX starts a backend
    folder = use_compilation_cache(ROOT)
    import jax
    import numpy as np
    from study_config import study_configs

    from bnstudy.core.training import train_seeds

    durations: dict[str, float] = {}
    counts: dict[str, int] = {}

    def on_duration(event: str, seconds: float, **_: object) -> None:
        durations[event] = durations.get(event, 0.0) + seconds
        counts[event] = counts.get(event, 0) + 1

    def on_event(event: str, **_: object) -> None:
        counts[event] = counts.get(event, 0) + 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)

    model_config, train_config, presets = study_configs(config, normalization="batch")
    train_config = dataclasses.replace(train_config, max_steps=steps)
    rng = np.random.default_rng(0)
    side, channels = model_config.image_size, model_config.in_channels
    x_train = rng.normal(size=(1280, side, side, channels)).astype(np.float32)
    y_train = rng.integers(0, model_config.num_classes, 1280).astype(np.int32)
    x_test = rng.normal(size=(256, side, side, channels)).astype(np.float32)
    y_test = rng.integers(0, model_config.num_classes, 256).astype(np.int32)
    start = time.perf_counter()
    results = train_seeds(model_config, train_config, presets, x_train, y_train, x_test, y_test)
    train_s = time.perf_counter() - start
    return {"folder": folder, "train_s": train_s,
            "xla_s": durations.get(BACKEND_COMPILE, 0.0),
            "trace_lower_s": sum(durations.get(event, 0.0) for event in TRACE_AND_LOWER),
            "programs": counts.get(BACKEND_COMPILE, 0), "hits": counts.get(CACHE_HITS, 0),
            "writes": counts.get(CACHE_WRITES, 0), "cpu_s": time.process_time(),
            "digest": results_digest(results)}


def run_child(config: str, steps: int, cache: str) -> dict:
    """A fresh process of :func:`child` with ``BNSTUDY_JAX_CACHE=cache``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
    env.update(BNSTUDY_JAX_CACHE=cache, JAX_PLATFORMS=env.get("JAX_PLATFORMS", "cpu"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", "--config", config,
                           "--steps", str(steps)], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {cache!r} run failed (exit {done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record["process_s"] = time.perf_counter() - start
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=("test", "cpu"), default="cpu",
                        help="the environment whose model and training settings run")
    parser.add_argument("--steps", type=int, default=2, help="training steps of each run")
    parser.add_argument("--repeats", type=int, default=1, help="off/cold/warm triples")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.config, args.steps)))
        return 0
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    digests = set()
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bnstudy-jax-cache-") as folder:
            for mode in MODES:
                record = run_child(args.config, args.steps, "0" if mode == "off" else folder)
                files = [path for path in Path(folder).iterdir() if path.is_file()]
                entries = len(files)
                megabytes = sum(path.stat().st_size for path in files) / 1e6
                runs[mode].append(record)
                digests.add(record["digest"])
                print(f"repeat {repeat + 1} {mode:>4}: XLA {record['xla_s']:.1f} s, "
                      f"train {record['train_s']:.1f} s, process {record['process_s']:.1f} s "
                      f"(CPU {record['cpu_s']:.1f} s), "
                      f"{record['programs']} programs, {record['hits']} hits, "
                      f"{record['writes']} writes, {entries} files ({megabytes:.1f} MB) in the cache, "
                      f"digest {record['digest'][:12]}", flush=True)
    columns = ("XLA s", "trace+lower s", "train s", "process s", "CPU s", "programs", "hits",
               "writes")
    keys = ("xla_s", "trace_lower_s", "train_s", "process_s", "cpu_s", "programs", "hits",
            "writes")
    print(f"\n{args.config} config, {args.steps} steps, medians of {args.repeats}:")
    print(f"{'mode':>6}" + "".join(f"{column:>15}" for column in columns))
    medians = {mode: {key: statistics.median(run[key] for run in runs[mode]) for key in keys}
               for mode in MODES}
    for mode in MODES:
        print(f"{mode:>6}" + "".join(f"{medians[mode][key]:>15.2f}" if key.endswith("_s")
                                     else f"{medians[mode][key]:>15.0f}" for key in keys))
    for key, label in (("xla_s", "XLA time"), ("train_s", "train time"),
                       ("process_s", "process time"), ("cpu_s", "CPU time")):
        print(f"{label}: cold/warm x{medians['cold'][key] / medians['warm'][key]:.1f}, "
              f"off/cold x{medians['off'][key] / medians['cold'][key]:.2f}")
    same = len(digests) == 1
    print(f"results bitwise equal across off, cold and warm: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
