"""The study run's MLflow bookkeeping against a real (sqlite) tracking store: a failing node
ends its model's run FAILED and the other open model runs KILLED; the Kedro session id is
tagged as what it is; the run's last line is the bare link to the compare view of its model
runs (issue 24: MLflow and Faults)."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from kedro.pipeline import node

from bnstudy.datasets.mlflow_model_run_dataset import open_model_run
from bnstudy.reliability.hooks import SESSION_TAG, RunRecordHooks


@pytest.fixture
def parent(tmp_path, monkeypatch):
    """An active study run (as kedro-mlflow leaves it) in a fresh sqlite store."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("bnstudy", artifact_location=(tmp_path / "mlruns").as_uri())
    run = mlflow.start_run(experiment_id=experiment, tags={"run_id": "2026-12-03T07.00.00.000Z"})
    yield run
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def _hooks(parent) -> RunRecordHooks:
    hooks = RunRecordHooks()
    hooks.run_id, hooks.experiment_id = parent.info.run_id, parent.info.experiment_id
    return hooks


def _status(run_id: str) -> str:
    import mlflow

    return mlflow.MlflowClient().get_run(run_id).info.status


def test_a_failing_node_ends_its_model_run_failed_and_the_others_killed(parent):
    import mlflow

    client = mlflow.MlflowClient()
    finished = open_model_run("baseline", {})[1]
    client.set_terminated(finished, status="FINISHED")  # trained and logged before the failure
    waiting = open_model_run("candidate_l1", {})[1]  # trained, its payload not yet logged
    failing = open_model_run("candidate", {})[1]
    hooks = _hooks(parent)

    def train(x):  # the failing node, in the candidate's namespace as the roster makes it
        return x

    hooks.on_node_error(node(train, "x", "y", name="train_model_node", namespace="candidate"))
    hooks.on_pipeline_error()

    assert _status(failing) == "FAILED"
    assert _status(waiting) == "KILLED"
    assert _status(finished) == "FINISHED"


def test_a_failure_outside_every_model_kills_the_open_model_runs(parent):
    running = open_model_run("baseline", {})[1]
    hooks = _hooks(parent)
    hooks.on_node_error(node(lambda x: x, "x", "y", name="report_node"))  # no namespace
    hooks.on_pipeline_error()
    assert _status(running) == "KILLED"


def test_the_kedro_session_id_is_tagged_as_a_session_id_not_as_run_id(parent):
    import mlflow

    hooks = RunRecordHooks()
    hooks.before_pipeline_run({"run_id": "2026-12-03T07.00.00.000Z", "env": "test"}, catalog=None)
    tags = mlflow.MlflowClient().get_run(parent.info.run_id).data.tags
    assert "run_id" not in tags
    assert tags[SESSION_TAG] == "2026-12-03T07.00.00.000Z"


def test_the_last_line_is_the_bare_link_to_the_compare_view_of_the_model_runs(parent, capsys):
    baseline = open_model_run("baseline", {})[1]
    candidate = open_model_run("candidate", {})[1]
    hooks = _hooks(parent)

    hooks.after_pipeline_run()

    link = capsys.readouterr().out.splitlines()[-1]
    assert link.startswith("http://127.0.0.1:5000/#/compare-runs?") and " " not in link
    query = urllib.parse.parse_qs(link.split("?", 1)[1])
    assert json.loads(query["runs"][0]) == [baseline, candidate]  # oldest first
    assert json.loads(query["experiments"][0]) == [parent.info.experiment_id]
    assert query["workflowType"] == ["machine_learning"]
    import mlflow

    line, _ = hooks.summary()
    assert line == (f"MLflow run {parent.info.run_id} (its 2 model runs compared: start the UI with "
                    f"`mlflow ui --backend-store-uri {mlflow.get_tracking_uri()}`, then open the link "
                    "below)")


def test_a_run_without_model_runs_links_its_own_page(parent, capsys):
    hooks = _hooks(parent)
    hooks.after_pipeline_run()
    link = capsys.readouterr().out.splitlines()[-1]
    assert link == (f"http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs/"
                    f"{parent.info.run_id}?workflowType=machine_learning")


def test_each_model_run_has_its_figures_colour_and_the_study_run_a_grey_of_its_own(parent):
    import mlflow

    from bnstudy.palette import STUDY_RUN_COLOR, model_color
    from bnstudy.reporting.plotting import model_color as figure_color

    client = mlflow.MlflowClient()
    runs = {name: open_model_run(name, {})[1] for name in ("baseline", "candidate", "my_model")}
    RunRecordHooks().before_pipeline_run({"run_id": "s"}, catalog=None)
    colours = {name: client.get_run(run).data.tags["mlflow.runColor"] for name, run in runs.items()}
    assert colours == {"baseline": "#1f77b4", "candidate": "#d62728", "my_model": model_color("my_model")}
    assert all(figure_color(name) == colour for name, colour in colours.items())
    study = client.get_run(parent.info.run_id).data.tags["mlflow.runColor"]
    assert study == STUDY_RUN_COLOR and study not in colours.values()
