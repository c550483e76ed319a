"""The learning-rate sweep (issue 21, Build 2): `lr_sweep_study` trains both pairs over their
grids of learning rates x seeds on the learning-rate axis, declared in the roster alone; the
general analysis compares each pair at each rate; the sweep's own question gives every run's
final numbers, each model's largest stable learning rate, the paper's Figs 1 and 3 and a
conclusion in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnstudy.parameters import validate_parameters
from bnstudy.roster import roster_from_parameters
from tests.pipelines.test_full_study import latest
from tests.pipelines.test_paper_optimizer import _parameters

STUDY = "lr_sweep_study"
PAIRS = (("baseline_sweep", "candidate_sweep"), ("baseline_sweep_blog", "candidate_sweep_blog"))


def test_the_paper_scale_grids_span_the_papers_rates():
    models = validate_parameters(_parameters("base"))
    for reference, treatment in PAIRS:
        assert models[reference].train.learning_rate_list == models[treatment].train.learning_rate_list
        assert models[reference].model.normalization == "none"
        assert models[treatment].model.normalization == "batch"
    plain = models["baseline_sweep"].train
    grid = plain.learning_rate_list
    assert plain.momentum == 0.0 and min(grid) <= 0.01 and max(grid) >= 1.0
    assert {0.01, 0.1, 0.5} <= set(grid)  # Fig 3's 0.01 and 0.1, Fig 1's 0.1 and 0.5
    steps = np.diff(np.log(sorted(grid)))
    assert steps.max() < 2 * steps.min() + 1e-9  # log-spaced within a factor of two
    blog = models["baseline_sweep_blog"].train
    assert blog.momentum == 0.9 and 0.035 in blog.learning_rate_list


def test_the_study_and_its_grids_validate_in_every_environment():
    for env in ("test", "cpu"):
        params = _parameters(env)
        roster = roster_from_parameters(params)
        models = validate_parameters(params)
        trained = tuple(m for pair in (PAIRS if env == "cpu" else PAIRS[:1]) for m in pair)
        assert roster.trained_by(STUDY) == trained  # the test environment: the paper's pair
        assert all(len(models[m].train.learning_rate_list) >= 2 for m in roster.trained_by(STUDY))


def _json(project: Path, relative: str) -> dict:
    return json.loads(latest(project, relative).read_text())


@pytest.mark.slow
def test_every_run_of_the_grid_is_a_row_and_each_pair_is_compared_at_each_rate(paper_optimizer_run):
    table = pd.read_parquet(latest(paper_optimizer_run, f"data/08_reporting/tables/{STUDY}.sweep.parquet"))
    rates = {"baseline_sweep": {0.05, 0.5}}
    for reference, treatment in PAIRS[:1]:  # the test environment's study: the paper's pair
        for model in (reference, treatment):
            rows = table[table["model"] == model]
            assert set(rows["learning_rate"]) == rates[reference] and set(rows["seed"]) == {1337, 1}
            assert len(rows) == 4
    assert np.isfinite(table["first_train_loss"]).all()
    assert table["stable"].dtype == bool
    summary = _json(paper_optimizer_run, f"data/08_reporting/summaries/{STUDY}.sweep.json")
    assert set(summary["largest_stable"]) == set(PAIRS[0])
    pair = summary["comparisons"]["candidate_sweep_vs_baseline_sweep"]
    assert pair["compared"] == 2 and set(pair["rates"]) == {"0.05", "0.5"}
    compared = _json(paper_optimizer_run, f"data/08_reporting/summaries/{STUDY}.model_comparisons.json")
    keys = set(compared["comparisons"])
    assert keys == {"candidate_sweep_vs_baseline_sweep@lr=0.05", "candidate_sweep_vs_baseline_sweep@lr=0.5"}


@pytest.mark.slow
def test_the_report_concludes_on_the_sweep_and_draws_figs_1_and_3(paper_optimizer_run):
    report = latest(paper_optimizer_run, f"data/08_reporting/{STUDY}/report.md")
    markdown = report.read_text()
    section = markdown[markdown.index("## The learning-rate sweep"):]
    section = section[:section.index("\n## ")]
    assert "BN (plain SGD) trains stably" in section and "no BN (plain SGD)" in section
    assert "learning rates both trained at" in section
    assert "| 0.05 |" in section and "| 0.5 |" in section
    for name in ("sweep", "sweep_curves", "sweep_ics"):
        assert f"figures/{name}.png" in section
        assert (report.parent / "figures" / f"{name}.png").stat().st_size > 10_000
