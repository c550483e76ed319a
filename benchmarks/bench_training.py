"""Throughput, compile time, FLOPs and memory of the measured training step.

    python benchmarks/bench_training.py --config cpu --steps 3 --repeats 3

prints one table for a named configuration (``test``: a tiny network, seconds; ``cpu``: the
VGG at 1/8 width, batch 128; ``paper``: the full VGG, batch 128, for a GPU) with, for the
measured step (both presets, every step), the plain training step and (``--reference``) the
seed-style loop of benchmarks/seed_style_reference.py:

* steps/s: median over ``--repeats`` chunks of ``--steps`` steps after a warm-up chunk;
* compile: warm-up chunk time minus a steady chunk's time (all programs compile there);
* GFLOP/step: XLA's own count, ``compiled.cost_analysis()["flops"]`` summed over every
  program one step dispatches in the host loop (the scan loop runs the same arithmetic);
* GFLOP/s achieved, peak host RSS, peak device memory where the backend reports it;

then the measurement efficiency = (measured time / plain time) / (measured FLOPs / plain
FLOPs), the speed ratio against the seed-style loop, and whether both computed the same
measurements (float32: rtol 2e-3 on every value, see ``check_agreement``). The data are
synthetic normalized CIFAR-shaped arrays (random normal images, uniform labels).
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import functools
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for seed_style_reference

from xla_cost import compiled_flops  # noqa: E402

from bnstudy.core import (  # noqa: E402
    PRESETS,
    TINY_MODEL_CONFIG,
    ModelConfig,
    TrainConfig,
    epoch_permutations,
    get_trainer,
    measurement_cadences,
    run_chunk,
)
from bnstudy.core.config import MATMUL_PRECISIONS  # noqa: E402
from bnstudy.core.training import Trainer  # noqa: E402

CONFIGS: dict[str, tuple[ModelConfig, int, int]] = {
    # name: (model, batch size, training examples)
    "test": (TINY_MODEL_CONFIG, 8, 64),
    "cpu": (ModelConfig(width_multiplier=0.125), 128, 1280),
    "paper": (ModelConfig(), 128, 1280),
}
PRESET_NAMES = ("blog", "paper")  # measured by default: both protocols
PRESET_LIST = tuple(PRESETS[name] for name in PRESET_NAMES)
# Programs of the host loop (Trainer attributes) whose dispatches make up one step.
HOST_PROGRAMS = ("step", "measured_step", "probe_point", "probe_summary", "layer_forward",
                 "layer_input_cotangent", "layer_param_gradient", "loss_cotangent",
                 "ics_compare")
COLUMNS = ("path", "steps/s", "s/step", "compile s", "GFLOP/step", "GFLOP/s",
           "peak RSS MB", "device peak MB")
AGREEMENT_RTOL = 2e-3


@dataclasses.dataclass
class Timing:
    seconds_per_step: float
    compile_s: float
    flops_per_step: float | None
    outputs: dict | None = None
    # Process peaks when this path had compiled and run its first chunk (paths run in
    # table order, so a row includes the rows above it).
    peak_rss_mb: float = 0.0
    device_peak_mb: float | None = None


def synthetic_data(model_config: ModelConfig, num_train: int, seed: int = 0):
    """Normalized CIFAR-shaped arrays: images [N, H, W, C] float32 ~ N(0, 1), labels [N]."""
    rng = np.random.default_rng(seed)
    side, channels = model_config.image_size, model_config.in_channels
    x = rng.normal(size=(num_train, side, side, channels)).astype(np.float32)
    y = rng.integers(0, model_config.num_classes, num_train).astype(np.int32)
    return x, y


def _device_data(trainer: Trainer, train_config: TrainConfig, presets, x, y, state):
    key = jax.random.key(train_config.seed)
    steps_per_epoch = train_config.steps_per_epoch(x.shape[0])
    epochs = -(-train_config.total_steps(x.shape[0]) // steps_per_epoch)
    return {
        "x": jnp.asarray(x), "y": jnp.asarray(y),
        "permutations": epoch_permutations(jax.random.fold_in(key, 1), epochs, x.shape[0])[
            :, : steps_per_epoch * train_config.batch_size],
        "initial_params": jax.tree.map(jnp.copy, state["params"]),
        "cadences": measurement_cadences(trainer, presets),
    }


def count_step_flops(trainer: Trainer, state, data, step: int) -> tuple[float, object]:
    """XLA FLOPs of one host-loop step: every program it dispatches, each call counted.

    Runs the step with the trainer's programs wrapped to record their argument shapes, then
    sums ``lower(...).compile().cost_analysis()["flops"]`` (already compiled: cache hits).
    Returns (flops, new state).
    """
    calls: list[tuple[str, tuple, dict]] = []
    originals = {name: getattr(trainer, name) for name in HOST_PROGRAMS}

    def recording(name: str, fn: Callable):
        def call(*args, **kwargs):
            abstract = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype)
                if not isinstance(a, jax.Array) else jax.ShapeDtypeStruct(a.shape, a.dtype), args)
            calls.append((name, abstract, kwargs))
            return fn(*args, **kwargs)
        return call

    for name, fn in originals.items():
        setattr(trainer, name, recording(name, fn))
    try:
        due = {name: True for name in data["cadences"]}
        state, outputs = trainer.host_step(state, data, step, due, snapshot=False)
        jax.block_until_ready(outputs)
    finally:
        for name, fn in originals.items():
            setattr(trainer, name, fn)
    flops, cache = 0.0, {}
    for name, abstract, kwargs in calls:
        key = (name, str(jax.tree.map(lambda a: (a.shape, str(a.dtype)), abstract)),
               tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = compiled_flops(originals[name], *abstract, **kwargs)
        flops += cache[key]
    return flops, state


class CoreRunner:
    """The compiled path (host or scan loop) in chunks of ``steps`` steps from step 0."""

    def __init__(self, model_config, train_config, presets, x, y, steps: int):
        # No evaluation or snapshot inside the timed chunks (they run every 200 steps).
        self.config = dataclasses.replace(train_config, steps_per_chunk=steps,
                                          eval_every=steps * 10**6, snapshot_every=10**9)
        self.model_config, self.presets, self.x, self.y = model_config, presets, x, y
        self.trainer = get_trainer(model_config, self.config, presets, snapshots=False)
        self.state = self.trainer.init_state(self._init_key())
        self.data = _device_data(self.trainer, self.config, presets, x, y, self.state)
        self.steps, self.start, self.first_outputs = steps, 0, None

    def _init_key(self):
        return jax.random.fold_in(jax.random.key(self.config.seed), 0)

    def chunk(self) -> float:
        """Run the next chunk; returns its wall time per step (the first one compiles)."""
        started = time.perf_counter()
        self.state, outputs = run_chunk(self.trainer, self.state, self.data, self.start, 10**9)
        jax.block_until_ready(self.state)
        seconds = time.perf_counter() - started
        self.start += self.steps
        self.first_outputs = outputs if self.first_outputs is None else self.first_outputs
        return seconds / self.steps

    def flops_per_step(self) -> float:
        """XLA FLOPs of one step, counted on the host loop's programs (the scan loop runs
        the same arithmetic in one program)."""
        if self.trainer.step_loop == "host":
            flops, self.state = count_step_flops(self.trainer, self.state, self.data,
                                                 self.start)
            return flops
        host = get_trainer(self.model_config, dataclasses.replace(self.config, step_loop="host"),
                           self.presets, snapshots=False)
        state = host.init_state(self._init_key())
        data = _device_data(host, self.config, self.presets, self.x, self.y, state)
        return count_step_flops(host, state, data, 0)[0]


class ReferenceRunner:
    """The seed-style loop, one step at a time from step 0."""

    def __init__(self, model_config, train_config, presets, x, y):
        from seed_style_reference import SeedStyleLoop

        self.loop = SeedStyleLoop(model_config, train_config, x, y)
        self.presets, self.records = presets, []

    def chunk(self) -> float:
        started = time.perf_counter()
        with jax.default_matmul_precision(self.loop.config.matmul_precision):
            self.records.append(self.loop.step(self.presets))
        return time.perf_counter() - started

    def flops_per_step(self) -> float:
        """XLA FLOPs of one more step, summed over the jitted calls it makes."""
        with jax.default_matmul_precision(self.loop.config.matmul_precision):
            flops, record = self.loop.count_step_flops(self.presets)
        self.records.append(record)
        return flops


def measure(runners: dict, repeats: int) -> dict[str, Timing]:
    """Warm every runner up (compiles), then ``repeats`` rounds of one chunk each,
    interleaved so that load from other processes hits every path alike; medians."""
    first, peaks = {}, {}
    for name, runner in runners.items():
        first[name] = runner.chunk()
        peaks[name] = (peak_rss_mb(), device_peak_mb())
    rounds = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            rounds[name].append(runner.chunk())
    timings = {}
    for name, runner in runners.items():
        steady = statistics.median(rounds[name])
        steps = getattr(runner, "steps", 1)
        flops = runner.flops_per_step()
        timings[name] = Timing(steady, max(0.0, (first[name] - steady) * steps), flops,
                               {"runner": runner}, *peaks[name])
    return timings


def check_agreement(core: Timing, reference: Timing, presets, rtol: float = AGREEMENT_RTOL):
    """Compare the measurements of the steps both loops ran (from the same start).

    Every value to ``rtol``; values near zero (conv_0's train-mode ICS, rounding only) to an
    absolute tolerance of ``rtol`` times the largest value of the same row. The batch
    accuracy after the step may differ by one example (a logit tie broken by rounding).
    Returns (passed, largest deviation as a fraction of the tolerance, steps compared).
    """
    core_runner = core.outputs["runner"]
    trainer, outputs = core_runner.trainer, core_runner.first_outputs
    reference_loop = reference.outputs["runner"].loop
    records = reference.outputs["runner"].records
    steps = min(len(records), len(outputs["train_loss"]))
    worst, passed = 0.0, True
    one_example = 1.001 / reference_loop.config.batch_size  # with room for rounding
    for step in range(steps):
        accuracy_gap = abs(float(outputs["train_accuracy"][step]) - records[step]["train_accuracy"])
        worst = max(worst, accuracy_gap / one_example)
        passed = passed and accuracy_gap <= one_example
        pairs = [(outputs["train_loss"][step], records[step]["train_loss"])]
        for preset in presets:
            ics = outputs[trainer.ics_name(preset)]
            probe = outputs[trainer.probe_name(preset)]
            expected = records[step][preset.name]
            pairs += [(ics["l2_layer"][step], expected["ics_l2"]),
                      (ics["cosine_layer"][step], expected["ics_cosine"]),
                      (probe["loss"][step], expected["probe_loss"]),
                      (probe["grad_diff"][step], expected["grad_diff"]),
                      (probe["beta_smoothness"][step], expected["beta_smoothness"])]
        for got_value, want_value in pairs:
            got = np.atleast_1d(np.asarray(got_value, np.float64))
            want = np.atleast_1d(want_value)
            finite = np.isfinite(want)  # a cosine of a zero gradient is NaN in both
            if not np.array_equal(finite, np.isfinite(got)):
                passed = False
                continue
            scale = np.max(np.abs(want[finite])) if finite.any() else 0.0
            # The deviation as a fraction of what np.allclose(rtol, atol=rtol*scale) allows.
            allowed = rtol * scale + rtol * np.abs(want[finite])
            fraction = np.abs(got[finite] - want[finite]) / np.maximum(allowed, 1e-300)
            worst = max(worst, float(fraction.max(initial=0.0)))
            passed = passed and bool(np.all(fraction <= 1.0))
    return passed, worst, steps


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10


def device_peak_mb() -> float | None:
    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def _fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


def run(config_name: str, steps: int, repeats: int, reference: bool,
        out: TextIO | None = None, matmul_precision: str = "highest",
        preset_names: tuple[str, ...] = PRESET_NAMES, step_loop: str = "auto") -> dict:
    """Run the benchmark, print the table to ``out`` (default stdout) and return its numbers."""
    out = sys.stdout if out is None else out
    print = functools.partial(builtins.print, file=out, flush=True)  # noqa: A001
    model_config, batch_size, num_train = CONFIGS[config_name]
    train_config = TrainConfig(batch_size=batch_size, eval_batch_size=batch_size,
                               matmul_precision=matmul_precision, step_loop=step_loop)
    x, y = synthetic_data(model_config, num_train)
    presets = [PRESETS[name] for name in preset_names]
    runners = {"plain": CoreRunner(model_config, train_config, [], x, y, steps),
               "measured": CoreRunner(model_config, train_config, presets, x, y, steps)}
    if reference:
        runners["reference"] = ReferenceRunner(model_config, train_config, presets, x, y)
    timings = measure(runners, repeats)
    plain, measured, ref = timings["plain"], timings["measured"], timings.get("reference")
    rows = [("plain", plain), (f"measured ({'+'.join(preset_names)})", measured)]
    if ref is not None:
        rows.append(("seed-style reference", ref))
    device = jax.devices()[0]
    print(f"config {config_name}: widths {model_config.conv_widths}, dense "
          f"{model_config.dense_widths}, batch {batch_size}, {model_config.image_size}px; "
          f"device {device.platform} ({device.device_kind}), {jax.device_count()} device(s); "
          f"matmul precision {matmul_precision}; steps/chunk {steps}, repeats {repeats}; "
          "step loop "
          f"{runners['measured'].trainer.step_loop}; chunks interleaved")
    table = []
    for name, timing in rows:
        flops = timing.flops_per_step
        table.append({
            "path": name, "steps/s": 1.0 / timing.seconds_per_step,
            "s/step": timing.seconds_per_step, "compile s": timing.compile_s,
            "GFLOP/step": None if flops is None else flops / 1e9,
            "GFLOP/s": None if flops is None else flops / 1e9 / timing.seconds_per_step,
            "peak RSS MB": timing.peak_rss_mb, "device peak MB": timing.device_peak_mb})
    widths = [max(len(c), 12) for c in COLUMNS]
    widths[0] = max(len(r["path"]) for r in table)
    print("  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths)))
    for row in table:
        print("  ".join(_fmt(row[c]).rjust(w) for c, w in zip(COLUMNS, widths)))
    summary = {"table": table,
               "time_ratio": measured.seconds_per_step / plain.seconds_per_step,
               "flop_ratio": measured.flops_per_step / plain.flops_per_step}
    summary["efficiency"] = summary["time_ratio"] / summary["flop_ratio"]
    print(f"measured/plain: time x{summary['time_ratio']:.1f}, FLOPs "
          f"x{summary['flop_ratio']:.1f}; measurement efficiency {summary['efficiency']:.2f} "
          "(1.0 = measuring costs exactly its arithmetic)")
    if ref is not None:
        passed, worst, compared = check_agreement(measured, ref, presets)
        summary.update(speedup=ref.seconds_per_step / measured.seconds_per_step,
                       agreement=passed, agreement_worst=worst, agreement_steps=compared)
        print(f"speed vs seed-style reference: x{summary['speedup']:.2f} "
              f"({ref.seconds_per_step:.3f} -> {measured.seconds_per_step:.3f} s per measured "
              "step)")
        summary["reference_flop_ratio"] = ref.flops_per_step / measured.flops_per_step
        print(f"arithmetic: seed-style {ref.flops_per_step / 1e9:.3g} vs measured "
              f"{measured.flops_per_step / 1e9:.3g} GFLOP per step "
              f"(x{summary['reference_flop_ratio']:.2f}); FLOP rate measured/seed-style "
              f"x{summary['speedup'] / summary['reference_flop_ratio']:.2f}")
        print(f"agreement check ({compared} steps, ICS/probes/beta/loss/accuracy, rtol "
              f"{AGREEMENT_RTOL:g}): {'PASS' if passed else 'FAIL'} (largest deviation "
              f"{worst:.2g} of the tolerance)")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu",
                        help="test: tiny (seconds); cpu: VGG at 1/8 width; paper: full VGG")
    parser.add_argument("--steps", type=int, default=3, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks after warm-up")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="also run and compare the seed-style loop (default: yes)")
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=list(PRESET_NAMES),
                        help="measurement protocols measured every step (default: both)")
    parser.add_argument("--step-loop", choices=("auto", "host", "scan"), default="auto",
                        help="TrainConfig.step_loop (auto: host on CPUs, scan on accelerators)")
    parser.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="highest",
                        help="TrainConfig.matmul_precision of every path (the seed-style "
                             "loop runs under jax.default_matmul_precision of it)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")
    summary = run(args.config, args.steps, args.repeats, args.reference,
                  matmul_precision=args.matmul_precision, preset_names=tuple(args.presets),
                  step_loop=args.step_loop)
    return 0 if summary.get("agreement", True) else 1


if __name__ == "__main__":
    sys.exit(main())
