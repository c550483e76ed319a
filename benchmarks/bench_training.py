"""Throughput, compile time, FLOPs and memory of the measured training step.

    python benchmarks/bench_training.py --config cpu --steps 3 --repeats 3

prints one table for a named configuration (``test``: the core's tiny network, seconds;
``cpu``: the study's ``conf/cpu`` network, the VGG at 1/8 width; ``paper``: the study's
``conf/base`` network, the full VGG, for a GPU; batch size and training settings from the
same YAML, see ``study_config.py``) with, for the measured step (both presets, every step),
the plain training step and (``--reference``) the seed-style loop of
benchmarks/seed_style_reference.py.

How the engine is timed: each compiled path is one :class:`bnstudy.core.executor.Executor`
over a one-seed state, and a chunk is ``Executor.run_chunk`` over ``--steps`` steps (one
host transfer each, as in training). The plain path's plan measures nothing (every step is
the ``train_step`` program), the measured path's plan measures every preset at every step;
neither records snapshots or evaluates. The seed-style loop's chunk is one of its steps.

* steps/s: median over ``--repeats`` chunks after a warm-up chunk, the paths' chunks
  interleaved so that load from other processes hits every path alike;
* compile: warm-up chunk time minus a steady chunk's time (all programs compile there);
* GFLOP/step: XLA's own count, ``cost_analysis()["flops"]`` of every compiled executable
  that one host-loop step dispatches (recorded by wrapping ``programs.compiled`` for one
  step), each dispatch counted; the scan loop runs the same arithmetic in one program, so
  a scan-loop path is counted on a host-loop executor of the same plan;
* GFLOP/s achieved, peak host RSS, peak device memory where the backend reports it;

then the measurement efficiency = (measured time / plain time) / (measured FLOPs / plain
FLOPs), the speed ratio against the seed-style loop, and whether both compute the same
measurements. That agreement check runs both loops again *in float64* (``jax.enable_x64``,
``--agreement-steps`` steps from the same start, the measured path's step loop) and
compares every value to rtol 1e-6 (see ``check_agreement``): in float32 an ICS cosine of
nearly orthogonal gradients carries the gradients' relative rounding error as an absolute
error, so a float32 comparison cannot tell rounding from a wrong definition. The float32
timed runs are compared as well, for information only (rtol 2e-3). The data are synthetic
normalized CIFAR-shaped arrays (random normal images, uniform labels).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import dataclasses
import functools
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import TextIO
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # seed_style_reference, xla_cost

from study_config import study_configs  # noqa: E402
from xla_cost import executable_flops  # noqa: E402

from bnstudy.core import (  # noqa: E402
    PRESETS,
    TINY_MODEL_CONFIG,
    TINY_TRAIN_CONFIG,
    MeasurementPlan,
    ModelConfig,
    TrainConfig,
    init_states,
    programs,
)
from bnstudy.core.backend import use_cpu_flags  # noqa: E402
from bnstudy.core.config import MATMUL_PRECISIONS  # noqa: E402
from bnstudy.core.executor import Executor  # noqa: E402
from bnstudy.core.step import Spec, model_of  # noqa: E402
from bnstudy.core.training import data_orders  # noqa: E402


def _study(env: str | None) -> tuple[ModelConfig, TrainConfig]:
    model_config, train_config, _ = study_configs(env, normalization="batch")
    return model_config, train_config


CONFIGS: dict[str, tuple[ModelConfig, TrainConfig, int]] = {
    # name: (model, training settings, synthetic training examples)
    "test": (TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, 64),
    "cpu": (*_study("cpu"), 1280),
    "paper": (*_study(None), 1280),
}
PRESET_NAMES = ("blog", "paper")  # measured by default: both protocols
PRESET_LIST = tuple(PRESETS[name] for name in PRESET_NAMES)
COLUMNS = ("path", "steps/s", "s/step", "compile s", "GFLOP/step", "GFLOP/s",
           "peak RSS MB", "device peak MB")
AGREEMENT_RTOL = 1e-6  # float64 runs of both loops
FLOAT32_RTOL = 2e-3  # the float32 timed runs, for information


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


def bench_train_config(train_config: TrainConfig, steps: int, step_loop: str | None = None,
                       matmul_precision: str | None = None) -> TrainConfig:
    """The study's settings with chunks of ``steps`` steps (no evaluation or snapshot falls
    inside the timed chunks) and, where given, another step loop or matmul precision."""
    changes = {"steps_per_chunk": steps, "eval_every": steps, "snapshot_every": 10**9,
               "seeds": ()}
    if step_loop is not None:
        changes["step_loop"] = step_loop
    if matmul_precision is not None:
        changes["matmul_precision"] = matmul_precision
    return dataclasses.replace(train_config, **changes)


@contextlib.contextmanager
def recorded_dispatches():
    """The executables that ``bnstudy.core.programs`` hands out (one per dispatch) while
    the context is open, in order: every program call goes through ``compiled``."""
    executables = []
    original = programs.compiled

    def recording(*args, **kwargs):
        executable = original(*args, **kwargs)
        executables.append(executable)
        return executable

    with mock.patch.object(programs, "compiled", recording):
        yield executables


def dispatched_flops(executables) -> float:
    """XLA FLOPs summed over dispatched executables (each analysed once)."""
    flops = {}
    for executable in executables:
        if id(executable) not in flops:
            flops[id(executable)] = executable_flops(executable)
    return sum(flops[id(executable)] for executable in executables)


class CoreRunner:
    """The compiled path: an Executor over one seed, chunks of ``steps`` steps from step 0.

    A context manager (the executor owns a worker thread)."""

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig, presets,
                 x, y, steps: int):
        self.model_config, self.presets, self.steps = model_config, list(presets), steps
        self.config = bench_train_config(train_config, steps)
        total_steps = self.config.total_steps(x.shape[0])
        self.loop = self.config.resolved_step_loop(jax.default_backend())
        self.plan = MeasurementPlan.build(model_config, self.config, self.presets,
                                          total_steps, snapshots=False)
        self.spec = Spec.of(model_config, self.config)
        self.states = init_states(model_of(model_config), self.config)
        per_epoch = self.config.steps_per_epoch(x.shape[0])
        dtype = np.dtype(model_config.param_dtype)
        self.data = {"x": jnp.asarray(np.asarray(x, dtype)), "y": jnp.asarray(y),
                     "orders": data_orders(self.states, -(-total_steps // per_epoch),
                                           x.shape[0], per_epoch * self.config.batch_size)}
        self.executor = Executor(self.spec, self.plan, self.loop)
        self.start, self.first_outputs = 0, None

    def __enter__(self) -> CoreRunner:
        self.executor.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.executor.__exit__(*exc_info)

    def advance(self, steps: int) -> dict:
        """Run the next ``steps`` steps; their outputs of the one seed, as numpy."""
        self.states, outputs = self.executor.run_chunk(self.states, self.data, self.start,
                                                       self.start + steps)
        jax.block_until_ready(self.states)
        self.start += steps
        return jax.tree.map(lambda a: a[0], outputs)

    def chunk(self) -> float:
        """Run the next chunk; returns its wall time per step (the first one compiles)."""
        started = time.perf_counter()
        outputs = self.advance(self.steps)
        seconds = time.perf_counter() - started
        self.first_outputs = outputs if self.first_outputs is None else self.first_outputs
        return seconds / self.steps

    def flops_per_step(self) -> float:
        """XLA FLOPs of one step, counted on the host loop's programs (the scan loop runs
        the same arithmetic in one program)."""
        if self.loop == "host":
            with recorded_dispatches() as executables:
                self.advance(1)
            return dispatched_flops(executables)
        host_config = dataclasses.replace(self.config, step_loop="host")
        x, y = self.data["x"], self.data["y"]
        with CoreRunner(self.model_config, host_config, self.presets, x, y,
                        self.steps) as host:
            return host.flops_per_step()

    def outputs_of(self, preset, step: int) -> dict:
        """This path's values of one preset at a step of its first chunk, by the names the
        seed-style loop records."""
        ics = self.first_outputs[self.plan.ics_of(preset, self.model_config).name]
        probe = self.first_outputs[self.plan.probe_of(preset, self.model_config).name]
        return {"ics_l2": ics["l2_layer"][step], "ics_cosine": ics["cosine_layer"][step],
                "probe_loss": probe["loss"][step], "grad_diff": probe["grad_diff"][step],
                "beta_smoothness": probe["beta_smoothness"][step]}


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


def _deviation(got_value, want_value, rtol: float) -> float | None:
    """The largest deviation of ``got`` from ``want`` as a fraction of what
    np.allclose(rtol, atol=rtol * max|want|) allows; None if NaNs sit in different places
    (a cosine of a zero gradient is NaN in both)."""
    got = np.atleast_1d(np.asarray(got_value, np.float64))
    want = np.atleast_1d(np.asarray(want_value, np.float64))
    finite = np.isfinite(want)
    if not np.array_equal(finite, np.isfinite(got)):
        return None
    scale = np.max(np.abs(want[finite])) if finite.any() else 0.0
    allowed = rtol * scale + rtol * np.abs(want[finite])
    fraction = np.abs(got[finite] - want[finite]) / np.maximum(allowed, 1e-300)
    return float(fraction.max(initial=0.0))


def check_agreement(core: CoreRunner, reference: ReferenceRunner, presets,
                    rtol: float = AGREEMENT_RTOL):
    """Compare the measurements of the steps both loops ran (from the same start).

    Every value to ``rtol``; values near zero (conv_0's train-mode ICS, rounding only) to an
    absolute tolerance of ``rtol`` times the largest value of the same row. The batch
    accuracy after the step may differ by one example (a logit tie broken by rounding).
    Returns (passed, largest deviation as a fraction of the tolerance, steps compared).
    """
    outputs, records = core.first_outputs, reference.records
    steps = min(len(records), len(outputs["train_loss"]))
    worst, passed = 0.0, True
    one_example = 1.001 / reference.loop.config.batch_size  # with room for rounding
    for step in range(steps):
        accuracy_gap = abs(float(outputs["train_accuracy"][step]) -
                           records[step]["train_accuracy"])
        worst = max(worst, accuracy_gap / one_example)
        passed = passed and accuracy_gap <= one_example
        pairs = [(outputs["train_loss"][step], records[step]["train_loss"])]
        for preset in presets:
            got, expected = core.outputs_of(preset, step), records[step][preset.name]
            pairs += [(got[key], expected[key]) for key in got]
        for got_value, want_value in pairs:
            fraction = _deviation(got_value, want_value, rtol)
            passed = passed and fraction is not None and fraction <= 1.0
            worst = max(worst, fraction if fraction is not None else np.inf)
    return passed, worst, steps


def float64_agreement(model_config: ModelConfig, train_config: TrainConfig, presets, x, y,
                      steps: int):
    """Both loops again in float64 for ``steps`` steps from the same start: (the result of
    :func:`check_agreement` at ``AGREEMENT_RTOL``, the core runner, the reference runner)."""
    with jax.enable_x64(True):
        model64 = dataclasses.replace(model_config, param_dtype="float64")
        x64 = np.asarray(x, np.float64)
        with CoreRunner(model64, train_config, presets, x64, y, steps) as core:
            core.chunk()
        reference = ReferenceRunner(model64, train_config, presets, x64, y)
        for _ in range(steps):
            reference.chunk()
        return check_agreement(core, reference, presets, AGREEMENT_RTOL), core, reference


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


def print_table(print, rows: list[tuple[str, Timing]]) -> list[dict]:  # noqa: A002
    """Print the table of the timed paths; returns its rows as dicts."""
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
    return table


def report_reference(print, summary: dict, measured: Timing, ref: Timing,  # noqa: A002
                     agreement: tuple, presets) -> None:
    """The speed ratio against the seed-style loop and the agreement checks."""
    passed, worst, compared = agreement
    float32 = check_agreement(measured.outputs["runner"], ref.outputs["runner"], presets,
                              FLOAT32_RTOL)
    summary.update(speedup=ref.seconds_per_step / measured.seconds_per_step,
                   agreement=passed, agreement_worst=worst, agreement_steps=compared,
                   float32_worst=float32[1])
    print(f"speed vs seed-style reference: x{summary['speedup']:.2f} "
          f"({ref.seconds_per_step:.3f} -> {measured.seconds_per_step:.3f} s per measured "
          "step)")
    summary["reference_flop_ratio"] = ref.flops_per_step / measured.flops_per_step
    print(f"arithmetic: seed-style {ref.flops_per_step / 1e9:.3g} vs measured "
          f"{measured.flops_per_step / 1e9:.3g} GFLOP per step "
          f"(x{summary['reference_flop_ratio']:.2f}); FLOP rate measured/seed-style "
          f"x{summary['speedup'] / summary['reference_flop_ratio']:.2f}")
    print(f"agreement check (both loops rerun in float64, {compared} steps, "
          f"ICS/probes/beta/loss/accuracy, rtol {AGREEMENT_RTOL:g}): "
          f"{'PASS' if passed else 'FAIL'} (largest deviation {worst:.2g} of the tolerance)")
    print(f"float32 timed runs, for information ({float32[2]} steps, rtol {FLOAT32_RTOL:g}; "
          f"ill-conditioned cosines carry float32 rounding): largest deviation "
          f"{float32[1]:.2g} of the tolerance")


def run(config_name: str, steps: int, repeats: int, reference: bool,
        out: TextIO | None = None, matmul_precision: str | None = None,
        preset_names: tuple[str, ...] = PRESET_NAMES, step_loop: str = "auto",
        agreement_steps: int = 2) -> dict:
    """Run the benchmark, print the table to ``out`` (default stdout) and return its numbers."""
    print = functools.partial(builtins.print, file=out or sys.stdout, flush=True)  # noqa: A001
    model_config, study_train, num_train = CONFIGS[config_name]
    train_config = bench_train_config(study_train, steps, step_loop, matmul_precision)
    # Enough epochs of data order for the warm-up, the timed chunks and the counted step.
    needed, per_epoch = steps * (repeats + 2) + 1, train_config.steps_per_epoch(num_train)
    train_config = dataclasses.replace(train_config, epochs=-(-needed // per_epoch),
                                       max_steps=None)
    x, y = synthetic_data(model_config, num_train)
    presets = [PRESETS[name] for name in preset_names]
    with contextlib.ExitStack() as stack:
        runners = {name: stack.enter_context(CoreRunner(model_config, train_config, chosen,
                                                        x, y, steps))
                   for name, chosen in (("plain", []), ("measured", presets))}
        if reference:
            runners["reference"] = ReferenceRunner(model_config, train_config, presets, x, y)
        timings = measure(runners, repeats)
    plain, measured, ref = timings["plain"], timings["measured"], timings.get("reference")
    rows = [("plain", plain), (f"measured ({'+'.join(preset_names)})", measured)]
    rows += [("seed-style reference", ref)] if ref is not None else []
    device = jax.devices()[0]
    print(f"config {config_name}: widths {model_config.conv_widths}, dense "
          f"{model_config.dense_widths}, batch {train_config.batch_size}, "
          f"{model_config.image_size}px; device {device.platform} ({device.device_kind}), "
          f"{jax.device_count()} device(s); matmul precision {train_config.matmul_precision}; "
          f"steps/chunk {steps}, repeats {repeats}; step loop {runners['measured'].loop}; "
          "chunks interleaved; timed through Executor.run_chunk")
    summary = {"table": print_table(print, rows),
               "time_ratio": measured.seconds_per_step / plain.seconds_per_step,
               "flop_ratio": measured.flops_per_step / plain.flops_per_step}
    summary["efficiency"] = summary["time_ratio"] / summary["flop_ratio"]
    print(f"measured/plain: time x{summary['time_ratio']:.1f}, FLOPs "
          f"x{summary['flop_ratio']:.1f}; measurement efficiency {summary['efficiency']:.2f} "
          "(1.0 = measuring costs exactly its arithmetic)")
    if ref is not None:
        agreement, *runs = float64_agreement(model_config, train_config, presets, x, y,
                                             agreement_steps)
        summary["agreement_runs"] = tuple(runs)  # (core, reference), float64
        report_reference(print, summary, measured, ref, agreement, presets)
    return summary


def main(argv: list[str] | None = None) -> int:
    use_cpu_flags()  # before JAX starts a backend (bnstudy.core.backend)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu",
                        help="test: tiny (seconds); cpu: VGG at 1/8 width; paper: full VGG")
    parser.add_argument("--steps", type=int, default=3, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks after warm-up")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="also run and compare the seed-style loop (default: yes)")
    parser.add_argument("--agreement-steps", type=int, default=2,
                        help="steps of the float64 agreement run of both loops")
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=list(PRESET_NAMES),
                        help="measurement protocols measured every step (default: both)")
    parser.add_argument("--step-loop", choices=("auto", "host", "scan"), default="auto",
                        help="TrainConfig.step_loop (auto: host on CPUs, scan on accelerators)")
    parser.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default=None,
                        help="TrainConfig.matmul_precision of every path (default: the "
                             "config's; the seed-style loop runs under "
                             "jax.default_matmul_precision of it)")
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, args.agreement_steps) < 1:
        parser.error("--steps, --repeats and --agreement-steps must be >= 1")
    summary = run(args.config, args.steps, args.repeats, args.reference,
                  matmul_precision=args.matmul_precision, preset_names=tuple(args.presets),
                  step_loop=args.step_loop, agreement_steps=args.agreement_steps)
    return 0 if summary.get("agreement", True) else 1


if __name__ == "__main__":
    sys.exit(main())
