"""Guarantee 2 end to end: a study whose baseline diverges (lr = 1000) completes; its traces,
MLflow runs and report mark it; no figure node crashes; no statistic averages it in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import (
    SHARED_JPEG_ARCHIVE,
    STUDY_SOURCE,
    make_project_copy,
    run_session,
    with_checkpoints_of,
)
from tests.pipelines.test_full_study import FIGURES, latest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_JPEG_ARCHIVE.exists(), reason="needs ../shared/datasets/cifar10-jpeg.tar.gz"),
]
DIVERGING = {**STUDY_SOURCE, "models": {"baseline": {"training": {"learning_rate": 1000.0}}}}


@pytest.fixture(scope="module")
def diverged(tmp_path_factory, request, finished_study) -> Path:
    """The test study with the baseline at lr 1000; the candidate, unchanged, resumes from the
    session's finished study's checkpoint (the same configuration: its outputs bit for bit)."""
    monkeypatch = pytest.MonkeyPatch()
    request.addfinalizer(monkeypatch.undo)
    project = make_project_copy(tmp_path_factory.mktemp("diverged"), monkeypatch)
    with_checkpoints_of(project, finished_study)
    run_session(project, "full_study", env="test", params=DIVERGING)  # completes: no exception
    return project


def _trace(project: Path, model: str, name: str) -> pd.DataFrame:
    return pd.read_parquet(latest(project, f"data/07_model_output/{model}/{name}.parquet"))


def _diverged_seeds(project: Path) -> dict[int, int]:
    record = json.loads(latest(project, "data/07_model_output/baseline/run_record.json").read_text())
    return {int(s): e["diverged_at"] for s, e in record["per_seed"].items() if e["diverged_at"] is not None}


def test_the_traces_mark_the_diverged_seeds_and_only_the_baselines(diverged):
    baseline = _trace(diverged, "baseline", "training_trace")
    candidate = _trace(diverged, "candidate", "training_trace")
    bad = _diverged_seeds(diverged)
    assert len(bad) >= 2, bad  # lr 1000 (seed 1's ReLUs may all die instead: finite, flat)
    steps = baseline.groupby("seed")["diverged_at"].first()
    assert set(steps.index) == {1, 2, 1337}
    assert {seed: step for seed, step in steps.items() if step >= 0} == bad
    for seed, step in bad.items():
        rows = baseline[baseline["seed"] == seed]
        assert rows["diverged"].tolist() == (rows["step"] >= step).tolist()
        assert rows.loc[rows["step"] > step, "train_loss"].isna().all()
    assert not baseline.loc[~baseline["seed"].isin(bad), "diverged"].any()
    assert (candidate["diverged_at"] == -1).all() and not candidate["diverged"].any()
    assert np.isfinite(candidate["train_loss"]).all()  # the override reached the baseline only
    record = json.loads(latest(diverged, "data/07_model_output/baseline/run_record.json").read_text())
    assert record["train_config"]["learning_rate"] == 1000.0
    for name in ("ics_trace", "smoothness_trace", "activation_stats", "init_distance", "curvature_trace"):
        assert {"diverged", "diverged_at"} <= set(_trace(diverged, "baseline", name).columns), name


def test_the_curvature_of_a_diverged_seed_is_missing_after_its_divergence(diverged):
    """curvature_every 10 in the test env: a measurement before step 10 of a seed that
    diverged earlier is NaN, with no iteration count and no convergence flag."""
    curvature = _trace(diverged, "baseline", "curvature_trace")
    for seed, step in _diverged_seeds(diverged).items():
        rows = curvature[curvature["seed"] == seed]
        after = rows["step"] > step
        assert rows.loc[after, "lambda_max"].isna().all()
        assert rows.loc[after, "power_iterations"].isna().all() and rows.loc[after, "converged"].isna().all()
        assert rows.loc[~after, "power_iterations"].notna().all()
    assert np.isfinite(_trace(diverged, "candidate", "curvature_trace")["lambda_max"]).all()


def test_mlflow_tags_the_diverged_run(diverged):
    import mlflow

    bad = _diverged_seeds(diverged)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{diverged / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnstudy")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])
            if "mlflow.parentRunId" in r.data.tags}
    baseline, candidate = runs["baseline"], runs["candidate"]
    assert baseline.data.tags["status"] == "diverged: " + ", ".join(
        f"seed {seed} at step {step}" for seed, step in bad.items())
    assert {f"seed_{seed}.diverged_at": str(step) for seed, step in bad.items()}.items() <= \
        baseline.data.tags.items()
    assert candidate.data.tags["status"] == "healthy"
    assert baseline.data.metrics["run/num_diverged_seeds"] == len(bad)
    assert all(np.isfinite(v) for v in baseline.data.metrics.values())  # no NaN logged
    for seed in bad:
        history = client.get_metric_history(baseline.info.run_id, f"seed_{seed}/train_loss")
        assert 1 <= len(history) <= bad[seed] + 1 and all(np.isfinite(m.value) for m in history)


def test_the_report_says_so_and_every_figure_is_drawn(diverged):
    bad = _diverged_seeds(diverged)
    markdown = latest(diverged, "data/08_reporting/report.md").read_text()
    every = json.loads(latest(diverged, "data/08_reporting/summaries/model_comparisons.json").read_text())
    comparisons = every["comparisons"][every["headline"]]
    assert {int(seed) for seed in comparisons["excluded_seeds"]} == set(bad)
    assert "| status | baseline: diverged at step " in markdown
    assert "candidate: healthy (no seed diverged)" in markdown
    for seed, step in bad.items():
        assert f"seed {seed}: baseline diverged at step {step}" in markdown  # the caveat
    if len(bad) == 3:
        assert "**Caveat: nothing to compare.**" in markdown and comparisons["measures"] == {}
        assert markdown.count("untested (every seed diverged)") == 6  # each Fidelity row
    else:
        assert "**Caveat: divergence.**" in markdown
        assert comparisons["seeds"] == sorted({1, 2, 1337} - set(bad))  # no statistic has them
        assert all(m["overall"]["n"] <= 3 - len(bad) for m in comparisons["measures"].values())
    assert "diverged at step" in markdown.split("### Final test accuracy per seed")[1]
    for name in FIGURES:
        assert latest(diverged, f"data/08_reporting/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
