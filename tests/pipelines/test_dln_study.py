"""End to end: `kedro run --env test --pipelines dln_study`, as a user runs it, in a process
of its own. The deep linear network (6 layers in the test environment) trains by full-batch
gradient descent on the synthetic regression at both learning rates with 3 seeds, every step
measured; the analysis reads it as a regression and the report carries its Setup, the
paper's DLN claims and lambda_max against 2/eta at each rate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bnstudy.data.synthetic import linear_regression
from tests.pipelines.test_full_study import latest
from tests.reliability.cli_helpers import kedro_env, new_project, run_kedro

pytestmark = pytest.mark.slow
MODELS = ("dln_baseline", "dln_candidate")
RATES = (1e-6, 1e-7)


@pytest.fixture(scope="module")
def dln(tmp_path_factory):
    project = new_project(tmp_path_factory.mktemp("dln"))
    result = run_kedro(project, ["run", "--env", "test", "--pipelines", "dln_study"],
                       kedro_env(project), timeout_s=1200)
    assert result.returncode == 0, result.terminal[-4000:]
    return project


def _table(project, model, name):
    return pd.read_parquet(latest(project, f"data/07_model_output/{model}/{name}.parquet"))


def test_the_data_is_the_seeded_linear_regression(dln):
    train = np.load(latest(dln, "data/05_model_input/linear_input_train.npz"))
    expected = linear_regression(seed=0, num_train=100, num_test=50, dimension=10)
    np.testing.assert_array_equal(train["samples"], expected.x_train)
    np.testing.assert_array_equal(train["targets"], expected.y_train)
    provenance = json.loads(latest(dln, "data/05_model_input/linear_data_provenance.json")
                            .read_text())
    assert provenance["seed"] == 0 and provenance["num_train"] == 100


def test_every_run_trains_full_batch_at_both_rates_and_measures_every_step(dln):
    for model in MODELS:
        record = json.loads(latest(dln, f"data/07_model_output/{model}/run_record.json")
                            .read_text())
        assert record["model_config"]["family"] == "dln" and record["model_config"]["depth"] == 6
        assert record["train_config"]["batch_size"] == record["num_train"] == 100
        training = _table(dln, model, "training_trace")
        runs = training.groupby(["seed", "learning_rate"])["step"].apply(list).to_dict()
        assert runs == {(seed, rate): list(range(20)) for seed in (0, 1, 2) for rate in RATES}
        # the l2 loss falls under gradient descent at 1e-6 in every seed
        first = training[training["step"] == 0].set_index(["seed", "learning_rate"])["train_loss"]
        last = training[training["step"] == 19].set_index(["seed", "learning_rate"])["train_loss"]
        assert (last.xs(1e-6, level="learning_rate") < first.xs(1e-6, level="learning_rate")).all()
        evals = _table(dln, model, "eval_trace")
        assert evals["test_accuracy"].isna().all() and np.isfinite(evals["test_loss"]).all()
        ics = _table(dln, model, "ics_trace")
        whole = ics[ics["param"] == "all"]
        assert set(whole["layer"]) == {f"linear_{i}" for i in range(6)}
        assert whole.groupby(["seed", "learning_rate"])["step"].nunique().eq(20).all()
        # train mode: nothing precedes the first layer, so its ICS is exactly 0
        assert (whole[whole["layer"] == "linear_0"]["ics_l2"] == 0.0).all()
        assert (whole[whole["layer"] != "linear_0"]["ics_l2"] > 0).all()
        probes = _table(dln, model, "probe_trace")
        s_values = np.sort(probes["s"].unique())
        assert len(s_values) == 20
        np.testing.assert_allclose(s_values[[0, -1]], [0.01, 30.0], rtol=1e-6)
        curvature = _table(dln, model, "curvature_trace")
        assert sorted(curvature["step"].unique()) == [0, 10]
        assert np.isfinite(curvature["lambda_max"]).all()


def test_the_report_reads_a_regression_with_the_papers_dln_claims(dln):
    report = latest(dln, "data/08_reporting/dln_study/report.md").read_text()
    assert report.startswith("# How does batch normalization help optimization? The deep linear")
    for text in ("| data seed | 0 |", "x, y [100, 10] train; [50, 10] test",
                 "deep linear network: 6 linear layers of 10 x 10",
                 "Gradient ICS is not reduced by BN (DLN)", "not reduced (Fig 3b)",
                 "the paper's DLN optimizer: full-batch gradient descent, lr 1e-06",
                 "p: raw / Holm (4 claims)",
                 "## Curvature against the stability thresholds, lr 1e-06",
                 "## Curvature against the stability thresholds, lr 1e-07",
                 "a regression has no chance level to stall at", "### Final test loss per seed"):
        assert text in report, text
    assert "accuracy" not in report.split("## Training")[0].lower()  # above the figures
    summary = json.loads(latest(dln, "data/08_reporting/summaries/dln_study.model_comparisons.json")
                         .read_text())
    assert set(summary["comparisons"]) == {f"dln_candidate_vs_dln_baseline@lr={rate!r}"
                                           for rate in RATES}
    assert all(c["task"] == "regression" for c in summary["comparisons"].values())
    curvature = json.loads(latest(dln, "data/08_reporting/summaries/dln_study.curvature.json")
                           .read_text())
    assert {float(rate) for rate in curvature["by_learning_rate"]} == set(RATES)
    for rate, entry in curvature["by_learning_rate"].items():
        assert entry["thresholds"]["2/eta"] == pytest.approx(2 / float(rate))
