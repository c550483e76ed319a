"""One MLflow run per model, nested under the study's run, open while the model trains.

kedro-mlflow opens one run per ``kedro run`` (the study's parent run) and logs every
``params:*`` input to it. The study also wants one *child* run per model, with the same
metric and parameter keys for both, so that MLflow's compare view puts baseline and
candidate side by side. Two datasets of the catalog share that child run (by name, under
the active parent):

* :class:`MlflowLiveRunDataset` (load-only), an input of the training node: loading it
  creates the child run when training starts and returns a :class:`LiveModelRun`, the
  node's progress callback, which logs ``progress/<metric>`` after every chunk at its real
  step and wall-clock time, and keeps that clock (step -> time) for the payload.
* :class:`MlflowModelRunDataset`, the training node's ``mlflow_run`` output: saving logs
  the payload to the same child run and ends it, so the run's duration covers training;
  loading names that run (the model's ``collect_results_node`` records its id).

Payload (all keys optional)::

    {
        "params": {"normalization": "batch", "training.learning_rate": 0.035, ...},
        "metrics": {"final_test_accuracy": 0.85, ...},               # final scalars
        "metric_history": {"train_loss": {"steps": [...], "values": [...],
                                          "timestamps": [...]}, ...},  # unix ms, optional
        "artifacts": {"final_state.npz": b"...", ...},                # file name -> bytes
        "tags": {"model": "candidate"},
    }

The metric keys and their prefixes are documented in docs/tracking.md.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)

# The tag MLflow 3's UI draws a run's colour from: each model's run in its figures' colour.
RUN_COLOR_TAG = "mlflow.runColor"
_BATCH = 1000  # MLflow's log_batch limit on metrics per call
_MAX_PARAM_CHARS = 6000


class _ModelRunDataset:
    """What both datasets of a model run hold: the child run's name and extra tags."""

    def __init__(self, *, run_name: str, tags: dict[str, str] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self._run_name = run_name
        self._tags = dict(tags or {})
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"run_name": self._run_name, "tags": self._tags}


class MlflowModelRunDataset(_ModelRunDataset, AbstractDataset[dict[str, Any], None]):
    """Saving logs the payload to the child run ``run_name`` under the active run (the one its
    :class:`MlflowLiveRunDataset` opened, or a new one) and ends it FINISHED; loading names
    that run (its id and status, which the model's results record).

    Args:
        run_name: the child run's name (e.g. ``"{model}"`` in a factory pattern).
        tags: extra tags for the child run.
        metadata: free-form (kedro-viz layer, ...).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.last_run_id: str | None = None

    def load(self) -> dict[str, Any]:
        """The newest child run ``run_name`` under the active run, as its model's results
        record it: ``{"run_name", "run_id", "status"}``; ``run_id`` and ``status`` are None
        without an active run (tracking disabled) or before the run was logged."""
        import mlflow

        from bnstudy.reliability.tracking import nested_runs

        found, parent = [], mlflow.active_run()
        if parent is not None:
            found = nested_runs(mlflow.MlflowClient(), parent, run_name=self._run_name)
        info = found[-1].info if found else None
        return {"run_name": self._run_name, "run_id": info.run_id if info else None,
                "status": info.status if info else None}

    def _exists(self) -> bool:
        return False

    def save(self, data: dict[str, Any]) -> None:
        unknown = set(data) - {"params", "metrics", "metric_history", "artifacts", "tags"}
        if unknown:
            raise DatasetError(f"MlflowModelRunDataset: unknown payload keys {sorted(unknown)}")
        opened = open_model_run(self._run_name, {**self._tags, **data.get("tags", {})})
        if opened is None:
            return
        client, run_id, parent_id = opened
        try:
            counts = _log_payload(client, run_id, data)
        except Exception:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")
        self.last_run_id = run_id
        logger.info(
            "Logged model run '%s' (%s) under %s: %d params, %d metric points, %d artifacts",
            self._run_name, run_id, parent_id, *counts,
        )


class MlflowLiveRunDataset(_ModelRunDataset, AbstractDataset[Any, "LiveModelRun"]):
    """Load-only: opens (or finds) the child run ``run_name`` under the active run and
    returns its :class:`LiveModelRun`; without an active run, a LiveModelRun that only keeps
    the clock.

    Args:
        run_name: the child run's name; the same as its :class:`MlflowModelRunDataset`'s.
        tags: extra tags for the child run.
        metadata: free-form (kedro-viz layer, ...).
    """

    def load(self) -> LiveModelRun:
        opened = open_model_run(self._run_name, self._tags)
        if opened is None:
            return LiveModelRun(None, None, self._run_name)
        client, run_id, _parent = opened
        return LiveModelRun(client, run_id, self._run_name)

    def save(self, data: Any) -> None:
        raise DatasetError(
            f"MlflowLiveRunDataset '{self._run_name}' is load-only: a training node reads it to "
            "log its progress; the model's payload goes to an MlflowModelRunDataset."
        )

    def _exists(self) -> bool:
        return True


class LiveModelRun:
    """A training node's progress callback ``(done, total, metrics)``: logs each metric as
    ``progress/<name>`` at step ``done`` with the wall-clock time, and keeps the clock.

    Logging failures (a tracking server gone mid-run) are warned about once and never stop
    the training: the clock, and so the payload's timestamps, are kept regardless.

    Attributes:
        run_id: the child run (None: not tracked).
    """

    def __init__(self, client: Any, run_id: str | None, run_name: str) -> None:
        self.client, self.run_id, self.run_name = client, run_id, run_name
        self._clock: list[tuple[int, int]] = [(0, _now_ms())]
        self._failed = False

    def __call__(self, done: int, total: int, metrics: dict[str, float]) -> None:
        now = _now_ms()
        self._clock.append((int(done), now))
        if self.run_id is None or self._failed:
            return
        from mlflow.entities import Metric

        points = [Metric(f"progress/{key}", float(value), now, int(done))
                  for key, value in metrics.items() if _finite(value)]
        try:
            self.client.log_batch(self.run_id, metrics=points)
        except Exception as error:  # noqa: BLE001 - tracking must not stop a training
            self._failed = True
            logger.warning("Live logging to MLflow run %s ('%s') failed at step %d (%s); training "
                           "goes on and its results are logged at the end.", self.run_id,
                           self.run_name, done, error)

    def clock(self) -> dict[str, list[int]]:
        """``{"steps": [...], "unix_ms": [...]}``: when each chunk ended (``steps``: steps done
        by then; the first entry is the start). The payload dates every value with it."""
        return {"steps": [step for step, _ in self._clock], "unix_ms": [ms for _, ms in self._clock]}


def open_model_run(run_name: str, tags: dict[str, str]) -> tuple[Any, str, str] | None:
    """``(client, child run id, parent run id)`` of the RUNNING child run ``run_name`` under
    the active run, created (tagged with this process and the model's colour) if there is
    none yet; None and a
    warning without an active run (tracking disabled for this pipeline)."""
    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    from bnstudy.palette import model_color
    from bnstudy.reliability.tracking import nested_runs, process_tags

    parent = mlflow.active_run()
    if parent is None:
        logger.warning("No active MLflow run (tracking disabled for this pipeline?): the '%s' "
                       "model run is not logged.", run_name)
        return None
    client = mlflow.MlflowClient()
    parent_id = parent.info.run_id
    found = nested_runs(client, parent, running_only=True, run_name=run_name)
    if found:
        run_id = found[-1].info.run_id  # the newest (nested_runs is oldest first)
        if tags:
            client.log_batch(run_id, tags=_run_tags(tags))
        return client, run_id, parent_id
    child = client.create_run(
        experiment_id=parent.info.experiment_id, run_name=run_name,
        tags={**process_tags(), RUN_COLOR_TAG: model_color(run_name), **tags,
              MLFLOW_PARENT_RUN_ID: parent_id, MLFLOW_RUN_NAME: run_name})
    return client, child.info.run_id, parent_id


def _run_tags(tags: dict[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(key, str(value)) for key, value in tags.items()]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log_payload(client, run_id: str, data: dict[str, Any]) -> tuple[int, int, int]:
    """Log params, metrics (final scalars at step 0 and histories), a point-count tag and the
    artifacts to run ``run_id``; returns (params, metric points, artifacts) counts."""
    from mlflow.entities import Metric, Param

    now = _now_ms()
    params = [Param(key, str(value)[:_MAX_PARAM_CHARS]) for key, value in data.get("params", {}).items()]
    metrics = [Metric(key, float(value), now, 0) for key, value in data.get("metrics", {}).items() if _finite(value)]
    for key, series in data.get("metric_history", {}).items():
        stamps = series.get("timestamps")
        stamps = [now] * len(series["steps"]) if stamps is None else stamps
        metrics.extend(
            Metric(key, float(value), int(stamp), int(step))
            for step, value, stamp in zip(series["steps"], series["values"], stamps, strict=True)
            if _finite(value)
        )
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
    client.log_batch(run_id, tags=_run_tags({"bnstudy.num_metric_points": len(metrics)}))
    artifacts = data.get("artifacts", {})
    if artifacts:
        with tempfile.TemporaryDirectory() as folder:
            for name, payload in artifacts.items():
                (Path(folder) / name).write_bytes(payload)
            client.log_artifacts(run_id, folder)
    return len(params), len(metrics), len(artifacts)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
