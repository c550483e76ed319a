"""End to end: `full_study` in the test environment, MLflow runs, report numbers, versions, viz."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnstudy.reporting.conclusions import pct
from tests.conftest import SHARED_JPEG_ARCHIVE, enter_project, run_session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_JPEG_ARCHIVE.exists(), reason="needs ../shared/datasets/cifar10-jpeg.tar.gz"),
]
FIGURES = ("training_curves", "activation_histograms", "activation_final_snapshot", "activation_shift",
           "gradient_ics", "loss_landscape", "gradient_predictiveness", "gradient_difference",
           "beta_smoothness", "init_distance")


def latest(project: Path, relative: str) -> Path:
    folder = project / relative
    return sorted(folder.iterdir())[-1] / folder.name


def all_versions(project: Path, relative: str) -> list[Path]:
    folder = project / relative
    return sorted(v / folder.name for v in folder.iterdir())


@pytest.fixture
def study(finished_study, monkeypatch) -> Path:
    """The session's finished test-environment study (tests/conftest.py), entered."""
    enter_project(finished_study, monkeypatch)
    return finished_study


def test_outputs_figures_and_report_are_written(study):
    for name in FIGURES:
        assert latest(study, f"data/08_reporting/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert latest(study, "data/08_reporting/figures/activation_animation.gif").read_bytes()[:4] == b"GIF8"
    markdown = latest(study, "data/08_reporting/report.md").read_text()
    html = latest(study, "data/08_reporting/report.html").read_text()
    assert markdown.startswith("# How does batch normalization help optimization?")
    assert "\n## Conclusions\n" in markdown and ">Conclusions</h2>" in html  # the h2 carries its anchor id
    for model in ("baseline", "candidate"):
        trace = pd.read_parquet(latest(study, f"data/07_model_output/{model}/training_trace.parquet"))
        assert trace.groupby("seed").size().to_dict() == {1: 20, 2: 20, 1337: 20}  # 3 seeds x 20 steps
        assert np.isfinite(trace["train_loss"]).all()


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
    # named and tagged so that runs of different studies tell apart (issue: MLflow that compares well)
    assert re.fullmatch(r"test-\d{8}-\d{6}", parent.info.run_name), parent.info.run_name
    assert {"bnstudy.env": "test", "bnstudy.data_source": "image_folder",
            "bnstudy.seeds": "1337,1,2"}.items() <= parent.data.tags.items()
    assert parent.data.params["models.candidate.normalization"] == "batch"  # the roster entry
    assert parent.data.params["training.learning_rate"] == "0.035"  # the shared settings
    assert "study.baseline.final_test_accuracy" in parent.data.metrics
    assert "study.paper/loss_range.ratio" in parent.data.metrics  # named for what it is
    # the run's description: the study's summary box, in its own block
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("<!-- bnstudy:full_study -->") and "Summary: each claim" in note
    assert "Smoother loss landscape with BN" in note
    baseline, candidate = sorted(children, key=lambda r: r.info.run_name)
    assert set(baseline.data.metrics) == set(candidate.data.metrics)
    assert set(baseline.data.params) == set(candidate.data.params)
    assert {"paper/loss_range", "blog/ics_l2/conv_1", "train_loss", "test_accuracy",
            "progress/train_loss"} <= set(baseline.data.metrics)
    # the study run's param names: the shared sections as they are, the roster entry's under models.<name>
    assert baseline.data.params["normalization"] == "none"
    assert {"models.baseline.normalization" if key == "normalization" else key
            for key in baseline.data.params} <= set(parent.data.params)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    history = client.get_metric_history(candidate.info.run_id, "train_loss")
    assert len(history) == 20  # metric_stride 1 in the test environment
    for child in children:  # created when training started, dated live, ended after it
        record = json.loads(latest(study, f"data/07_model_output/{child.info.run_name}/run_record.json").read_text())
        stamps = [m.timestamp for m in client.get_metric_history(child.info.run_id, "train_loss")]
        assert len(set(stamps)) > 1 and stamps == sorted(stamps)
        assert (child.info.end_time - child.info.start_time) / 1000 >= record["wall_time_s"]
        assert child.info.start_time <= min(stamps) and max(stamps) <= child.info.end_time
    artifacts = {a.path for a in client.list_artifacts(candidate.info.run_id)}
    assert {"initial_state.npz", "final_state.npz"} <= artifacts
    study_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/loss_landscape.png" in study_artifacts


def _json(project: Path, relative: str) -> dict:
    return json.loads(latest(project, relative).read_text())


def test_report_numbers_equal_those_of_the_comparisons_and_the_traces(study):
    markdown = latest(study, "data/08_reporting/report.md").read_text()
    every = _json(study, "data/08_reporting/summaries/model_comparisons.json")
    assert every["headline"] == "candidate_vs_baseline" and list(every["comparisons"]) == [every["headline"]]
    comparisons = every["comparisons"]["candidate_vs_baseline"]
    assert (comparisons["reference"], comparisons["treatment"]) == ("baseline", "candidate")
    assert comparisons["seeds"] == [1, 2, 1337]
    for name, measure in comparisons["measures"].items():  # every conclusion, as the analysis worded it
        assert f"(`{name}`): {measure['overall']['text']}" in markdown
        for phase in ("early", "middle", "late"):
            assert measure.get("phases", {}).get(phase, {"text": ""})["text"] in markdown
    evals = {m: pd.read_parquet(latest(study, f"data/07_model_output/{m}/eval_trace.parquet"))
             for m in ("baseline", "candidate")}
    for seed in (1337, 1, 2):  # final test accuracy per seed, from the traces
        final = [pct(e[e.seed == seed].sort_values("step")["test_accuracy"].iloc[-1]) for e in evals.values()]
        assert f"| {seed} | {final[0]} | {final[1]} |" in markdown
    summary = json.loads(latest(study, "data/08_reporting/summaries/init_distance.json").read_text())
    summary = summary["comparisons"]["candidate_vs_baseline"]  # a measure's summary: one per comparison
    init = pd.read_parquet(latest(study, "data/07_model_output/candidate/init_distance.parquet"))
    final = init[init.step == init.step.max()].groupby("layer")["abs"].mean()
    for layer, value in final.items():
        assert summary["layers"][layer]["candidate_abs"] == pytest.approx(value, rel=1e-12)


def test_report_has_the_fidelity_table_intervals_and_every_provenance_field(study):
    markdown = latest(study, "data/08_reporting/report.md").read_text()
    fidelity = _json(study, "data/08_reporting/summaries/fidelity.json")["rows"]
    provenance = _json(study, "data/02_intermediate/cifar10_provenance.json")
    record = _json(study, "data/07_model_output/candidate/run_record.json")

    table = markdown.split("**Fidelity**\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[0] == ("| claim | paper | blog | protocol | this run (value, CI, significant?) "
                        "| p: raw / Holm (6 claims) | smallest detectable | agrees? |")
    # Holm's adjustment over the table's claims: never below the raw p, and the row shows both
    for row, line in zip(fidelity, table[2:], strict=True):
        if row["p_holm"] is not None and math.isfinite(row["p_holm"]):
            assert row["p_holm"] >= row["p_value"] - 1e-15, row
        assert "untested" in line or " / " in line.split(" | ")[5], line
    # conf/test trains with the blog's optimizer and measures both protocols
    assert "| paper protocol, blog optimizer (SGD m=0.9, lr 0.035) |" in table[2]
    assert len(table) == 2 + len(fidelity) == 8
    assert re.search(r"\[-?[\d.e-]+, -?[\d.e-]+\]", markdown), "no 95% interval anywhere in the report"

    setup = markdown.split("## Setup (provenance)", 1)[1].split("\n## ", 1)[0]
    runtime, versions = record["runtime"], record["runtime"]["versions"]
    baseline_wall = _json(study, "data/07_model_output/baseline/run_record.json")["wall_time_s"]
    device = f"CPU: {runtime['cpu']}" if runtime["backend"] == "cpu" else runtime["device_kind"]
    expected = {
        "data source": f"image_folder: {provenance['location']}", "checksum": provenance["checksum"],
        "copy": "JPEG copy", "train subset": "320 train images", "test subset": "100 test images",
        "environment": "test (conf/test)", "conv widths": "[4, 4, 8, 8]", "dense widths": "[8, 8]",
        "steps": "20 of SGD", "seeds": "1337, 1, 2", "stride": "blog: every step", "stride (paper)": "paper: every step",
        "matmul precision": "| matmul precision | highest |", "jax": f"jax {versions['jax']}",
        "flax": f"flax {versions['flax']}", "kedro": f"kedro {versions['kedro']}",
        "device": device, "wall time": f"baseline {baseline_wall:.1f} s",
    }
    missing = {field: value for field, value in expected.items() if value not in setup}
    assert not missing, f"the report's Setup lacks {missing}:\n{setup}"


def test_markdown_report_links_figures_that_sit_next_to_it(study):
    report = latest(study, "data/08_reporting/report.md")
    markdown = report.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)

    assert "data:image" not in markdown
    assert sorted(links) == sorted([f"figures/{name}.png" for name in FIGURES] + ["figures/activation_animation.gif"])
    for link in links:
        assert (report.parent / link).read_bytes() == latest(study, f"data/08_reporting/{link}").read_bytes()
    assert markdown.count("*Figure ") == len(links)  # every figure has its caption
    assert "data:image/png;base64," in latest(study, "data/08_reporting/report.html").read_text()


def test_second_run_adds_versions_and_keeps_the_first(study):
    first_report = all_versions(study, "data/08_reporting/report.md")
    first_bytes = first_report[0].read_bytes()
    first_trace = all_versions(study, "data/07_model_output/baseline/training_trace.parquet")

    run_session(study, "reporting", env="test")

    reports = all_versions(study, "data/08_reporting/report.md")
    assert len(reports) == len(first_report) + 1
    assert reports[0].read_bytes() == first_bytes
    assert all_versions(study, "data/07_model_output/baseline/training_trace.parquet") == first_trace


def test_kedro_viz_build_lists_every_node_and_dataset_with_its_layer(viz_build):
    from kedro.framework.project import configure_project, pipelines

    configure_project("bnstudy")
    graph = json.loads((viz_build / "api" / "main").read_text())
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


def test_kedro_viz_metadata_is_real_sizes_and_previews(viz_build, study):
    """Each versioned dataset's size is that of the file of its newest version (not of the
    folder of versions: 4,096 bytes), and figures, arrays and tables preview."""
    stats = json.loads((study / ".viz" / "stats.json").read_text())
    trace = latest(study, "data/07_model_output/candidate/training_trace.parquet")
    assert stats["candidate.training_trace"]["file_size"] == trace.stat().st_size
    assert stats["candidate.training_trace"]["rows"] == 60  # kedro-viz's own rows stay
    figure = latest(study, "data/08_reporting/figures/loss_landscape.png")
    assert stats["loss_landscape_figure"]["file_size"] == figure.stat().st_size != 4096
    graph = json.loads((viz_build / "api" / "main").read_text())
    ids = {n["name"]: n["id"] for n in graph["nodes"]}
    expected = {"loss_landscape_figure": "ImagePreview", "activation_animation_figure": "ImagePreview",
                "study_report_html": "HTMLPreview", "study_report_md": "HTMLPreview",
                "candidate.activation_histograms": "JSONPreview", "candidate.training_trace": "TablePreview"}
    for name, kind in expected.items():
        node = json.loads((viz_build / "api" / "nodes" / ids[name]).read_text())
        assert node["preview_type"] == kind and node["preview"], name
    figure_node = json.loads((viz_build / "api" / "nodes" / ids["loss_landscape_figure"]).read_text())
    assert base64.b64decode(figure_node["preview"]) == figure.read_bytes()
