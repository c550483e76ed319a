"""End to end: `full_study` in the test environment, MLflow runs, report numbers, versions, viz."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnstudy.reporting.report import fmt, pct
from tests.conftest import SHARED_JPEG_ARCHIVE, make_project_copy, run_session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_JPEG_ARCHIVE.exists(), reason="needs ../shared/datasets/cifar10-jpeg.tar.gz"),
]
SOURCE = {"data_ingestion": {"source": "image_folder", "path": str(SHARED_JPEG_ARCHIVE)}}
FIGURES = ("training_curves", "activation_histograms", "activation_shift", "gradient_ics", "loss_landscape",
           "gradient_predictiveness", "beta_smoothness", "init_distance")


def latest(project: Path, relative: str) -> Path:
    folder = project / relative
    return sorted(folder.iterdir())[-1] / folder.name


def all_versions(project: Path, relative: str) -> list[Path]:
    folder = project / relative
    return sorted(v / folder.name for v in folder.iterdir())


@pytest.fixture(scope="module")
def study(tmp_path_factory, request) -> Path:
    """One full_study run in the test environment, shared by the tests of this module."""
    monkeypatch = pytest.MonkeyPatch()
    request.addfinalizer(monkeypatch.undo)
    project = make_project_copy(tmp_path_factory.mktemp("study"), monkeypatch)
    run_session(project, "full_study", env="test", params=SOURCE)
    return project


def test_outputs_figures_and_report_are_written(study):
    for name in FIGURES:
        assert latest(study, f"data/08_reporting/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert latest(study, "data/08_reporting/figures/activation_animation.gif").read_bytes()[:4] == b"GIF8"
    markdown = latest(study, "data/08_reporting/report.md").read_text()
    html = latest(study, "data/08_reporting/report.html").read_text()
    assert markdown.startswith("# How does batch normalization help optimization?")
    assert "## Conclusions" in markdown and "<h2>Conclusions</h2>" in html
    for model in ("baseline", "candidate"):
        trace = pd.read_parquet(latest(study, f"data/07_model_output/{model}/training_trace.parquet"))
        assert len(trace) == 20 and np.isfinite(trace["train_loss"]).all()


def test_mlflow_has_a_study_run_with_two_nested_model_runs_with_matching_keys(study):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnstudy")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if r.info.run_id in {c.data.tags["mlflow.parentRunId"] for c in children}]

    assert sorted(c.info.run_name for c in children) == ["baseline", "candidate"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.params["candidate.normalization"] == "batch"
    assert parent.data.params["baseline.training.learning_rate"] == "0.035"
    assert "study.baseline.final_test_accuracy" in parent.data.metrics
    baseline, candidate = sorted(children, key=lambda r: r.info.run_name)
    assert set(baseline.data.metrics) == set(candidate.data.metrics)
    assert set(baseline.data.params) == set(candidate.data.params)
    assert {"paper.loss_range", "blog.ics_l2.conv_1", "train_loss", "test_accuracy"} <= set(baseline.data.metrics)
    assert baseline.data.params["model.normalization"] == "none"
    history = client.get_metric_history(candidate.info.run_id, "train_loss")
    assert len(history) == 20  # metric_stride 1 in the test environment
    artifacts = {a.path for a in client.list_artifacts(candidate.info.run_id)}
    assert {"initial_state.npz", "final_state.npz"} <= artifacts
    study_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/loss_landscape.png" in study_artifacts


def test_report_numbers_equal_those_recomputed_from_the_traces(study):
    markdown = latest(study, "data/08_reporting/report.md").read_text()
    traces = {m: pd.read_parquet(latest(study, f"data/07_model_output/{m}/smoothness_trace.parquet"))
              for m in ("baseline", "candidate")}
    for preset in ("blog", "paper"):
        ranges = {m: (t[t.preset == preset].set_index("step").eval("probe_loss_max - probe_loss_min"))
                  for m, t in traces.items()}
        base, cand = np.median(ranges["baseline"]), np.median(ranges["candidate"])
        lower = np.mean(ranges["candidate"].to_numpy() < ranges["baseline"].to_numpy())
        sentence = (f"[{preset}] Median loss range along the gradient: {fmt(cand)} with BatchNorm vs {fmt(base)} "
                    f"without (ratio {fmt(cand / base)}); the candidate's was lower at {pct(lower)} of steps.")
        assert sentence in markdown
    evals = {m: pd.read_parquet(latest(study, f"data/07_model_output/{m}/eval_trace.parquet"))
             for m in ("baseline", "candidate")}
    accuracy = pct(evals["candidate"]["test_accuracy"].iloc[-1])
    assert f"final test accuracy {accuracy} with BatchNorm" in markdown
    summary = json.loads(latest(study, "data/08_reporting/summaries/init_distance.json").read_text())
    init = pd.read_parquet(latest(study, "data/07_model_output/candidate/init_distance.parquet"))
    final = init[init.step == init.step.max()].set_index("layer")["abs"]
    for layer, value in final.items():
        assert summary["layers"][layer]["candidate_abs"] == pytest.approx(value, rel=1e-12)


def test_second_run_adds_versions_and_keeps_the_first(study):
    first_report = all_versions(study, "data/08_reporting/report.md")
    first_bytes = first_report[0].read_bytes()
    first_trace = all_versions(study, "data/07_model_output/baseline/training_trace.parquet")

    run_session(study, "reporting", env="test")

    reports = all_versions(study, "data/08_reporting/report.md")
    assert len(reports) == len(first_report) + 1
    assert reports[0].read_bytes() == first_bytes
    assert all_versions(study, "data/07_model_output/baseline/training_trace.parquet") == first_trace


def test_kedro_viz_build_lists_every_node_and_dataset_with_its_layer(study):
    from kedro.framework.project import configure_project, pipelines

    configure_project("bnstudy")
    build = subprocess.run([sys.executable, "-m", "kedro", "viz", "build"], cwd=study, capture_output=True,
                           text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    graph = json.loads((study / "build" / "api" / "main").read_text())
    full_study = pipelines["full_study"]
    shown = {n["name"]: n for n in graph["nodes"]}
    tasks = {n["full_name"] for n in graph["nodes"] if n["type"] == "task"}
    assert tasks == {node.name for node in full_study.nodes}
    datasets = {d for d in full_study.datasets() if not d.startswith("params:")}
    missing = datasets - set(shown)
    assert not missing, f"datasets missing from kedro viz: {sorted(missing)}"
    without_layer = sorted(d for d in datasets if not shown[d].get("layer"))
    assert not without_layer, f"datasets without a layer: {without_layer}"
    assert {"baseline", "candidate"} <= {n["name"] for n in graph["nodes"] if n["type"] == "modularPipeline"}
