"""The paper-scale study with the pure core alone (no Kedro, no MLflow): for a GPU machine.

Trains the baseline and the candidate on CIFAR-10 (39 epochs, full width, both measurement
protocols every ``--measure-every`` steps) with :func:`bnstudy.core.train`, then prints and
writes the final test accuracies, the wall time per model and the throughput. The device
machine has JAX but not Kedro, so this script needs only the core and NumPy/Pillow::

    python benchmarks/paper_run.py --data ../shared/datasets/cifar10-jpeg.tar.gz \\
        --measure-every 50 --out results.json

``--max-steps`` and ``--width`` make a quick check on a CPU (e.g. ``--max-steps 4
--width 0.0625 --train-size 1000 --test-size 200``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import jax
import numpy as np

from bnstudy.data import cifar10
from bnstudy.core import MeasurementConfig, ModelConfig, TrainConfig, train
from bnstudy.core.preprocessing import channel_stats, normalize, stratified_subset


def load_data(path: Path, train_size: int | None, test_size: int | None, seed: int):
    """CIFAR-10 from an image folder/archive or the official python archive, normalized."""
    if path.suffix == ".gz" and "python" in path.name:
        arrays = cifar10.read_python_archive(path)
    else:
        arrays = cifar10.read_image_folder(path)
    mean, std = channel_stats(arrays.train_images)
    train_rows = stratified_subset(arrays.train_labels, train_size, seed)
    test_rows = stratified_subset(arrays.test_labels, test_size, seed)
    return (normalize(arrays.train_images[train_rows], mean, std), arrays.train_labels[train_rows],
            normalize(arrays.test_images[test_rows], mean, std), arrays.test_labels[test_rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 archive or image folder")
    parser.add_argument("--epochs", type=int, default=39)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier")
    parser.add_argument("--measure-every", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--matmul-precision", default="highest")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    x_train, y_train, x_test, y_test = load_data(args.data, args.train_size, args.test_size, seed=0)
    train_config = TrainConfig(epochs=args.epochs, max_steps=args.max_steps,
                               matmul_precision=args.matmul_precision)
    presets = [MeasurementConfig.from_dict({"preset": name, "measure_every": args.measure_every})
               for name in ("blog", "paper")]
    results = {"args": {k: str(v) for k, v in vars(args).items()}}
    results["device"] = str(jax.devices()[0])
    for name, normalization in (("baseline", "none"), ("candidate", "batch")):
        model_config = ModelConfig(normalization=normalization, width_multiplier=args.width)
        start = time.perf_counter()
        result = train(model_config, train_config, presets, x_train, y_train, x_test, y_test,
                       progress=lambda done, total, _m, n=name: logging.info("%s %d/%d", n, done, total))
        wall = time.perf_counter() - start
        results[name] = {
            "final_test_accuracy": float(result.test_accuracy[-1]),
            "best_test_accuracy": float(np.max(result.test_accuracy)),
            "final_train_loss": float(np.mean(result.train_loss[-50:])),
            "steps": int(result.steps.size),
            "wall_time_s": wall,
            "compile_time_s": float(result.compile_time_s),
            "steps_per_s": result.steps.size / wall,
        }
        print(f"{name}: test accuracy {results[name]['final_test_accuracy']:.4f} after "
              f"{results[name]['steps']} steps in {wall:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
