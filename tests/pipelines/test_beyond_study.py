"""End to end: `beyond_study` after the session's `full_study` (test environment). Its models
train, curvature is measured for every model, and its report is the general one over its
roster (Setup, the headline comparison, a section per further comparison) with the sections of
the questions only it asks: the noise question, the Lp table and the curvature thresholds."""

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

from bnstudy.analysis.study import comparison_key, model_word
from bnstudy.roster import Roster, roster_from_parameters
from tests.conftest import SHARED_JPEG_ARCHIVE, STUDY_SOURCE
from tests.pipelines.test_full_study import FIGURES, latest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_JPEG_ARCHIVE.exists(),
                       reason="needs ../shared/datasets/cifar10-jpeg.tar.gz"),
]
STUDY = "beyond_study"


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
                          STUDY], cwd=project, env=env, capture_output=True,
                         text=True, timeout=1800, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return project


@pytest.fixture(scope="module")
def roster(beyond) -> Roster:
    """The roster the run was built from (conf/test's beyond_study: three of its five models)."""
    from kedro.config import OmegaConfigLoader

    from bnstudy.config_loader import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(beyond / "conf"), env="test", **CONFIG_LOADER_ARGS)
    return roster_from_parameters(loader["parameters"])


def _json(project: Path, relative: str) -> dict:
    return json.loads(latest(project, relative).read_text())


def test_every_model_has_a_curvature_trace_and_its_own_normalization(beyond, roster):
    for model in roster.compared_in(STUDY):
        trace = pd.read_parquet(latest(beyond, f"data/07_model_output/{model}/curvature_trace.parquet"))
        # curvature_every 10 of 20 steps: before steps 0 and 10, for each of the 3 seeds
        assert trace.groupby("seed")["step"].apply(list).to_dict() == {
            1: [0, 10], 2: [0, 10], 1337: [0, 10]}
        assert np.isfinite(trace["lambda_max"]).all() and np.isfinite(trace["batch_sharpness"]).all()
        assert (trace["power_iterations"] >= 2).all()
        # Hutchinson's trace with 4 Rademacher vectors (conf/test): an estimate and its error
        assert np.isfinite(trace["hessian_trace"]).all() and (trace["hessian_trace_se"] > 0).all()
        record = _json(beyond, f"data/07_model_output/{model}/run_record.json")
        assert record["model_config"]["normalization"] == roster.normalization(model)
    assert _json(beyond, f"data/08_reporting/summaries/{STUDY}.normalizations.json") == {
        model: roster.normalization(model) for model in roster.compared_in(STUDY)}


def test_the_general_analysis_compares_every_pair_of_the_roster_and_draws_every_model(beyond, roster):
    study = _json(beyond, f"data/08_reporting/summaries/{STUDY}.model_comparisons.json")
    keys = [comparison_key(c.reference, c.treatment) for c in roster.studies[STUDY].comparisons]
    assert list(study["comparisons"]) == keys and study["headline"] == keys[0]
    for name in ("training_curves", "loss_landscape", "activation_shift", "init_distance"):
        table = pd.read_parquet(latest(beyond, f"data/08_reporting/tables/{STUDY}.{name}.parquet"))
        assert set(table["model"]) == set(roster.compared_in(STUDY)), name
    folder = latest(beyond, f"data/08_reporting/{STUDY}/report.md").parent / "figures"
    for figure in (*FIGURES, "noisy_shift", "curvature"):
        assert (folder / f"{figure}.png").read_bytes()[:4] == b"\x89PNG", figure


def test_report_is_the_general_one_with_the_questions_sections(beyond, roster):
    study = _json(beyond, f"data/08_reporting/summaries/{STUDY}.model_comparisons.json")
    noise = _json(beyond, f"data/08_reporting/summaries/{STUDY}.noise_question.json")
    curvature = _json(beyond, f"data/08_reporting/summaries/{STUDY}.curvature.json")
    markdown = latest(beyond, f"data/08_reporting/{STUDY}/report.md").read_text()
    html = latest(beyond, f"data/08_reporting/{STUDY}/report.html").read_text()

    # the general report: Setup with every model, the headline pair, each further comparison
    titles = ["## Setup (provenance)", "## Fidelity", "## Noisy BatchNorm", "## Lp normalizations",
              "## Curvature against the stability thresholds", "## Conclusions", "## Training",
              "## Further comparisons"]
    assert [markdown.index(t) for t in titles] == sorted(markdown.index(t) for t in titles)
    setup = markdown.split("## Setup (provenance)", 1)[1].split("\n## ", 1)[0]
    assert "; ".join(f"{m}: {roster.normalization(m)}" for m in roster.compared_in(STUDY)) in setup
    assert "Each line: BN (candidate) against no BN (baseline)" in markdown
    further = markdown.split("## Further comparisons", 1)[1]
    for key, summary in list(study["comparisons"].items())[1:]:
        reference, treatment = summary["reference"], summary["treatment"]
        assert (f"### {model_word(treatment)} against {model_word(reference)} "
                f"({treatment} vs {reference})") in further, key

    # the noise question, read from the comparisons of its kinds (and noise without BN)
    assert noise["asked"] and noise["comparisons"]["noisy_vs_none"] == "candidate_noisy_vs_baseline"
    assert noise["advantage"] in ("intact", "reduced", "lost", "not shown", "untested")
    assert noise["statement"] in markdown
    noisy = [m for m in roster.compared_in(STUDY) if roster.normalization(m) == "noisy"]
    if noisy:
        assert noise["without_bn"]["model"] == noisy[0] and noise["without_bn"]["statement"] in markdown
    # the Lp table: BN and each Lp normalization against no BN, as the comparisons word them
    lp = markdown.split("**Normalizations against no BN**", 1)[1].split("\n\n", 2)[1]
    lp_models = [m for m in roster.compared_in(STUDY) if roster.normalization(m) in ("l1", "l2", "linf")]
    assert lp_models  # the test environment's beyond_study has L1
    for model in ("candidate", *lp_models):
        accuracy = study["comparisons"][f"{model}_vs_baseline"]["measures"]["test_accuracy"]["overall"]
        assert f"{model_word(model)} ({model})" in lp and accuracy["text"] in lp
    # thresholds at lr 0.035 and momentum 0.9, and a statement per model and quantity
    assert [round(v, 1) for v in curvature["thresholds"].values()] == [57.1, 5.7, 108.6]
    assert "2/eta = 57.1, 2(1-beta)/eta = 5.7, 2(1+beta)/eta = 108.6" in markdown
    models = roster.compared_in(STUDY)
    assert len(curvature["statements"]) == 3 * len(models) and curvature["trace_measured"]
    assert sum("Hessian trace (Hutchinson)" in s for s in curvature["statements"]) == len(models)
    for statement in curvature["statements"]:
        assert statement in markdown
    for figure in ("noisy_shift", "curvature"):
        assert f"](figures/{figure}.png)" in markdown
    assert html.count("data:image/png;base64,") == len(FIGURES) + 2


def test_mlflow_variant_runs_log_curvature_and_the_study_run_every_comparison(beyond, roster):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{beyond / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bnstudy")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {}
    for run in runs:
        by_name.setdefault(run.info.run_name, []).append(run)
    for model in roster.trained_by(STUDY):
        (run,) = by_name[model]
        history = client.get_metric_history(run.info.run_id, "curvature/lambda_max")
        assert [m.step for m in history] == [0, 10]
        trace = client.get_metric_history(run.info.run_id, "curvature/hessian_trace")
        assert [m.step for m in trace] == [0, 10]
        parent = client.get_run(run.data.tags["mlflow.parentRunId"])
        metrics = parent.data.metrics
        assert f"{STUDY}.candidate_noisy_vs_baseline/test_accuracy.difference" in metrics
        assert f"{STUDY}.test_accuracy.difference" in metrics  # the headline's, as full_study's
        assert f"{STUDY}.{model}/lambda_max_late" in metrics  # the curvature question's
