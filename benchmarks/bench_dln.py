"""Time of the paper-scale ``dln_study`` on this machine, split into compilation and steps.

    python benchmarks/bench_dln.py                 # 500 of the 10,000 steps, then projected
    python benchmarks/bench_dln.py --steps 10000   # the whole run

trains each model of ``dln_study`` (conf/<env>/parameters_roster.yml over conf/base, the
shared sections from the globals: 25 layers of 10 x 10, 1,000 samples, 5 seeds x the
learning rates 1e-6 and 1e-7 on one stacked state, every step measured with the paper_dln
protocol, lambda_max every 500 steps) through :func:`bnstudy.core.train_seeds` on the
synthetic regression of ``linear_data``, for ``--steps`` steps (a multiple of the chunk,
500), and prints per model the compile time (every program's tracing, lowering and XLA
compilation, timed around ``bnstudy.core.programs.lowered`` and its ``compile()``), the time of
the steps (wall time less compilation) and their rate, then the projection to the study's
full length: compile + steps x (total / measured). The pipeline's analysis and report are not
timed (seconds). Each model is timed once (``--repeats``: the steps' median of several runs;
only the first compiles, the others reuse its programs).
No persistent compilation cache is used: every compile is cold, as on a first run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402
from study_config import CONF, _merge, load_globals  # noqa: E402

from bnstudy.core.backend import use_cpu_flags  # noqa: E402

STUDY = "dln_study"


def _yaml(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def dln_settings(env: str | None) -> tuple[dict, dict]:
    """({model: its settings}, linear_data) of the study in ``env`` over conf/base."""
    from bnstudy.roster import model_settings

    shared = load_globals(env)
    roster = _yaml(CONF / "base" / "parameters_roster.yml")
    data = _yaml(CONF / "base" / "parameters_dln.yml")["linear_data"]
    if env is not None:
        roster = _merge(roster, _yaml(CONF / env / "parameters_roster.yml"))
        data = _merge(data, _yaml(CONF / env / "parameters_dln.yml").get("linear_data", {}))
    models = roster["studies"][STUDY]["models"]
    return {name: model_settings(shared, roster["models"][name]) for name in models}, data


class CompileClock:
    """Seconds spent tracing, lowering and compiling the engine's programs while active."""

    def __init__(self):
        from bnstudy.core import programs

        self.programs, self.seconds = programs, 0.0
        self._lowered = programs.lowered

    def __enter__(self) -> CompileClock:
        clock = self

        class Timed:
            def __init__(self, lowered):
                self.lowered = lowered

            def compile(self):
                started = time.perf_counter()
                try:
                    return self.lowered.compile()
                finally:
                    clock.seconds += time.perf_counter() - started

        def lowered(*args, **kwargs):
            started = time.perf_counter()
            try:
                return Timed(self._lowered(*args, **kwargs))
            finally:
                self.seconds += time.perf_counter() - started

        self.programs.lowered = lowered
        return self

    def __exit__(self, *exc_info) -> None:
        self.programs.lowered = self._lowered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=None, help="conf environment over conf/base (e.g. test)")
    parser.add_argument("--steps", type=int, default=500, help="steps to run (a multiple of the chunk)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--models", default=None,
                        help="comma-separated models of the study (default: all of them)")
    parser.add_argument("--devices", type=int, default=None,
                        help="shard each model's runs over this many virtual CPU devices "
                             "(training.devices; XLA_FLAGS --xla_force_host_platform_device_count)")
    args = parser.parse_args(argv)
    if args.devices:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_"
                                   f"platform_device_count={args.devices}").strip()
    use_cpu_flags()
    import jax

    from bnstudy.core import train_seeds
    from bnstudy.data.synthetic import linear_regression
    from bnstudy.parameters import model_parameters

    settings, data = dln_settings(args.env)
    arrays = linear_regression(data["seed"], data["num_train"], data["num_test"],
                               data["dimension"])
    print(f"dln_study, env {args.env or 'base'}: {jax.device_count()} {jax.default_backend()} "
          f"device(s), {os.cpu_count()} cores; data {data}")
    total = {"compile": 0.0, "projected": 0.0}
    chosen = args.models.split(",") if args.models else list(settings)
    unknown = sorted(set(chosen) - set(settings))
    if unknown:
        parser.error(f"--models: {unknown} are not models of {STUDY} ({sorted(settings)})")
    for name in chosen:
        values = settings[name]
        configs = model_parameters(f"models.{name}", values)
        train = configs.train
        full = train.total_steps(data["num_train"])
        if args.steps % train.steps_per_chunk or not 0 < args.steps <= full:
            parser.error(f"--steps must be a multiple of {train.steps_per_chunk} of at most {full}")
        short = dataclasses.replace(train, max_steps=args.steps,
                                    devices=args.devices or train.devices)
        compiles, steps = [], []
        for _ in range(args.repeats):
            with CompileClock() as clock:
                started = time.perf_counter()
                train_seeds(configs.model, short, list(configs.measurements),
                            arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test)
                wall = time.perf_counter() - started
            compiles.append(clock.seconds)
            steps.append(wall - clock.seconds)
        # the first repeat compiles (later ones reuse the programs): its compile time, and
        # the median of every repeat's steps
        compile_s, steps_s = compiles[0], statistics.median(steps)
        projected = compile_s + steps_s * full / args.steps
        total["compile"] += compile_s
        total["projected"] += projected
        runs = len(train.runs)
        print(f"{name} ({configs.model.normalization}, {configs.model.depth} layers, {runs} runs "
              f"= {len(train.seed_list)} seeds x {len(train.learning_rate_list)} rates): compile "
              f"{compile_s:.1f} s; {args.steps} steps {steps_s:.1f} s = "
              f"{steps_s / args.steps * 1e3:.1f} ms/step for all runs; projected {full:,} steps: "
              f"{projected:.0f} s ({projected / 60:.1f} min)")
    print(f"dln_study projected: {total['projected']:.0f} s ({total['projected'] / 60:.1f} min), "
          f"of which compilation {total['compile']:.0f} s; the target is 600 s (10 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
