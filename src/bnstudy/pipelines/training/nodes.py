"""Thin Kedro adapter: parameters -> core configs -> :func:`bnstudy.core.train_seeds` -> outputs.

The configs are those the preflight validated (:func:`bnstudy.parameters.model_configs`); the
tables, run-keyed states and run record are made by :mod:`bnstudy.analysis.traces`, the MLflow
payload by :mod:`bnstudy.tracking`. What is left here is the run's environment (library
versions, the device) and the JSON-ready record.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bnstudy.analysis.traces import (
    activation_histograms,
    by_run,
    model_state,
    model_traces,
    run_record,
)
from bnstudy.core import train_seeds
from bnstudy.datasets.results_dataset import content_digest
from bnstudy.parameters import model_configs, with_code_defaults
from bnstudy.pipelines import json_ready
from bnstudy.reliability.checkpoints import checkpoint_store
from bnstudy.roster import model_settings
from bnstudy.run_files import configs_about, data_fingerprint, matching_results, runtime_provenance
from bnstudy.tracking import model_run_payload

logger = logging.getLogger(__name__)

__all__ = ["examples", "run_record", "train_and_track", "train_model"]


def train_model(
    model_input_train: dict[str, np.ndarray],
    model_input_test: dict[str, np.ndarray],
    model: dict[str, Any],
    architecture: dict[str, Any],
    training: dict[str, Any],
    measurements: list,
    checkpoints: dict[str, Any],
    imported: dict[str, Any] | None = None,
    live: Any = None,
) -> dict[str, Any]:
    """Train one model of the roster in every seed of ``training.seeds`` (one stacked run)
    with every measurement config on the same trajectory.

    ``model`` is the model's roster entry (``models.<name>``: its normalization and its
    overrides), merged over the shared ``architecture``, ``training``, ``measurements`` and
    ``checkpoints`` (:func:`bnstudy.roster.model_settings`). ``live``
    (:class:`bnstudy.datasets.LiveModelRun`), the model's MLflow run while it trains, logs
    the progress and keeps the clock that dates its metrics (``run_record["clock"]``).

    Returns the pipeline's outputs by name: ``initial_state`` / ``final_state``
    (``{"seed_<k>": {"params", "batch_stats"}}``), the traces (each with ``seed`` and
    ``learning_rate`` columns), ``activation_histograms`` (``{"seed_<k>": ...}``) and
    ``run_record``. With ``imported`` (``imported_runs``) naming a folder, the model is not
    trained: its results are those that ``benchmarks/paper_run.py --out`` saved there with this
    model's configuration and data (:func:`bnstudy.run_files.matching_results`), and its run
    record keeps that run's runtime and timings. With a learning-rate sweep (``training.learning_rates``) the states and
    histograms of a seed hold one entry per rate
    (:func:`bnstudy.analysis.traces.by_run`: ``seed_<k>/lr_<x>``).
    """
    shared = {"architecture": architecture, "training": training, "measurements": measurements,
              "checkpoints": checkpoints}
    settings = model_settings(shared, model)
    configs = model_configs(settings)  # built and checked by the preflight: looked up here
    results, runtime = _trained_or_imported(
        configs, (*examples(model_input_train), *examples(model_input_test)), imported, live)
    return {
        "initial_state": by_run(results, lambda r: model_state(r.initial_params, r.initial_batch_stats)),
        "final_state": by_run(results, lambda r: model_state(r.final_params, r.final_batch_stats)),
        **model_traces(results),
        "activation_histograms": by_run(results, activation_histograms),
        "run_record": json_ready({
            **run_record(results),
            "num_train": int(len(examples(model_input_train)[1])),
            "num_test": int(len(examples(model_input_test)[1])),
            "runtime": runtime,
            # the model's parameters, the code's defaults included (the MLflow run's params),
            # and when each chunk ended
            "parameters": with_code_defaults(settings),
            "clock": None if live is None else live.clock(),
        }),
    }


def _trained_or_imported(configs, arrays: tuple, imported: dict[str, Any] | None,
                         live: Any) -> tuple[list, dict[str, Any]]:
    """(the model's results, the runtime they were made on): trained here, or read from
    ``imported["path"]`` (:func:`bnstudy.run_files.matching_results`)."""
    if (imported or {}).get("path"):
        results, about = matching_results(
            imported["path"], configs_about(configs.model, configs.train, configs.measurements),
            data_fingerprint(*arrays))
        return results, about["runtime"]
    directory = configs.checkpoints.directory
    results = train_seeds(
        configs.model, configs.train, list(configs.measurements), *arrays,
        # One folder per normalization; inside it, one per configuration hash.
        checkpoints=(None if directory is None
                     else checkpoint_store(f"{directory}/{configs.model.normalization}")),
        checkpoint_every_s=float(configs.checkpoints.every_s),
        progress=live,
    )
    return results, runtime_provenance()


def train_and_track(mlflow: dict[str, Any], live: Any = None, **inputs: Any) -> dict[str, Any]:
    """:func:`train_model`, then the model's MLflow payload from its outputs
    (:func:`bnstudy.tracking.model_run_payload`, output ``mlflow_run``), in one node: saving
    the payload ends the model's run, so each model's run ends when its own training does.
    (As a node of its own the payload waited for the next model's training: Kedro runs a
    pipeline level by level, and every model's training is on the level before.) ``inputs``:
    :func:`train_model`'s, by name."""
    outputs = train_model(**inputs, live=live)
    outputs["mlflow_run"] = model_run_payload(
        outputs["training_trace"], outputs["eval_trace"], outputs["smoothness_trace"],
        outputs["ics_trace"], outputs["initial_state"], outputs["final_state"],
        outputs["run_record"], mlflow, outputs["curvature_trace"])
    return outputs


def collect_results(mlflow_run: dict[str, Any], **outputs: Any) -> dict[str, Any]:
    """The model's results (``<model>.results``, a
    :class:`~bnstudy.datasets.ModelResultsDataset`): the content digest of each of its
    ``outputs`` as this node read them, which that dataset pins by version, and its MLflow run
    (``mlflow_run``'s id and status). Everything outside the model's namespace reads this one
    dataset."""
    return {"digests": {name: content_digest(value) for name, value in outputs.items()},
            "mlflow_run": mlflow_run}


def examples(model_input: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of a model input: CIFAR-10's ``images`` and ``labels``, or the
    linear regression's ``samples`` and ``targets`` (pipelines/linear_data)."""
    for inputs, targets in (("images", "labels"), ("samples", "targets")):
        if inputs in model_input:
            return model_input[inputs], model_input[targets]
    raise ValueError(f"a model input holds images and labels, or samples and targets; this one "
                     f"holds {sorted(model_input)}")
