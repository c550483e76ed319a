"""``MlflowModelRunDataset``: logs one model's results as a nested MLflow run.

kedro-mlflow opens one run per ``kedro run`` (the study's parent run) and logs every
``params:*`` input to it. The study also wants one *child* run per model, with the same
metric and parameter keys for both, so that MLflow's compare view puts baseline and
candidate side by side. This dataset declares that in the catalog: a node returns a plain
payload, and saving it creates the child run under whatever run is active (the parent),
through ``MlflowClient`` so the parent stays the active run.

Payload (all keys optional)::

    {
        "params": {"normalization": "batch", "training.learning_rate": 0.035, ...},
        "metrics": {"final_test_accuracy": 0.85, ...},               # final scalars
        "metric_history": {"train_loss": {"steps": [...], "values": [...]}, ...},
        "artifacts": {"final_state.npz": b"...", ...},                # file name -> bytes
        "tags": {"model": "candidate"},
    }
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

_BATCH = 1000  # MLflow's log_batch limit on metrics per call
_MAX_PARAM_CHARS = 6000


class MlflowModelRunDataset(AbstractDataset[dict[str, Any], None]):
    """Save-only: creates a child MLflow run named ``run_name`` and logs the payload to it.

    Args:
        run_name: the child run's name (e.g. ``"{model}"`` in a factory pattern).
        tags: extra tags for the child run.
        metadata: free-form (kedro-viz layer, ...).
    """

    def __init__(
        self,
        *,
        run_name: str,
        tags: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._run_name = run_name
        self._tags = dict(tags or {})
        self.metadata = metadata
        self.last_run_id: str | None = None

    def _describe(self) -> dict[str, Any]:
        return {"run_name": self._run_name, "tags": self._tags}

    def load(self) -> dict[str, Any]:
        raise DatasetError(
            f"MlflowModelRunDataset '{self._run_name}' is save-only: read the run back with "
            "mlflow.search_runs(filter_string=\"tags.mlflow.runName = '...'\")."
        )

    def _exists(self) -> bool:
        return False

    def save(self, data: dict[str, Any]) -> None:
        import mlflow
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        unknown = set(data) - {"params", "metrics", "metric_history", "artifacts", "tags"}
        if unknown:
            raise DatasetError(f"MlflowModelRunDataset: unknown payload keys {sorted(unknown)}")
        parent = mlflow.active_run()
        if parent is None:
            logger.warning(
                "No active MLflow run (tracking disabled for this pipeline?): the '%s' model run "
                "was not logged.",
                self._run_name,
            )
            return
        client = mlflow.MlflowClient()
        tags = {**self._tags, **data.get("tags", {}), MLFLOW_PARENT_RUN_ID: parent.info.run_id}
        child = client.create_run(
            experiment_id=parent.info.experiment_id,
            run_name=self._run_name,
            tags={**tags, MLFLOW_RUN_NAME: self._run_name},
        )
        run_id = child.info.run_id
        try:
            counts = _log_payload(client, run_id, data)
        except Exception:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")
        self.last_run_id = run_id
        logger.info(
            "Logged model run '%s' (%s) under %s: %d params, %d metric points, %d artifacts",
            self._run_name,
            run_id,
            parent.info.run_id,
            *counts,
        )


def _log_payload(client, run_id: str, data: dict[str, Any]) -> tuple[int, int, int]:
    """Log params, metrics (final scalars at step 0 and histories), a point-count tag and the
    artifacts to run ``run_id``; returns (params, metric points, artifacts) counts."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    params = [Param(key, str(value)[:_MAX_PARAM_CHARS]) for key, value in data.get("params", {}).items()]
    metrics = [Metric(key, float(value), now, 0) for key, value in data.get("metrics", {}).items() if _finite(value)]
    for key, series in data.get("metric_history", {}).items():
        metrics.extend(
            Metric(key, float(value), now, int(step))
            for step, value in zip(series["steps"], series["values"], strict=True)
            if _finite(value)
        )
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
    client.log_batch(run_id, tags=[RunTag("bnstudy.num_metric_points", str(len(metrics)))])
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
