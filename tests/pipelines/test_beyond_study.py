"""End to end: `beyond_study` after the session's `full_study` (test environment): the four
variants train, curvature is measured for all six models, and the report states the noise
answer, the Lp table and the curvature-threshold statements from its summaries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis.beyond import VARIANTS
from tests.conftest import SHARED_JPEG_ARCHIVE, STUDY_SOURCE
from tests.pipelines.test_full_study import latest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_JPEG_ARCHIVE.exists(),
                       reason="needs ../shared/datasets/cifar10-jpeg.tar.gz"),
]
MODELS = ("baseline", "candidate", *VARIANTS)


@pytest.fixture(scope="module")
def beyond(finished_study, tmp_path_factory) -> Path:
    """A copy of the finished study (data, MLflow store) with `beyond_study` run in it by
    `kedro run`, as a user runs it, in a process of its own (the test process has compiled
    hundreds of programs by then); the session's own study stays as the other tests expect."""
    project = tmp_path_factory.mktemp("beyond") / "project"
    shutil.copytree(finished_study, project, ignore=shutil.ignore_patterns("build"))
    source = STUDY_SOURCE["data_ingestion"]
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg",
           "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
           "BNSTUDY_CIFAR10_SOURCE": source["source"], "BNSTUDY_CIFAR10_PATH": source["path"]}
    run = subprocess.run([sys.executable, "-m", "kedro", "run", "--env", "test", "--pipelines",
                          "beyond_study"], cwd=project, env=env, capture_output=True,
                         text=True, timeout=1800, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return project


def _json(project: Path, relative: str) -> dict:
    return json.loads(latest(project, relative).read_text())


def test_every_model_has_a_curvature_trace_and_each_variant_its_own_normalization(beyond):
    for model in MODELS:
        trace = pd.read_parquet(latest(beyond, f"data/07_model_output/{model}/curvature_trace.parquet"))
        # curvature_every 10 of 20 steps: before steps 0 and 10, for each of the 3 seeds
        assert trace.groupby("seed")["step"].apply(list).to_dict() == {
            1: [0, 10], 2: [0, 10], 1337: [0, 10]}
        assert np.isfinite(trace["lambda_max"]).all() and np.isfinite(trace["batch_sharpness"]).all()
        assert (trace["power_iterations"] >= 2).all()
        # Hutchinson's trace with 4 Rademacher vectors (conf/test): an estimate and its error
        assert np.isfinite(trace["hessian_trace"]).all() and (trace["hessian_trace_se"] > 0).all()
    normalizations = {model: _json(beyond, f"data/07_model_output/{model}/run_record.json")
                      ["model_config"]["normalization"] for model in VARIANTS}
    assert normalizations == {"candidate_noisy": "batch_noisy", "candidate_l1": "l1",
                              "candidate_l2": "l2", "candidate_linf": "linf"}


def test_report_states_the_noise_answer_the_lp_table_and_the_threshold_statements(beyond):
    comparisons = _json(beyond, "data/08_reporting/summaries/variant_comparisons.json")
    curvature = _json(beyond, "data/08_reporting/summaries/curvature.json")
    markdown = latest(beyond, "data/08_reporting/beyond_report.md").read_text()
    html = latest(beyond, "data/08_reporting/beyond_report.html").read_text()
    assert set(comparisons["vs_baseline"]) == set(VARIANTS) == set(comparisons["vs_bn"])
    noise = comparisons["noise"]
    assert noise["advantage"] in ("intact", "reduced", "lost", "not shown", "untested")
    assert noise["statement"] in markdown
    for section in ("## Noisy BatchNorm", "## Lp normalizations", "## Curvature against the stability thresholds"):
        assert section in markdown
    for row in comparisons["lp"]:
        assert row["name"] in markdown and row["test_accuracy"] in markdown
    # thresholds at lr 0.035 and momentum 0.9, and a statement per model and quantity
    assert [round(v, 1) for v in curvature["thresholds"].values()] == [57.1, 5.7, 108.6]
    assert "2/eta = 57.1, 2(1-beta)/eta = 5.7, 2(1+beta)/eta = 108.6" in markdown
    # per model: the top eigenvalue, the batch sharpness and the Hessian trace
    assert len(curvature["statements"]) == 3 * len(MODELS) and curvature["trace_measured"]
    assert sum("Hessian trace (Hutchinson)" in s for s in curvature["statements"]) == len(MODELS)
    for statement in curvature["statements"]:
        assert statement in markdown
    for figure in ("noisy_shift", "normalizations", "curvature"):
        assert latest(beyond, f"data/08_reporting/figures/{figure}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"figures/{figure}.png" in markdown
    assert "data:image/png;base64," in html


def test_mlflow_variant_runs_log_curvature(beyond):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{beyond / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnstudy")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {}
    for run in runs:
        by_name.setdefault(run.info.run_name, []).append(run)
    for variant in VARIANTS:
        (run,) = by_name[variant]
        history = client.get_metric_history(run.info.run_id, "curvature/lambda_max")
        assert [m.step for m in history] == [0, 10]
        trace = client.get_metric_history(run.info.run_id, "curvature/hessian_trace")
        assert [m.step for m in trace] == [0, 10]
        parent = client.get_run(run.data.tags["mlflow.parentRunId"])
        assert "beyond.candidate_noisy/test_accuracy_vs_baseline" in parent.data.metrics
