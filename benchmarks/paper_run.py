"""The paper-scale study with the pure core alone (no Kedro, no MLflow): for a GPU machine.

Trains the baseline and the candidate on CIFAR-10 with :func:`bnstudy.core.train_seeds`:
every seed of ``--seeds`` on one stacked state (on a GPU the scan loop, vmapped over the
seed axis; on a CPU the host loop, seed after seed), both measurement protocols. Every
default is the study's own, read from ``conf/base/globals.yml`` (``--env`` merges
``conf/<env>/globals.yml`` over it, as Kedro does); the flags override single settings.
"Paper scale" is the size (full width, all of CIFAR-10, 39 epochs); the optimizer is the
study's, the blog's (SGD, momentum 0.9, lr 0.035), not the paper's plain SGD at lr 0.1.
The device machine has JAX, Flax (hence PyYAML) and NumPy/Pillow but not Kedro::

    python benchmarks/paper_run.py --data .data/cifar10-jpeg.tar.gz --seeds 0 1 2 \\
        --measure-every 50 --precision high --out results/

writes to ``--out``:

* ``paper_run.json``: the settings, the device, and per model and seed the final and best
  test accuracy, the final train loss, steps, wall and compile time, steps/s, with the
  seed mean and standard deviation of the final accuracy;
* ``paper_run.npz`` (compressed float32, a few MB at ``--measure-every 50``): the traces
  the figures read, keys ``<model>/<name>`` with a leading seed axis [S, ...]: train loss
  and accuracy per step, test loss/accuracy per evaluation, per preset the layer ICS (l2,
  cosine), probe losses, gradient changes, beta and ||g_t|| per measured step, activation
  moments and quantiles per snapshot, and the distance from initialization (per-channel
  statistics, histograms and per-leaf ICS stay out, to keep the file small).

* ``<model>/results.npz`` and ``<model>/results.json`` (``baseline``, ``candidate``): every
  result of the model's runs, complete (:mod:`bnstudy.run_files`), with its configs, the
  data's fingerprint and the device. Copied to a machine with the project, they become a
  study there, with no training: ``kedro run --env <env> --params imported_runs.path=<out>``
  makes the traces, MLflow runs, analysis, figures and report from them, with the same code
  as for models trained there (docs/scaling.md, "GPU runs as studies"). The environment's
  settings must be those of the run: ``--env`` the same, and the flags below given as the
  same parameters (a model whose configuration or data differ is refused, naming the first
  difference).

``--max-steps`` and ``--width`` make a quick check on a CPU (e.g. ``--max-steps 4
--width 0.0625 --train-size 1000 --test-size 200``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study_config

from study_config import study_configs  # noqa: E402

from bnstudy.core import TrainingResult, train_seeds  # noqa: E402
from bnstudy.core.backend import use_cpu_flags  # noqa: E402
from bnstudy.core.config import MATMUL_PRECISIONS  # noqa: E402
from bnstudy.core.curvature import CURVATURE_FIELDS  # noqa: E402
from bnstudy.core.preprocessing import (  # noqa: E402
    channel_stats,
    normalize,
    stratified_subset,
)
from bnstudy.data import cifar10  # noqa: E402
from bnstudy.reliability.checkpoints import checkpoint_store  # noqa: E402
from bnstudy.run_files import (  # noqa: E402
    configs_about,
    data_fingerprint,
    runtime_provenance,
    save_results,
)

MODELS = (("baseline", "none"), ("candidate", "batch"))
PRESET_TRACES = ("measured_steps", "ics_l2", "ics_cosine", "probe_s", "probe_loss",
                 "grad_diff", "beta_smoothness", "grad_norm")
ACTIVATION_TRACES = ("mean", "std", "min", "max", "frac_positive", "quantiles")


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


def configs(args: argparse.Namespace, normalization: str):
    """The study's configs of one model with the command line's overrides."""
    model_config, train_config, presets = study_configs(args.env, normalization)
    if args.width is not None:
        model_config = dataclasses.replace(model_config, width_multiplier=args.width)
    changes = {"seeds": tuple(args.seeds) if args.seeds else train_config.seeds,
               "epochs": args.epochs or train_config.epochs,
               "max_steps": args.max_steps or train_config.max_steps,
               "matmul_precision": args.precision or train_config.matmul_precision}
    if args.curvature_every is not None:
        changes["curvature_every"] = args.curvature_every or None
    train_config = dataclasses.replace(train_config, **changes)
    if args.measure_every is not None:
        presets = [dataclasses.replace(p, measure_every=args.measure_every) for p in presets]
    return model_config, train_config, presets


def seed_summary(result: TrainingResult, wall: float, seeds: int) -> dict:
    """The JSON summary of one seed's run (wall time: the whole run of all seeds)."""
    return {"seed": result.seed,
            "final_test_accuracy": float(result.test_accuracy[-1]),
            "best_test_accuracy": float(np.max(result.test_accuracy)),
            "final_train_loss": float(np.mean(result.train_loss[-50:])),
            "steps": int(result.steps.size), "wall_time_s": wall,
            "compile_time_s": float(result.compile_time_s),
            "steps_per_s": result.steps.size * seeds / wall}


def traces(name: str, results: list[TrainingResult]) -> dict[str, np.ndarray]:
    """The figures' arrays of one model: ``<model>/<trace>`` -> [S, ...] float32 (steps:
    int32, shared by every seed, so without the seed axis)."""
    first = results[0]
    out = {f"{name}/steps": first.steps, f"{name}/eval_steps": first.eval_steps}

    def stack(key: str, pick) -> None:
        out[f"{name}/{key}"] = np.stack([np.asarray(pick(r), np.float32) for r in results])

    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        stack(key, lambda r, k=key: getattr(r, k))
    for preset in first.measurements:
        for key in PRESET_TRACES:
            stack(f"{preset}/{key}", lambda r, p=preset, k=key: r.measurements[p][k])
    if first.activation_stats:
        out[f"{name}/snapshot_steps"] = first.activation_stats["steps"]
        for layer in first.layers:
            for key in ACTIVATION_TRACES:
                stack(f"activations/{layer}/{key}",
                      lambda r, lay=layer, k=key: r.activation_stats["layers"][lay][k])
            for kind in (k for k in first.init_distance if k != "steps"):
                stack(f"init_distance/{kind}/{layer}",
                      lambda r, lay=layer, k=kind: r.init_distance[k][lay])
    if first.curvature:
        out[f"{name}/curvature_steps"] = first.curvature["steps"]
        for key in CURVATURE_FIELDS:
            stack(f"curvature/{key}", lambda r, k=key: r.curvature[k])
    out = {key: value.astype(np.int32) if key.endswith("steps") and value.ndim == 1 else value
           for key, value in out.items()}
    return out


def run_model(name: str, normalization: str, args, data) -> tuple[dict, dict]:
    """Train one model's seeds; (its JSON summary, its traces). With ``--out``, its results
    are saved in ``<out>/<name>/`` as a study reads them (:func:`bnstudy.run_files.save_results`)."""
    model_config, train_config, presets = configs(args, normalization)
    start = time.perf_counter()
    logging.info("%s: %s, seeds %s", name, model_config, list(train_config.seed_list))
    checkpoints = checkpoint_store(args.checkpoint_dir / name) if args.checkpoint_dir else None
    results = train_seeds(model_config, train_config, presets, *data,  # logs every chunk
                          checkpoints=checkpoints)
    wall = time.perf_counter() - start
    if args.out:
        save_results(results, args.out / name, {
            **configs_about(model_config, train_config, presets),
            "data_fingerprint": data_fingerprint(*data), "runtime": runtime_provenance(),
            "num_train": int(len(data[1])), "num_test": int(len(data[3]))})
    seeds = [seed_summary(result, wall, len(results)) for result in results]
    finals = np.array([s["final_test_accuracy"] for s in seeds])
    summary = {"seeds": seeds, "final_test_accuracy_mean": float(finals.mean()),
               "final_test_accuracy_std": float(finals.std(ddof=1)) if finals.size > 1 else 0.0,
               "wall_time_s": wall, "steps_per_s": seeds[0]["steps_per_s"],
               "model_config": model_config.to_dict(), "train_config": train_config.to_dict(),
               "measurement_configs": [p.to_dict() for p in presets]}
    print(f"{name}: test accuracy {summary['final_test_accuracy_mean']:.4f} (seeds "
          f"{[s['seed'] for s in seeds]}) after {seeds[0]['steps']} steps in {wall:.0f} s")
    return summary, traces(name, results)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 archive or image folder")
    parser.add_argument("--env", default=None,
                        help="conf/<env>/globals.yml over conf/base (default: base only)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds trained together (default: training.seed of the YAML)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--width", type=float, default=None, help="width multiplier")
    parser.add_argument("--measure-every", type=int, default=None,
                        help="every preset measures every this many steps")
    parser.add_argument("--curvature-every", type=int, default=None,
                        help="training.curvature_every (0: no curvature; default: the YAML's)")
    parser.add_argument("--precision", "--matmul-precision", dest="precision", default=None,
                        choices=MATMUL_PRECISIONS, help="TrainConfig.matmul_precision")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for paper_run.json, paper_run.npz and <model>/results.*")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="resumable: checkpoints per model here (a rerun continues)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    use_cpu_flags()  # before JAX starts a backend (bnstudy.core.backend)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    data = load_data(args.data, args.train_size, args.test_size, seed=0)
    summary = {"args": {k: str(v) for k, v in vars(args).items()},
               "device": str(jax.devices()[0]), "backend": jax.default_backend()}
    arrays = {}
    for name, normalization in MODELS:
        summary[name], model_traces = run_model(name, normalization, args, data)
        arrays.update(model_traces)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "paper_run.json").write_text(json.dumps(summary, indent=2))
        np.savez_compressed(args.out / "paper_run.npz", **arrays)
    print(json.dumps({name: {k: v for k, v in summary[name].items() if "config" not in k}
                      for name, _ in MODELS}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
