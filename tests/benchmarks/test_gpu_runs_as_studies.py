"""A run of benchmarks/paper_run.py (the GPU runner, here at a tiny size on CPU) becomes a study:
``kedro run --params imported_runs.path=<out>`` reads its saved results instead of training and
makes the traces, MLflow runs, analysis and report from them (issue 23, point 6)."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pandas as pd
import pytest

from bnstudy.analysis.traces import model_traces
from bnstudy.run_files import load_results
from tests.conftest import PROJECT_ROOT, SHARED_JPEG_ARCHIVE
from tests.golden.make_golden import newest
from tests.reliability.cli_helpers import kedro_env, new_project, run_kedro, tracking_uri

pytestmark = pytest.mark.slow

# The test environment's data, ingested whole: paper_run.py normalizes with the statistics of
# every training image (the test environment's subset_only would take the subset's).
DATA = ["--params", "data_ingestion.subset_only=false"]


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "results"
    env = kedro_env(PROJECT_ROOT)  # the offline data; no MLflow, no Kedro used
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "paper_run.py"), "--data",
         str(SHARED_JPEG_ARCHIVE), "--env", "test", "--train-size", "320", "--test-size", "100",
         "--out", str(out)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
        timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_the_runners_results_become_the_study(gpu_run, tmp_path):
    project = new_project(tmp_path)
    result = run_kedro(project, ["run", "--env", "test", "--pipelines", "full_study", *DATA[:1],
                                 f"{DATA[1]},imported_runs.path={gpu_run}"],
                       kedro_env(project), timeout_s=900)
    assert result.returncode == 0, result.terminal[-4000:]
    assert "step 20/20" not in result.terminal  # nothing trained here
    for model in ("baseline", "candidate"):
        saved, about = load_results(gpu_run / model)
        for name, table in model_traces(saved).items():
            mine = pd.read_parquet(newest(project / "data/07_model_output" / model / f"{name}.parquet"))
            pd.testing.assert_frame_equal(mine, table, check_exact=True, obj=f"{model}/{name}")
    report = newest(project / "data/08_reporting/report.md").read_text()
    assert "## Conclusions" in report or "Conclusions" in report
    mlflow.set_tracking_uri(tracking_uri(project))
    runs = mlflow.search_runs(experiment_names=["bnstudy"], output_format="list")
    children = sorted(r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert children == ["baseline", "candidate"]
    by_name = {r.info.run_name: r for r in runs}
    # the wall time the GPU runner measured, not the import's
    assert by_name["candidate"].data.metrics["run/wall_time_s"] == pytest.approx(
        load_results(gpu_run / "candidate")[0][0].wall_time_s)


def test_another_environment_is_refused_naming_the_difference(gpu_run, tmp_path):
    project = new_project(tmp_path)
    result = run_kedro(project, ["run", "--env", "test", "--pipelines", "full_study", *DATA[:1],
                                 f"{DATA[1]},imported_runs.path={gpu_run},training.momentum=0.5"],
                       kedro_env(project), timeout_s=900)
    assert result.returncode != 0
    assert "no results under" in result.terminal and "train_config.momentum is 0.5 here, 0.9 there" in result.terminal
