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
        "params": {"normalization": "batch", "training.learning_rate": 0.035},
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
    assert child.data.params == {"normalization": "batch", "training.learning_rate": "0.035"}
    assert child.data.metrics["final_test_accuracy"] == 0.5 and "bad" not in child.data.metrics
    history = tracking.get_metric_history(child.info.run_id, "train_loss")
    assert len(history) == 2500 and {m.step for m in history} == set(range(2500))  # > one 1000-metric batch
    assert [a.path for a in tracking.list_artifacts(child.info.run_id)] == ["final_state.npz"]


def test_without_an_active_run_nothing_is_logged(tracking, caplog):
    MlflowModelRunDataset(run_name="baseline").save({"metrics": {"x": 1.0}})
    assert "is not logged" in caplog.text
    assert tracking.search_runs([tracking.get_experiment_by_name("test").experiment_id]) == []


def test_unknown_payload_keys_are_an_error(tracking):
    dataset = MlflowModelRunDataset(run_name="baseline")
    with pytest.raises(DatasetError, match="unknown payload keys \\['metric'\\]"):
        dataset.save({"metric": {}})


def test_load_names_the_newest_model_run_of_that_name_under_the_active_run(tracking):
    """What the model's results record: its run's id and status; none outside a run."""
    dataset = MlflowModelRunDataset(run_name="baseline")
    assert dataset.load() == {"run_name": "baseline", "run_id": None, "status": None}
    with mlflow.start_run():
        assert dataset.load()["run_id"] is None  # not logged yet
        MlflowModelRunDataset(run_name="candidate").save({"metrics": {"x": 1.0}})
        dataset.save({"metrics": {"x": 1.0}})
        loaded = dataset.load()
    assert loaded["run_id"] == dataset.last_run_id and loaded["status"] == "FINISHED"
    assert tracking.get_run(loaded["run_id"]).info.run_name == "baseline"


def test_bytes_dataset_logs_each_version_as_an_artifact(tracking, tmp_path):
    dataset = BytesDataset(filepath=str(tmp_path / "figure.png"), mlflow_artifact_path="figures")
    with mlflow.start_run() as run:
        dataset.save(b"\x89PNG data")
    assert dataset.load() == b"\x89PNG data"
    assert [a.path for a in tracking.list_artifacts(run.info.run_id, "figures")] == ["figures/figure.png"]
    text = BytesDataset(filepath=str(tmp_path / "r.md"))
    text.save("# héllo")
    assert text.load() == "# héllo".encode()


def test_live_run_is_opened_at_load_logs_progress_and_is_ended_by_the_payload(tracking):
    """The model run exists while it trains: progress points carry their real step and time,
    the payload lands in the same run (dated by the live clock), and its end ends the run."""
    import time

    from bnstudy.datasets import MlflowLiveRunDataset
    from bnstudy.tracking import dated

    with mlflow.start_run() as parent:
        live = MlflowLiveRunDataset(run_name="baseline").load()
        assert tracking.get_run(live.run_id).info.status == "RUNNING"
        for done in (5, 10):
            time.sleep(0.02)
            live(done, 10, {"train_loss": 2.0 / done, "test_accuracy": float("nan")})
        clock = live.clock()
        history = {"train_loss": {"steps": np.arange(10), "values": np.linspace(2, 1, 10)}}
        history["train_loss"]["timestamps"] = dated(history["train_loss"]["steps"], clock)
        saved = MlflowModelRunDataset(run_name="baseline")
        saved.save({"metric_history": history})
        assert mlflow.active_run().info.run_id == parent.info.run_id

    assert saved.last_run_id == live.run_id  # one run per model, not two
    run = tracking.get_run(live.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.info.end_time >= clock["unix_ms"][-1] and run.info.start_time <= clock["unix_ms"][0]
    progress = tracking.get_metric_history(live.run_id, "progress/train_loss")
    assert [(m.step, m.value) for m in progress] == [(5, 0.4), (10, 0.2)]
    assert progress[0].timestamp < progress[1].timestamp  # when each chunk ended
    assert tracking.get_metric_history(live.run_id, "progress/test_accuracy") == []  # no NaN
    stamps = {m.step: m.timestamp for m in tracking.get_metric_history(live.run_id, "train_loss")}
    assert stamps[4] == clock["unix_ms"][1] and stamps[5] == clock["unix_ms"][2]  # step 4 is the 5th


def test_dated_maps_steps_to_the_end_of_their_chunk():
    from bnstudy.tracking import dated

    clock = {"steps": [0, 3, 6], "unix_ms": [100, 200, 300]}
    # trained steps 0..2 end with the chunk that reaches 3 done; step 3..5 with the next
    assert dated(np.arange(6), clock).tolist() == [200, 200, 200, 300, 300, 300]
    # evaluations at 0, 3, 6 steps done: the start, then right after each chunk
    assert dated(np.array([0, 3, 6]), clock, evaluation=True).tolist() == [100, 200, 300]


def test_live_run_without_tracking_keeps_the_clock(tracking):
    from bnstudy.datasets import MlflowLiveRunDataset

    live = MlflowLiveRunDataset(run_name="baseline").load()
    live(4, 8, {"train_loss": 1.0})
    assert live.run_id is None and live.clock()["steps"] == [0, 4]
    with pytest.raises(DatasetError, match="load-only"):
        MlflowLiveRunDataset(run_name="baseline").save({"metrics": {}})
