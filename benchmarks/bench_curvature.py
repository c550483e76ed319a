"""What the curvature measurements cost, against a measured step (both protocols).

    python benchmarks/bench_curvature.py --config cpu --repeats 3

For a named configuration (``test``, ``cpu`` or ``paper``: see bench_training.py), on the
BN candidate at its initial weights and synthetic data, it times (medians of ``--repeats``
runs after a compiling warm-up, in one process):

* one Hessian-vector product on the probe set (``curvature_probe_size`` examples in groups
  of ``curvature_group`` batches): one power iteration;
* one batch sharpness (one gradient and one HVP on a training batch);
* one whole curvature measurement as training runs it (``measure_curvature``: power
  iteration to ``curvature_rtol``, Hutchinson's trace with ``curvature_trace_samples``
  HVPs, then the batch sharpness), with its iteration count;
* a measured training step (both presets, every step, as bench_training.py's "measured").

and prints each as a multiple of the measured step, and the amortized cost of curvature
every ``curvature_every`` steps of the study (per step, as a fraction of a measured step).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import CONFIGS, PRESET_LIST, CoreRunner, synthetic_data  # noqa: E402

from bnstudy.core.backend import use_cpu_flags  # noqa: E402
from bnstudy.core.curvature import (  # noqa: E402
    batch_sharpness,
    measure_curvature,
    probe_matvec,
    probe_set,
)
from bnstudy.core.programs import call  # noqa: E402
from bnstudy.core.state import run_slice  # noqa: E402


def _median_seconds(run, repeats: int) -> tuple[float, float]:
    """(first call's seconds, median of ``repeats`` later calls)."""
    started = time.perf_counter()
    run()
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return first, statistics.median(times)


def run(config_name: str, repeats: int, probe_size: int | None) -> dict:
    model_config, study_train, _ = CONFIGS[config_name]
    train_config = study_train if probe_size is None else dataclasses.replace(
        study_train, curvature_probe_size=probe_size)
    num_train = max(train_config.curvature_probe_size, 4 * train_config.batch_size)
    x, y = synthetic_data(model_config, num_train)
    with CoreRunner(model_config, train_config, PRESET_LIST, x, y, 1) as runner:
        _, measured = _median_seconds(runner.chunk, repeats)
        spec, states, data = runner.spec, runner.states, runner.data
        probe = probe_set(train_config, data["x"], data["y"])
        state = run_slice(states, 0)
        matvec, _ = probe_matvec(spec, state, *probe)
        hvp_first, hvp = _median_seconds(lambda: jax.block_until_ready(matvec(state.params)),
                                         repeats)
        x_batch, y_batch = data["x"][:train_config.batch_size], data["y"][:train_config.batch_size]
        _, sharpness = _median_seconds(lambda: jax.block_until_ready(call(
            "batch_sharpness", batch_sharpness, spec, state.params, state.batch_stats,
            x_batch, y_batch)), repeats)
        results = []
        _, whole = _median_seconds(lambda: results.append(measure_curvature(
            spec, train_config, states, data, probe, 0, jnp.full(1, -1))), repeats)
    iterations = results[-1][0]["power_iterations"]
    every = study_train.curvature_every
    device = jax.devices()[0]
    print(f"config {config_name}: widths {model_config.conv_widths}, batch "
          f"{train_config.batch_size}, probe set {train_config.curvature_probe_size} examples "
          f"in groups of {train_config.curvature_group} batches, rtol "
          f"{train_config.curvature_rtol}; device {device.platform} ({device.device_kind}); "
          f"medians of {repeats} after a warm-up")
    rows = [("measured step (blog+paper)", measured),
            ("one HVP on the probe set (one power iteration)", hvp),
            ("batch sharpness (gradient + HVP, one batch)", sharpness),
            (f"whole curvature measurement ({iterations} power iterations + "
             f"{train_config.curvature_trace_samples} trace samples + sharpness)", whole)]
    for label, seconds in rows:
        print(f"  {label:<62} {seconds:8.3f} s  = {seconds / measured:6.2f} measured steps")
    print(f"  compile (first HVP call minus a steady one): {max(0.0, hvp_first - hvp):.1f} s")
    summary = {"measured_s": measured, "hvp_s": hvp, "sharpness_s": sharpness,
               "curvature_s": whole, "iterations": iterations,
               "trace_samples": train_config.curvature_trace_samples,
               "curvature_over_measured": whole / measured}
    if every:
        amortized = whole / every / measured
        print(f"  every {every} steps (this config's curvature_every): "
              f"{amortized:.4f} of a measured step per step ({100 * amortized:.2f}%)")
        summary["amortized_over_measured"] = amortized
    else:
        print("  this config has curvature_every null (curvature off)")
    return summary


def main(argv: list[str] | None = None) -> int:
    use_cpu_flags()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probe-size", type=int, default=None,
                        help="curvature_probe_size (default: the config's)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    run(args.config, args.repeats, args.probe_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
