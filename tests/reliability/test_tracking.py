"""Guarantees 1 and 2: an unreachable tracking server fails fast and clearly; runs left RUNNING
by a killed process are marked KILLED by the next run."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bnstudy.errors import TrackingServerUnreachable
from bnstudy.reliability import tracking
from tests.reliability.cli_helpers import dead_pid, kedro_env, new_project, run_kedro


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """An http URL on 127.0.0.1 whose port is bound but not listening: connections are refused
    (and no other process can take the port while the test runs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """An http URL whose server accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_probe_refused_connection_names_the_setting_and_the_fix(refusing_url):
    start = time.monotonic()
    with pytest.raises(TrackingServerUnreachable) as caught:
        tracking.probe_tracking_server(refusing_url)
    assert time.monotonic() - start < 1.0
    message = str(caught.value)
    assert refusing_url in message
    assert "MLFLOW_TRACKING_URI" in message and "server.mlflow_tracking_uri" in message
    assert "sqlite:///mlflow.db" in message


def test_probe_times_out_on_a_server_that_never_answers(silent_url):
    start = time.monotonic()
    with pytest.raises(TrackingServerUnreachable, match="timed out"):
        tracking.probe_tracking_server(silent_url, timeout_s=0.5)
    assert 0.4 < time.monotonic() - start < 3.0


def test_probe_accepts_any_http_answer(http_server):
    server, _served = http_server  # serves an empty folder: /health answers 404
    tracking.probe_tracking_server(server.url("").rstrip("/"))
    assert server.requests == 1


def test_probe_skips_local_stores():
    for uri in ("sqlite:///mlflow.db", "file:///tmp/mlruns", "mlruns", None):
        tracking.probe_tracking_server(uri)


@pytest.mark.slow
def test_kedro_run_fails_fast_and_short_when_the_server_is_unreachable(tmp_path, refusing_url):
    """The issue: >240 s of silent retries, then a 499-line exception."""
    project = new_project(tmp_path)
    env = kedro_env(project, MLFLOW_TRACKING_URI=refusing_url)

    result = run_kedro(project, ["run", "--env", "test"], env, timeout_s=60)

    assert result.returncode == 1
    assert result.seconds < 30
    assert "Running node" not in result.stdout  # failed before any node
    assert "Traceback" not in result.terminal
    lines = result.user_lines()
    assert len(lines) <= 3, lines
    assert lines[0].startswith(f"Error: MLflow tracking server {refusing_url} is unreachable")
    assert "MLFLOW_TRACKING_URI" in lines[0] and "sqlite:///mlflow.db" in lines[0]


# ----------------------------------------------------------------------------- stale runs


@pytest.fixture
def client(tmp_path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def _running(client, experiment_id: str, tags: dict[str, str]) -> str:
    return client.create_run(experiment_id, tags=tags).info.run_id


def test_stale_runs_of_dead_processes_are_killed_live_ones_kept(client, tmp_path):
    experiment = client.create_experiment("bnstudy", artifact_location=(tmp_path / "a").as_uri())
    host, gone = socket.gethostname(), str(dead_pid())
    me = tracking.process_tags()
    dead = _running(client, experiment, {tracking.PID_TAG: gone, tracking.HOST_TAG: host})
    child_of_dead = _running(client, experiment, {tracking.PARENT_TAG: dead})
    reused_pid = _running(client, experiment, {**me, tracking.PROCESS_START_TAG: "1"})
    alive = _running(client, experiment, me)
    child_of_alive = _running(client, experiment, {tracking.PARENT_TAG: alive})
    other_host = _running(client, experiment, {tracking.PID_TAG: gone, tracking.HOST_TAG: "x"})
    untagged = _running(client, experiment, {})

    killed = tracking.mark_stale_runs_killed(client, experiment)

    assert sorted(killed) == sorted([dead, child_of_dead, reused_pid])
    status = {run_id: client.get_run(run_id).info.status for run_id in
              (dead, child_of_dead, reused_pid, alive, child_of_alive, other_host, untagged)}
    assert status == {
        dead: "KILLED", child_of_dead: "KILLED", reused_pid: "KILLED",
        alive: "RUNNING", child_of_alive: "RUNNING", other_host: "RUNNING", untagged: "RUNNING",
    }


def test_orphan_nested_run_under_an_ended_parent_is_killed(client, tmp_path):
    experiment = client.create_experiment("bnstudy", artifact_location=(tmp_path / "a").as_uri())
    parent = _running(client, experiment, tracking.process_tags())
    client.set_terminated(parent, status="FAILED")
    orphan = _running(client, experiment, {tracking.PARENT_TAG: parent})

    assert tracking.mark_stale_runs_killed(client, experiment) == [orphan]
    assert client.get_run(orphan).info.status == "KILLED"


def test_a_killed_unreaped_process_counts_as_dead():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert tracking.process_is_alive(child.pid)
        child.kill()
        time.sleep(0.3)  # a zombie until waited for
        assert not tracking.process_is_alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_mark_run_killed_ends_active_and_nested_runs(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{Path(tmp_path) / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # An earlier Kedro session in this process may have set MLflow's process-wide URI, which
    # wins over the variable: point MLflow at this test's store, and restore it afterwards.
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("bnstudy", artifact_location=(tmp_path / "a").as_uri())
    parent = mlflow.start_run(experiment_id=experiment).info.run_id
    nested = mlflow.start_run(nested=True).info.run_id
    child = _running(client, experiment, {tracking.PARENT_TAG: parent})
    finished_child = _running(client, experiment, {tracking.PARENT_TAG: parent})
    client.set_terminated(finished_child, status="FINISHED")

    killed = tracking.mark_run_killed(parent)

    assert mlflow.active_run() is None
    assert sorted(killed) == sorted([parent, nested, child])
    assert [client.get_run(r).info.status for r in (parent, nested, child, finished_child)] == [
        "KILLED", "KILLED", "KILLED", "FINISHED"
    ]
