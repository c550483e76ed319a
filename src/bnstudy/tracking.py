"""What a model's MLflow run receives: params, metric histories, final scalars, tags, artifacts.

:func:`model_run_payload` makes the payload from the model's traces and run record
(bnstudy.analysis.traces); :class:`bnstudy.datasets.mlflow_model_run_dataset.MlflowModelRunDataset`
logs it. A run is one (seed, learning rate) pair: a diverged run is left out of the means and
its own history stops at its divergence, whatever the other runs of its seed did. The MLflow
bookkeeping that survives failures (a reachability probe, process tags, runs marked KILLED) is
:mod:`bnstudy.reliability.tracking`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.analysis.beyond import CURVATURE_METRICS
from bnstudy.analysis.divergence import record_divergence
from bnstudy.analysis.traces import run_key
from bnstudy.datasets.npz_dataset import flatten_tree, npz_bytes

RUN = ["seed", "learning_rate"]
"""The columns that name a run in every trace."""
HEADLINE = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
"""Metric histories without a prefix: MLflow's first chart section. Every other key has a
prefix (``blog/``, ``paper/``, ``seed_<k>/``, ``run/``, ``progress/``: docs/tracking.md)."""


def divergence_status(run_record: dict[str, Any]) -> str:
    """``healthy``, or ``diverged: seed 1 at step 3, seed 2 at step 5`` (the run record's keys:
    ``seed 1/lr_0.1`` in a learning-rate sweep)."""
    bad = record_divergence(run_record)
    if not bad:
        return "healthy"
    return "diverged: " + ", ".join(f"seed {seed} at step {step}" for seed, step in bad.items())


def model_run_payload(
    training_trace: pd.DataFrame,
    eval_trace: pd.DataFrame,
    smoothness_trace: pd.DataFrame,
    ics_trace: pd.DataFrame,
    initial_state: dict[str, Any],
    final_state: dict[str, Any],
    run_record: dict[str, Any],
    mlflow: dict[str, Any],
    curvature_trace: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The model's MLflow run: the same parameter and metric keys for every model.

    Params: the model's parameters as its run record has them, the code's defaults included
    and without the model's namespace (the parent's ``baseline.training.learning_rate`` is the
    child's ``training.learning_rate``). Metric histories (every ``metric_stride``-th step,
    each value dated by the wall-clock time its chunk ended, ``run_record["clock"]``): the
    headline ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy`` (means over
    the healthy runs), per preset ``<preset>/loss_range``, ``<preset>/grad_pred_max``,
    ``<preset>/beta_smoothness``, ``<preset>/ics_l2/<layer>``, ``<preset>/ics_cosine/<layer>``,
    with curvature ``curvature/lambda_max``, ``curvature/batch_sharpness`` and
    ``curvature/hessian_trace`` (every measurement; the trace when it was estimated), and per
    run ``seed_<k>/train_loss``, ``seed_<k>/test_accuracy`` (``seed_<k>/lr_<x>/...`` in a
    learning-rate sweep, :func:`bnstudy.analysis.traces.run_key`). Final scalars: ``final_*`` (headline),
    ``seed_<k>/final_test_accuracy``, ``run/*``. Artifacts: ``initial_state.npz``,
    ``final_state.npz``, ``run_record.json``.
    """
    stride = int(mlflow["metric_stride"])
    if stride < 1:
        raise ValueError(f"mlflow.metric_stride must be a positive integer, got {stride}")
    params = _flatten({**run_record["parameters"], "mlflow": mlflow})
    # Means over the healthy runs only; each run's own history up to its divergence.
    bad = diverged_runs(training_trace)
    kept = [healthy_runs(frame, bad) for frame in (training_trace, eval_trace, smoothness_trace, ics_trace)]
    history = _metric_history(*kept, stride)
    history.update(_run_histories(training_trace, eval_trace, stride,
                                  sweep=len(run_record["learning_rates"]) > 1))
    if curvature_trace is not None and not curvature_trace.empty:
        history.update(_curvature_history(healthy_runs(curvature_trace, bad)))
    clock = run_record["clock"]
    if clock:
        evaluated = {"test_loss", "test_accuracy"}
        for key, series in history.items():
            series["timestamps"] = dated(
                series["steps"], clock, evaluation=key in evaluated or
                key.endswith("/test_accuracy") or key.startswith("curvature/"))
    return {
        "params": params,
        "metrics": _final_metrics(kept[0], kept[1], run_record, len(bad)),
        "metric_history": history,
        "artifacts": {"initial_state.npz": npz_bytes(flatten_tree(initial_state)),
                      "final_state.npz": npz_bytes(flatten_tree(final_state)),
                      "run_record.json": json.dumps(run_record, indent=2).encode()},
        "tags": _tags(run_record),
    }


def diverged_runs(frame: pd.DataFrame) -> dict[tuple[int, float], int]:
    """``{(seed, learning_rate): step it diverged at}`` of a trace (every row of a run carries
    its ``diverged_at``, -1 while healthy)."""
    if frame.empty:
        return {}
    steps = frame.groupby(RUN)["diverged_at"].first()
    return {(int(seed), float(rate)): int(step) for (seed, rate), step in steps.items() if step >= 0}


def healthy_runs(frame: pd.DataFrame, bad: dict[tuple[int, float], int]) -> pd.DataFrame:
    """``frame`` without the rows of the ``bad`` runs and without its divergence columns."""
    runs = pd.MultiIndex.from_frame(frame[RUN].astype({"seed": "int64", "learning_rate": "float64"}))
    kept = frame[~runs.isin(list(bad))] if bad else frame
    return kept.drop(columns=["diverged", "diverged_at"], errors="ignore").reset_index(drop=True)


def dated(steps: np.ndarray, clock: dict[str, list[int]], evaluation: bool = False) -> np.ndarray:
    """The wall-clock time (unix ms) each step's value existed: the end of the chunk that
    computed it. A trained step ``s`` (0-based) is done once ``s + 1`` steps are; an
    evaluation at ``s`` steps done ran right after the chunk that reached ``s``."""
    done = np.asarray(clock["steps"])
    index = np.searchsorted(done, np.asarray(steps) + (0 if evaluation else 1), side="left")
    return np.asarray(clock["unix_ms"], np.int64)[np.clip(index, 0, done.size - 1)]


def _final_metrics(training: pd.DataFrame, evals: pd.DataFrame, run_record: dict[str, Any],
                   num_diverged: int) -> dict[str, float]:
    """Final scalars over the healthy runs' traces; values that do not exist (every run
    diverged) are left out, since MLflow charts no NaN."""
    last_eval = evals[evals["step"] == evals["step"].max()] if not evals.empty else evals
    last = training[training["step"] == training["step"].max()] if not training.empty else training
    metrics = {
        "final_test_accuracy": last_eval["test_accuracy"].mean(),
        "final_test_loss": last_eval["test_loss"].mean(),
        "final_train_loss": last["train_loss"].mean(),
        "final_train_accuracy": last["train_accuracy"].mean(),
        "run/num_seeds": len(run_record["seeds"]),
        "run/num_diverged_seeds": num_diverged,  # diverged runs: (seed, learning rate) pairs
        **{f"seed_{seed}/final_test_accuracy": v["final_test_accuracy"] for seed, v in run_record["per_seed"].items()},
        "run/num_steps": run_record["num_steps"],
        "run/wall_time_s": run_record["wall_time_s"],
    }
    return {key: float(v) for key, v in metrics.items() if v is not None and np.isfinite(v)}


def _tags(run_record: dict[str, Any]) -> dict[str, str]:
    return {
        "normalization": run_record["model_config"]["normalization"],
        "seeds": ",".join(str(seed) for seed in run_record["seeds"]),
        "status": divergence_status(run_record),
        **{f"seed_{seed}.diverged_at": str(step) for seed, step in record_divergence(run_record).items()},
    }


def _metric_history(training_trace: pd.DataFrame, eval_trace: pd.DataFrame, smoothness_trace: pd.DataFrame,
                    ics_trace: pd.DataFrame, stride: int) -> dict[str, dict[str, np.ndarray]]:
    """Metric histories: the mean over runs at each (strided) step (the runs given, i.e.
    the healthy ones; each run's own history is :func:`_run_histories`)."""
    history: dict[str, dict[str, np.ndarray]] = {}

    def add(key: str, frame: pd.DataFrame, column: str, strided: bool = True) -> None:
        if strided:
            frame = frame[frame["step"] % stride == 0]
        mean = frame.groupby("step", sort=True)[column].mean().dropna()
        history[key] = {"steps": mean.index.to_numpy(), "values": mean.to_numpy()}

    add("train_loss", training_trace, "train_loss")
    add("train_accuracy", training_trace, "train_accuracy")
    add("test_loss", eval_trace, "test_loss", strided=False)
    add("test_accuracy", eval_trace, "test_accuracy", strided=False)
    with_range = smoothness_trace.assign(
        loss_range=smoothness_trace["probe_loss_max"] - smoothness_trace["probe_loss_min"]
    )
    for preset, frame in with_range.groupby("preset", sort=False):
        add(f"{preset}/loss_range", frame, "loss_range")
        add(f"{preset}/grad_pred_max", frame, "grad_diff_max")
        add(f"{preset}/beta_smoothness", frame, "beta_smoothness")
    whole_layers = ics_trace[ics_trace["param"] == "all"]
    for (preset, layer), frame in whole_layers.groupby(["preset", "layer"], sort=False):
        add(f"{preset}/ics_l2/{layer}", frame, "ics_l2")
        add(f"{preset}/ics_cosine/{layer}", frame, "ics_cosine")
    return history


def _curvature_history(curvature: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """``curvature/<metric>``: the mean over the healthy runs at every measurement (none for
    the trace when ``training.curvature_trace_samples`` is 0)."""
    history = {}
    for column in CURVATURE_METRICS:
        mean = curvature.groupby("step", sort=True)[column].mean().dropna()
        if not mean.empty:
            history[f"curvature/{column}"] = {"steps": mean.index.to_numpy(), "values": mean.to_numpy()}
    return history


def _run_histories(training_trace: pd.DataFrame, eval_trace: pd.DataFrame, stride: int,
                   sweep: bool) -> dict[str, dict[str, np.ndarray]]:
    """Each run's ``<run_key>/train_loss`` (every ``stride``-th step) and
    ``<run_key>/test_accuracy``, up to its divergence (no NaN)."""
    history = {}
    for name, frame, column, every in (("train_loss", training_trace, "train_loss", stride),
                                       ("test_accuracy", eval_trace, "test_accuracy", 1)):
        rows = frame[(frame["step"] % every == 0) & np.isfinite(frame[column])]
        for (seed, rate), part in rows.groupby(RUN):
            history[f"{run_key(int(seed), float(rate), sweep)}/{name}"] = {
                "steps": part["step"].to_numpy(), "values": part[column].to_numpy()}
    return history


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dicts flattened with ``.``, other values as they are: kedro-mlflow's flattening of the
    study run's params (conf/base/mlflow.yml, dict_params), so both runs use the same names."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
