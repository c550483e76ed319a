"""The plain step's time at other batch sizes, as a ratio to the cpu demo's batch of 128.

On a shared machine the seconds are inflated by other jobs, but a ratio of interleaved timings
is not (docs/cpu_demo_search.md): multiply it by the unloaded figures of docs/performance.md.
Each (normalization, batch size) is one :class:`bench_training.CoreRunner` (the engine's plain
path over one seed, the cpu demo's network; ``--width`` another width): a warm-up chunk that
compiles, then ``--repeats`` rounds of one chunk each, interleaved::

    nice -n 10 .venv/bin/python benchmarks/plain_step_ratio.py \\
        --data ../shared/datasets/cifar10-jpeg.tar.gz --cache /tmp/cpu_subset.npz --batch-sizes 128 32
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study_config, bench_training, ...

from bench_training import CoreRunner  # noqa: E402
from search_plateau_exit import cached_data  # noqa: E402
from study_config import study_configs  # noqa: E402

from bnstudy.core.backend import use_cpu_flags  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    use_cpu_flags()  # before JAX starts a backend (bnstudy.core.backend)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 archive or image folder")
    parser.add_argument("--cache", type=Path, default=None, help="npz of the decoded subsets")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 32],
                        help="the first is the reference of the ratios")
    parser.add_argument("--width", type=float, default=None, help="width multiplier")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    x, y = cached_data(args.data, args.cache)[:2]
    times: dict[tuple[str, int], list[float]] = {}
    with contextlib.ExitStack() as stack:
        runners = {}
        for normalization in ("none", "batch"):
            model_config, train_config, _ = study_configs("cpu", normalization)
            if args.width is not None:
                model_config = dataclasses.replace(model_config, width_multiplier=args.width)
            for batch in args.batch_sizes:
                config = dataclasses.replace(train_config, batch_size=batch, epochs=10_000,
                                             max_steps=(args.repeats + 1) * args.steps)
                runner = CoreRunner(model_config, config, [], x, y, args.steps)
                runners[normalization, batch] = stack.enter_context(runner)
                runner.chunk()  # compiles
        for _ in range(args.repeats):
            for key, runner in runners.items():
                times.setdefault(key, []).append(runner.chunk())
    for (normalization, batch), seconds in times.items():
        median = float(np.median(seconds))
        reference = float(np.median(times[normalization, args.batch_sizes[0]]))
        print(f"{normalization:>5}, batch {batch:>4}: {median:.4f} s per step (loaded), "
              f"x{median / reference:.3f} of batch {args.batch_sizes[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
