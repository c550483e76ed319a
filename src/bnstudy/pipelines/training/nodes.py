"""Thin Kedro adapters: parameters -> core configs -> :func:`bnstudy.core.train_seeds` -> tables.

No maths here: the core measures, these functions only reshape its arrays into the
persisted tables (long format where a person will plot them) and the MLflow payload.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.core import MeasurementConfig, ModelConfig, TrainConfig, TrainingResult, train_seeds
from bnstudy.datasets.npz_dataset import flatten_tree, npz_bytes
from bnstudy.parameters import model_parameters
from bnstudy.pipelines import json_ready

logger = logging.getLogger(__name__)

QUANTILE_COLUMNS = ("q01", "q05", "q25", "q50", "q75", "q95", "q99")


def build_configs(
    normalization: str, architecture: dict[str, Any], training: dict[str, Any], measurements: list
) -> tuple[ModelConfig, TrainConfig, list[MeasurementConfig]]:
    """Parameters (plain dicts from YAML) -> validated core configs (bnstudy.parameters)."""
    configs = model_parameters("<model>", {
        "normalization": normalization, "architecture": architecture, "training": training,
        "measurements": measurements})
    return configs.model, configs.train, list(configs.measurements)


def train_model(
    model_input_train: dict[str, np.ndarray],
    model_input_test: dict[str, np.ndarray],
    normalization: str,
    architecture: dict[str, Any],
    training: dict[str, Any],
    measurements: list,
    checkpoints: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one model in every seed of ``training.seeds`` (one stacked run) with every
    measurement config on the same trajectory.

    Returns the pipeline's outputs by name: ``initial_state`` / ``final_state``
    (``{"seed_<k>": {"params", "batch_stats"}}``), the traces (each with a ``seed``
    column), ``activation_histograms`` (``{"seed_<k>": ...}``) and ``run_record``.
    """
    model_config, train_config, measurement_configs = build_configs(
        normalization, architecture, training, measurements
    )
    checkpoints = checkpoints or {}
    directory = checkpoints.get("directory")
    results = train_seeds(
        model_config,
        train_config,
        measurement_configs,
        model_input_train["images"],
        model_input_train["labels"],
        model_input_test["images"],
        model_input_test["labels"],
        # One folder per model; inside it, one per configuration hash (core/checkpoint.py).
        checkpoint_dir=None if directory is None else f"{directory}/{normalization}",
        checkpoint_every_s=float(checkpoints.get("every_s", 60)),
    )
    per_seed = {
        name: pd.concat([table(r).assign(seed=r.seed) for r in results], ignore_index=True)
        for name, table in TABLES.items()
    }
    for name, frame in per_seed.items():
        per_seed[name] = frame[["seed", *[c for c in frame.columns if c != "seed"]]]
    return {
        "initial_state": {f"seed_{r.seed}": model_state(r.initial_params, r.initial_batch_stats) for r in results},
        "final_state": {f"seed_{r.seed}": model_state(r.final_params, r.final_batch_stats) for r in results},
        **per_seed,
        "activation_histograms": {f"seed_{r.seed}": activation_histograms(r) for r in results},
        "run_record": {
            **run_record(results),
            "num_train": int(len(model_input_train["labels"])),
            "num_test": int(len(model_input_test["labels"])),
            "runtime": runtime_provenance(),
        },
    }


def runtime_provenance() -> dict[str, Any]:
    """Library versions and the device the run used (for the report's Setup)."""
    from importlib import metadata

    import jax

    device = jax.devices()[0]
    versions = {name: metadata.version(name) for name in ("jax", "jaxlib", "flax", "optax", "kedro")}
    return {"versions": versions, "backend": jax.default_backend(), "device_kind": device.device_kind,
            "device_count": jax.device_count(), "cpu": _cpu_model()}


def _cpu_model() -> str:
    import platform
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def model_state(params: dict[str, Any], batch_stats: dict[str, Any]) -> dict[str, Any]:
    """``{"params": ..., "batch_stats": ...}``; the baseline has no batch statistics, and
    an empty entry is left out (an .npz file cannot hold an empty dict)."""
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def training_trace(result: TrainingResult) -> pd.DataFrame:
    """``step, train_loss, train_accuracy``: one row per trained step."""
    return pd.DataFrame(
        {"step": result.steps, "train_loss": result.train_loss, "train_accuracy": result.train_accuracy}
    )


def eval_trace(result: TrainingResult) -> pd.DataFrame:
    """``step, test_loss, test_accuracy``: one row per evaluation of the full test set."""
    return pd.DataFrame(
        {"step": result.eval_steps, "test_loss": result.test_loss, "test_accuracy": result.test_accuracy}
    )


def ics_trace(result: TrainingResult) -> pd.DataFrame:
    """``preset, step, layer, param, ics_l2, ics_cosine``.

    ``param`` is ``"all"`` for the whole layer (all its leaves together) or the leaf name
    (``kernel``, ``bias``, ``bn_scale``, ...).
    """
    frames = []
    for preset, trace in result.measurements.items():
        steps = trace["measured_steps"]
        for index, layer in enumerate(result.layers):
            frames.append(
                _long_block(preset, steps, layer, "all", trace["ics_l2"][:, index], trace["ics_cosine"][:, index])
            )
        for leaf, values in trace["ics_l2_leaf"].items():
            layer, param = leaf.split("/", 1)
            frames.append(_long_block(preset, steps, layer, param, values, trace["ics_cosine_leaf"][leaf]))
    return _concat(frames, ["preset", "step", "layer", "param", "ics_l2", "ics_cosine"])


def _long_block(preset, steps, layer, param, l2, cosine) -> pd.DataFrame:
    return pd.DataFrame(
        {"preset": preset, "step": steps, "layer": layer, "param": param, "ics_l2": l2, "ics_cosine": cosine}
    )


def probe_trace(result: TrainingResult) -> pd.DataFrame:
    """``preset, step, s, probe_loss, grad_diff, step_norm``: every probe point of every step."""
    frames = []
    for preset, trace in result.measurements.items():
        steps, s = trace["measured_steps"], np.asarray(trace["probe_s"])
        frames.append(
            pd.DataFrame(
                {
                    "preset": preset,
                    "step": np.repeat(steps, s.size),
                    "s": np.tile(s, steps.size),
                    "probe_loss": trace["probe_loss"].reshape(-1),
                    "grad_diff": trace["grad_diff"].reshape(-1),
                    "step_norm": trace["step_norm"].reshape(-1),
                }
            )
        )
    return _concat(frames, ["preset", "step", "s", "probe_loss", "grad_diff", "step_norm"])


SMOOTHNESS_COLUMNS = (
    "probe_loss_min", "probe_loss_max", "grad_diff_min", "grad_diff_max", "beta_smoothness", "grad_norm",
)


def smoothness_trace(result: TrainingResult) -> pd.DataFrame:
    """``preset, step`` + the per-step extremes over s and the effective beta-smoothness."""
    frames = [
        pd.DataFrame({"preset": preset, "step": trace["measured_steps"], **{c: trace[c] for c in SMOOTHNESS_COLUMNS}})
        for preset, trace in result.measurements.items()
    ]
    return _concat(frames, ["preset", "step", *SMOOTHNESS_COLUMNS])


def activation_table(result: TrainingResult) -> pd.DataFrame:
    """``step, layer, mean, std, min, max, q01..q99, frac_positive, underflow, overflow``."""
    stats = result.activation_stats
    steps = stats["steps"]
    frames = []
    for layer, values in stats["layers"].items():
        columns = {"step": steps, "layer": layer}
        for name in ("mean", "std", "min", "max"):
            columns[name] = values[name]
        for index, name in enumerate(QUANTILE_COLUMNS):
            columns[name] = values["quantiles"][:, index]
        for name in ("frac_positive", "underflow", "overflow"):
            columns[name] = values[name]
        frames.append(pd.DataFrame(columns))
    return _concat(frames, ["step", "layer"])


def activation_histograms(result: TrainingResult) -> dict[str, Any]:
    """The array part of the activation statistics, for the NpzDataset:
    ``{steps [K], hist_edges [bins+1], quantile_levels [7], layers: {layer: {hist_counts
    [K, bins], channel_mean [K, C], channel_var [K, C]}}}``."""
    stats = result.activation_stats
    return {
        "steps": np.asarray(stats["steps"]),
        "hist_edges": np.asarray(stats["hist_edges"]),
        "quantile_levels": np.asarray(stats["quantile_levels"]),
        "layers": {
            layer: {k: np.asarray(values[k]) for k in ("hist_counts", "channel_mean", "channel_var")}
            for layer, values in stats["layers"].items()
        },
    }


def init_distance_table(result: TrainingResult) -> pd.DataFrame:
    """``step, layer, abs, rel``: ``||W - W_0||_F`` of each layer's kernel and its ratio to
    ``||W_0||_F``, at each snapshot and at the end."""
    distance = result.init_distance
    frames = [
        pd.DataFrame(
            {"step": distance["steps"], "layer": layer, "abs": distance["abs"][layer], "rel": distance["rel"][layer]}
        )
        for layer in distance["abs"]
    ]
    return _concat(frames, ["step", "layer", "abs", "rel"])


def run_record(results: list[TrainingResult]) -> dict[str, Any]:
    """Resolved configs, seeds and timings, JSON-ready (the configs are those of the run;
    ``seeds`` lists every seed, ``per_seed`` their final test numbers and ``diverged_at``: the
    step a seed diverged at, None when healthy)."""
    first = results[0]
    return json_ready(
        {
            "model_config": first.model_config,
            "train_config": {**first.train_config, "seeds": [r.seed for r in results]},
            "measurement_configs": first.measurement_configs,
            "seeds": [r.seed for r in results],
            "layers": first.layers,
            "leaf_paths": first.leaf_paths,
            "num_steps": int(first.steps.size),
            "wall_time_s": first.wall_time_s,
            "compile_time_s": first.compile_time_s,
            "final_test_accuracy": float(np.mean([r.test_accuracy[-1] for r in results])),
            "final_test_loss": float(np.mean([r.test_loss[-1] for r in results])),
            "per_seed": {
                str(r.seed): {
                    "final_test_accuracy": float(r.test_accuracy[-1]),
                    "final_test_loss": float(r.test_loss[-1]),
                    "diverged_at": r.diverged_at,
                }
                for r in results
            },
        }
    )


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------ MLflow payload


def model_run_payload(
    training_trace: pd.DataFrame,
    eval_trace: pd.DataFrame,
    smoothness_trace: pd.DataFrame,
    ics_trace: pd.DataFrame,
    initial_state: dict[str, Any],
    final_state: dict[str, Any],
    run_record: dict[str, Any],
    mlflow: dict[str, Any],
) -> dict[str, Any]:
    """The model's MLflow run: the same parameter and metric keys for both models.

    Params: the resolved configs, flattened (``model.normalization``, ``train.learning_rate``,
    ``measurements.paper.probe_max``, ...). Metric histories (every ``metric_stride``-th
    step): ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy`` (every
    evaluation), and per preset ``<preset>.loss_range``, ``<preset>.grad_pred_max``,
    ``<preset>.beta_smoothness``, ``<preset>.ics_l2.<layer>``, ``<preset>.ics_cosine.<layer>``.
    Final scalars: ``final_*``. Artifacts: ``initial_state.npz``, ``final_state.npz``.
    """
    stride = int(mlflow["metric_stride"])
    if stride < 1:
        raise ValueError(f"mlflow.metric_stride must be a positive integer, got {stride}")
    params = _flatten(
        {
            "model": run_record["model_config"],
            "train": run_record["train_config"],
            "measurements": {m["name"]: m for m in run_record["measurement_configs"]},
        }
    )
    history = _metric_history(training_trace, eval_trace, smoothness_trace, ics_trace, stride)
    last_eval = eval_trace[eval_trace["step"] == eval_trace["step"].max()]
    last = training_trace[training_trace["step"] == training_trace["step"].max()]
    metrics = {
        "final_test_accuracy": float(last_eval["test_accuracy"].mean()),
        "final_test_loss": float(last_eval["test_loss"].mean()),
        "final_train_loss": float(last["train_loss"].mean()),
        "final_train_accuracy": float(last["train_accuracy"].mean()),
        "num_seeds": float(len(run_record["seeds"])),
        **{f"seed_{seed}.final_test_accuracy": float(v["final_test_accuracy"]) for seed, v in run_record["per_seed"].items()},
        "num_steps": float(run_record["num_steps"]),
        "wall_time_s": float(run_record["wall_time_s"]),
    }
    return {
        "params": params,
        "metrics": metrics,
        "metric_history": history,
        "artifacts": {"initial_state.npz": npz_bytes(flatten_tree(initial_state)), "final_state.npz": npz_bytes(flatten_tree(final_state))},
        "tags": {
            "normalization": run_record["model_config"]["normalization"],
            "seeds": ",".join(str(seed) for seed in run_record["seeds"]),
        },
    }


def _metric_history(training_trace: pd.DataFrame, eval_trace: pd.DataFrame, smoothness_trace: pd.DataFrame,
                    ics_trace: pd.DataFrame, stride: int) -> dict[str, dict[str, np.ndarray]]:
    """Metric histories: the mean over seeds at each (strided) step, and each seed's own
    ``seed_<k>.train_loss`` / ``seed_<k>.test_accuracy``."""
    history: dict[str, dict[str, np.ndarray]] = {}

    def add(key: str, frame: pd.DataFrame, column: str, strided: bool = True) -> None:
        if strided:
            frame = frame[frame["step"] % stride == 0]
        mean = frame.groupby("step", sort=True)[column].mean()
        history[key] = {"steps": mean.index.to_numpy(), "values": mean.to_numpy()}

    add("train_loss", training_trace, "train_loss")
    add("train_accuracy", training_trace, "train_accuracy")
    add("test_loss", eval_trace, "test_loss", strided=False)
    add("test_accuracy", eval_trace, "test_accuracy", strided=False)
    for seed, frame in training_trace.groupby("seed"):
        add(f"seed_{seed}.train_loss", frame, "train_loss")
    for seed, frame in eval_trace.groupby("seed"):
        add(f"seed_{seed}.test_accuracy", frame, "test_accuracy", strided=False)
    with_range = smoothness_trace.assign(
        loss_range=smoothness_trace["probe_loss_max"] - smoothness_trace["probe_loss_min"]
    )
    for preset, frame in with_range.groupby("preset", sort=False):
        add(f"{preset}.loss_range", frame, "loss_range")
        add(f"{preset}.grad_pred_max", frame, "grad_diff_max")
        add(f"{preset}.beta_smoothness", frame, "beta_smoothness")
    whole_layers = ics_trace[ics_trace["param"] == "all"]
    for (preset, layer), frame in whole_layers.groupby(["preset", "layer"], sort=False):
        add(f"{preset}.ics_l2.{layer}", frame, "ics_l2")
        add(f"{preset}.ics_cosine.{layer}", frame, "ics_cosine")
    return history


TABLES = {
    "training_trace": training_trace,
    "eval_trace": eval_trace,
    "ics_trace": ics_trace,
    "probe_trace": probe_trace,
    "smoothness_trace": smoothness_trace,
    "activation_stats": activation_table,
    "init_distance": init_distance_table,
}
"""The per-seed tables of a training result, by output name."""


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
