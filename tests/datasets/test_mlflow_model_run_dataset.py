"""MlflowModelRunDataset: a nested run under the active run, with the payload logged."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from kedro.io.core import DatasetError

from bnstudy.datasets import BytesDataset, MlflowModelRunDataset


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A throw-away tracking store. mlflow.set_tracking_uri / set_experiment also write
    MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID into os.environ, which later Kedro sessions in
    this process would follow: monkeypatch restores both afterwards."""
    monkeypatch.chdir(tmp_path)
    previous_uri = mlflow.get_tracking_uri()
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("test")
    yield mlflow.MlflowClient()
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous_uri)


def test_child_run_is_nested_and_holds_the_payload(tracking):
    payload = {
        "params": {"model.normalization": "batch", "train.learning_rate": 0.035},
        "metrics": {"final_test_accuracy": 0.5, "bad": float("nan")},
        "metric_history": {"train_loss": {"steps": np.arange(2500), "values": np.linspace(2, 1, 2500)}},
        "artifacts": {"final_state.npz": b"PK-bytes"},
        "tags": {"normalization": "batch"},
    }
    dataset = MlflowModelRunDataset(run_name="candidate")
    with mlflow.start_run() as parent:
        dataset.save(payload)
        assert mlflow.active_run().info.run_id == parent.info.run_id  # the parent stays active

    child = tracking.get_run(dataset.last_run_id)
    assert child.info.run_name == "candidate" and child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.params == {"model.normalization": "batch", "train.learning_rate": "0.035"}
    assert child.data.metrics["final_test_accuracy"] == 0.5 and "bad" not in child.data.metrics
    history = tracking.get_metric_history(child.info.run_id, "train_loss")
    assert len(history) == 2500 and {m.step for m in history} == set(range(2500))  # > one 1000-metric batch
    assert [a.path for a in tracking.list_artifacts(child.info.run_id)] == ["final_state.npz"]


def test_without_an_active_run_nothing_is_logged(tracking, caplog):
    MlflowModelRunDataset(run_name="baseline").save({"metrics": {"x": 1.0}})
    assert "was not logged" in caplog.text
    assert tracking.search_runs([tracking.get_experiment_by_name("test").experiment_id]) == []


def test_unknown_payload_keys_and_load_are_errors(tracking):
    dataset = MlflowModelRunDataset(run_name="baseline")
    with pytest.raises(DatasetError, match="unknown payload keys \\['metric'\\]"):
        dataset.save({"metric": {}})
    with pytest.raises(DatasetError, match="save-only"):
        dataset.load()


def test_bytes_dataset_logs_each_version_as_an_artifact(tracking, tmp_path):
    dataset = BytesDataset(filepath=str(tmp_path / "figure.png"), mlflow_artifact_path="figures")
    with mlflow.start_run() as run:
        dataset.save(b"\x89PNG data")
    assert dataset.load() == b"\x89PNG data"
    assert [a.path for a in tracking.list_artifacts(run.info.run_id, "figures")] == ["figures/figure.png"]
    text = BytesDataset(filepath=str(tmp_path / "r.md"))
    text.save("# héllo")
    assert text.load() == "# héllo".encode()
