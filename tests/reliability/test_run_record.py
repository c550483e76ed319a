"""Guarantees 2 and 8 end to end: a stale RUNNING run left by a dead process is marked KILLED
by the next `kedro run`, the new run is tagged with its process, and the run ends with one
line naming the report and the MLflow run.

The end-to-end run is the data_ingestion pipeline only (seconds, not minutes); the report
part of the last line is checked on the hook with the catalog entry of the real project.
"""

from __future__ import annotations

import logging
import re
import socket

import pytest

from bnstudy.reliability import tracking
from bnstudy.reliability.hooks import REPORT_DATASET, RunRecordHooks
from tests.conftest import PROJECT_ROOT
from tests.reliability.cli_helpers import dead_pid, kedro_env, new_project, run_kedro, tracking_uri


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """``(result, project, client, stale_run_id)`` of a run that found a stale run."""
    import mlflow

    project = new_project(tmp_path_factory.mktemp("run_record"))
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(project))
    experiment = client.create_experiment(
        "bnstudy", artifact_location=(project / "mlruns").as_uri()
    )
    stale = client.create_run(
        experiment,
        run_name="killed_earlier",
        tags={tracking.PID_TAG: str(dead_pid()), tracking.HOST_TAG: socket.gethostname()},
    ).info.run_id

    result = run_kedro(
        project, ["run", "--env", "test", "--pipelines", "data_ingestion"], kedro_env(project),
        timeout_s=300,
    )

    assert result.returncode == 0, result.terminal[-4000:]
    return result, project, client, stale


def _new_run(client, stale):
    """The one run this `kedro run` made: named ``<env>-<YYYYmmdd-HHMMSS>`` (RunRecordHooks)."""
    experiment = client.get_experiment_by_name("bnstudy")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_id != stale]
    assert len(runs) == 1, [r.info.run_name for r in runs]
    assert re.fullmatch(r"test-\d{8}-\d{6}", runs[0].info.run_name), runs[0].info.run_name
    return runs[0]


@pytest.mark.slow
def test_stale_run_of_a_dead_process_is_marked_killed_and_logged(finished_run):
    result, _project, client, stale = finished_run
    assert client.get_run(stale).info.status == "KILLED"
    assert re.search(rf"MLflow run {stale} \('killed_earlier', pid \d+\) .* marked KILLED",
                     result.stdout)


@pytest.mark.slow
def test_new_run_is_tagged_with_its_process(finished_run):
    _result, _project, client, stale = finished_run
    run = _new_run(client, stale)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.HOST_TAG] == socket.gethostname()
    assert int(run.data.tags[tracking.PID_TAG]) > 0


@pytest.mark.slow
def test_run_ends_with_a_line_naming_the_mlflow_run_and_the_bare_link(finished_run):
    result, project, client, stale = finished_run
    *_, named, link = result.stdout.strip().splitlines()
    run = _new_run(client, stale)
    run_id = run.info.run_id
    assert (f"MLflow run {run_id} (its page: start the UI with `mlflow ui --backend-store-uri "
            f"{tracking_uri(project)}`, then open the link below)") in named
    assert "Report:" not in named  # this pipeline writes no report
    # the link alone on the last line, unwrapped, in the model-training view
    assert link == (f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run_id}"
                    "?workflowType=machine_learning")


def test_last_line_names_this_runs_report_version(tmp_path, caplog, monkeypatch):
    """The report part, from the project's real catalog entry (versioned)."""
    from kedro.config import OmegaConfigLoader

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    entry = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")[
        "catalog"
    ][REPORT_DATASET]
    assert entry["versioned"] is True
    version = "2026-01-02T03.04.05.678Z"
    filepath = tmp_path / entry["filepath"]  # Kedro makes catalog paths absolute
    hooks = RunRecordHooks()
    hooks._project_path = tmp_path
    hooks.after_catalog_created({REPORT_DATASET: {**entry, "filepath": str(filepath)}}, version)
    hooks.run_id = "abc123"

    assert "Report:" not in hooks.summary()[0]  # not written yet
    report = filepath / version / "report.md"
    report.parent.mkdir(parents=True)
    report.write_text("# report")
    with caplog.at_level(logging.INFO, logger="bnstudy.reliability.hooks"):
        hooks.after_pipeline_run()

    assert caplog.messages[-1].startswith(
        f"Report: data/08_reporting/report.md/{version}/report.md | MLflow run abc123 "
        "(its page: start the UI with `mlflow ui --backend-store-uri "
    )


def test_study_run_is_named_by_env_and_time_and_tagged_with_data_and_seeds():
    from bnstudy.reliability.hooks import study_tags

    params = {"data_ingestion": {"source": "image_folder"}, "reporting": {"study_name": None},
              "training": {"seed": 1337, "seeds": [1337, 1, 2]}}
    tags = study_tags({"env": "cpu"}, params)
    assert re.fullmatch(r"cpu-\d{8}-\d{6}", tags["mlflow.runName"]), tags
    assert {k: v for k, v in tags.items() if k != "mlflow.runName"} == {
        "bnstudy.env": "cpu", "bnstudy.data_source": "image_folder", "bnstudy.seeds": "1337,1,2"}
    params["reporting"]["study_name"] = "lr-sweep-0.1"
    params["training"]["seeds"] = []
    tags = study_tags({"env": None}, params)
    assert tags["mlflow.runName"] == "lr-sweep-0.1"
    assert (tags["bnstudy.env"], tags["bnstudy.seeds"]) == ("local", "1337")
