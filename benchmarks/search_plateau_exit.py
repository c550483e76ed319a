"""When does a model leave its loss plateau? Plain, unmeasured runs on the cpu demo's data.

The search behind ``conf/cpu`` (docs/cpu_demo_search.md): every seed of ``--seeds`` trained
together with :func:`bnstudy.core.train_seeds` on the class-stratified subsets the pipeline
uses (standardized with all 50,000 training images' statistics, ``stratified_subset(...,
seed=0)``: ``paper_run.load_data``), no measurement and no snapshot. Measurements never change
the trajectory, and the learning rate is constant with each epoch's shuffle ``fold_in(key,
epoch)``, so a run of T steps also gives every shorter run. Defaults are the cpu demo's
(``conf/cpu/globals.yml`` over ``conf/base``); the flags override single settings::

    nice -n 10 .venv/bin/python benchmarks/search_plateau_exit.py \\
        --data ../shared/datasets/cifar10-jpeg.tar.gz --cache /tmp/cpu_subset.npz \\
        --learning-rate 0.1 --momentum 0 --steps 624

prints the run's wall time per seed-step (loaded, if other jobs share the machine), then per
seed the 10-step loss and the test accuracy at the end and, for each study length
``--planned-steps`` T, the exit step as a fraction of T: the first step t at which the mean
training loss of steps t-9..t is below 2.0 (ln 10 = 2.303 is chance), and the same in the
report's trailing mean over ``analysis.smoothing_fraction`` x T steps (what the study's report
calls leaving the plateau).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study_config, paper_run

from paper_run import load_data  # noqa: E402
from study_config import study_configs  # noqa: E402

from bnstudy.analysis.statistics import leaves_plateau_step, smooth  # noqa: E402
from bnstudy.core import train_seeds  # noqa: E402
from bnstudy.core.backend import use_cpu_flags  # noqa: E402

WINDOW = 10       # steps of the trailing mean
THRESHOLD = 2.0   # "left the plateau": the trailing mean below this (chance: ln 10 = 2.303)
ANALYSIS = Path(__file__).resolve().parents[1] / "conf" / "base" / "parameters_analysis.yml"


def exit_step(train_loss: np.ndarray, window: int = WINDOW) -> int | None:
    """The first step t at which the mean loss of steps t - window + 1 .. t is below
    ``THRESHOLD`` (the trailing mean of :func:`bnstudy.analysis.statistics.smooth`, which
    averages the steps there are before step ``window - 1``: a run starting at chance is
    unaffected); None if the run never gets there. ``train_loss``: [T] per step."""
    return leaves_plateau_step(np.arange(train_loss.size), smooth(train_loss, window), THRESHOLD)


def report_window(planned_steps: int) -> int:
    """The report's smoothing window for a run of ``planned_steps`` (``analysis.
    smoothing_fraction`` of conf/base, as ``bnstudy.analysis.comparisons`` rounds it)."""
    fraction = yaml.safe_load(ANALYSIS.read_text())["analysis"]["smoothing_fraction"]
    return max(1, int(round(fraction * planned_steps)))


def cached_data(path: Path, cache: Path | None):
    """``load_data``'s (x_train, y_train, x_test, y_test) of the cpu subsets (5,000 / 1,000),
    read from ``cache`` when it exists, else decoded (and saved there)."""
    if cache is not None and cache.exists():
        with np.load(cache) as saved:
            return tuple(saved[key] for key in ("x_train", "y_train", "x_test", "y_test"))
    data = load_data(path, 5000, 1000, seed=0)
    if cache is not None:
        np.savez(cache, **dict(zip(("x_train", "y_train", "x_test", "y_test"), data)))
    return data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 archive or image folder")
    parser.add_argument("--cache", type=Path, default=None, help="npz of the decoded subsets")
    parser.add_argument("--normalization", default="none", help="none: the baseline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    parser.add_argument("--steps", type=int, required=True, help="training steps T")
    parser.add_argument("--planned-steps", type=int, nargs="+", default=None,
                        help="the study's T (one or more), for the exit as a fraction of it and "
                             "the report's smoothed exit (default: --steps)")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--momentum", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--width", type=float, default=None, help="width multiplier")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    use_cpu_flags()  # before JAX starts a backend, as every study does (bnstudy.core.backend)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    model_config, train_config, _ = study_configs("cpu", args.normalization)
    if args.width is not None:
        model_config = dataclasses.replace(model_config, width_multiplier=args.width)
    given = {"learning_rate": args.learning_rate, "momentum": args.momentum,
             "batch_size": args.batch_size}
    train_config = dataclasses.replace(
        train_config, **{key: value for key, value in given.items() if value is not None},
        seeds=tuple(args.seeds), epochs=10_000, max_steps=args.steps, eval_every=39,
        snapshot_every=39, steps_per_chunk=39, curvature_every=None)
    data = cached_data(args.data, args.cache)
    started = time.perf_counter()
    results = train_seeds(model_config, train_config, [], *data, snapshots=False)
    wall = time.perf_counter() - started
    print(f"{args.normalization}, width {model_config.width_multiplier:g}, batch "
          f"{train_config.batch_size}, lr {train_config.learning_rate:g}, momentum "
          f"{train_config.momentum:g}, T {args.steps}: {wall:.0f} s, "
          f"{wall / (args.steps * len(results)):.3f} s per seed-step")
    for result in results:
        loss = np.asarray(result.train_loss)
        print(f"  seed {result.seed}: 10-step loss @ {args.steps} {np.mean(loss[-WINDOW:]):.3f}, "
              f"test accuracy {result.test_accuracy[-1]:.3f}")
        for planned in args.planned_steps or [args.steps]:
            window = report_window(planned)
            exits = [exit_step(loss, w) for w in (WINDOW, window)]
            where = ["none" if step is None else f"{step} ({step / planned:.1%})" for step in exits]
            print(f"    T = {planned}: exit {where[0]}; {where[1]} in the report's {window}-step mean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
