"""The paper's optimizer (issue 21, Build 1): `paper_optimizer_study` trains the pair with plain
SGD at lr 0.1 (Santurkar et al. 2018), declared in the roster alone, while `full_study` keeps
the blog's optimizer (SGD, momentum 0.9, lr 0.035); its report says which optimizer its
Fidelity claims were read under."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from typing import Any

import pytest

from bnstudy.analysis.fidelity import BLOG_OPTIMIZER, PAPER_OPTIMIZER
from bnstudy.parameters import validate_parameters
from bnstudy.roster import roster_from_parameters
from tests.conftest import PROJECT_ROOT
from tests.pipelines.test_full_study import latest

STUDY = "paper_optimizer_study"
PAPER_LABEL = "paper optimizer (plain SGD, lr 0.1)"


def _parameters(env: str) -> dict[str, Any]:
    """The parameters of ``conf/`` in ``env``, loaded as ``settings.py`` loads them."""
    from kedro.config import OmegaConfigLoader

    from bnstudy.config_loader import CONFIG_LOADER_ARGS

    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]


@pytest.mark.parametrize("env", ["test", "cpu"])
def test_the_paper_optimizer_study_trains_with_plain_sgd_and_full_study_with_the_blogs(env):
    params = _parameters(env)
    roster = roster_from_parameters(params)
    models = validate_parameters(params)

    assert roster.trained_by(STUDY) == ("baseline_sgd", "candidate_sgd")
    assert [(c.reference, c.treatment) for c in roster.studies[STUDY].comparisons] == [
        ("baseline_sgd", "candidate_sgd")]
    assert {name: roster.normalization(name) for name in roster.trained_by(STUDY)} == {
        "baseline_sgd": "none", "candidate_sgd": "batch"}  # the paper's pair: Fidelity applies
    for name in roster.trained_by(STUDY):
        train = models[name].train
        assert (train.learning_rate, train.momentum, train.nesterov) == (*PAPER_OPTIMIZER, False)
    for name in roster.trained_by("full_study"):
        assert (models[name].train.learning_rate, models[name].train.momentum) == BLOG_OPTIMIZER
    # the pair differs from full_study's only in the keys its roster entries set (conf/base's
    # optimizer, and in the cpu environment conf/cpu/parameters_roster.yml's size): same seeds,
    # network and everything else, and one configuration for both models
    for paper, blog in (("baseline_sgd", "baseline"), ("candidate_sgd", "candidate")):
        overrides = params["models"][paper]["training"]
        assert models[paper].train == dataclasses.replace(models[blog].train, **overrides)
        assert models[paper].model == models[blog].model
    assert models["baseline_sgd"].measurements == models["candidate_sgd"].measurements


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_paper_optimizer_runs_the_study():
    printed = subprocess.run(["make", "-n", "paper-optimizer", "ENV=test"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, check=True).stdout
    command = next(line for line in printed.splitlines() if "kedro run" in line)
    assert command.endswith(f"kedro run --env test --pipelines {STUDY}")


@pytest.mark.slow
def test_both_models_train_with_plain_sgd_at_lr_0_1(paper_optimizer_run):
    for name, normalization in (("baseline_sgd", "none"), ("candidate_sgd", "batch")):
        record = json.loads(latest(paper_optimizer_run,
                                   f"data/07_model_output/{name}/run_record.json").read_text())
        train = record["train_config"]
        assert (train["learning_rate"], train["momentum"], train["nesterov"]) == (0.1, 0.0, False)
        assert train["seeds"] == [1337, 1, 2]  # the rest as the test environment sets it
        assert record["model_config"]["normalization"] == normalization


@pytest.mark.slow
def test_its_report_reads_the_fidelity_claims_under_the_papers_optimizer(paper_optimizer_run):
    markdown = latest(paper_optimizer_run, f"data/08_reporting/{STUDY}/report.md").read_text()
    table = markdown[markdown.index("**Fidelity**"):].split("\n\n")[1]  # the table after its caption
    header, _, *rows = table.splitlines()
    assert header.split(" | ")[3] == "protocol" and len(rows) == 6, table  # the six claims
    for row in rows:
        assert row.split(" | ")[3].endswith(f", {PAPER_LABEL}"), row
    assert "blog optimizer" not in table


@pytest.mark.slow
def test_one_table_reads_the_claims_under_both_optimizers_and_both_protocols(paper_optimizer_run):
    """optimizer_fidelity_study trains nothing: it reads the paper-optimizer pair and the
    blog-optimizer pair, each measured in both protocols, and its report's Fidelity section
    sets every claim's readings side by side: 2 pairs x (4 claims x 2 protocols + 2)."""
    markdown = latest(paper_optimizer_run, "data/08_reporting/optimizer_fidelity_study/report.md").read_text()
    # folded under its caption (<details>): the table follows the </summary> line
    folded = markdown[markdown.index("<b>Every reading: pair, optimizer and protocol</b>"):]
    table = folded.split("</summary>\n\n", 1)[1].split("\n\n")[0]
    header, _, *rows = table.splitlines()
    assert "p: raw / Holm (20 tests)" in header, header
    cells = [row.split(" | ") for row in rows]
    assert len(cells) == 20
    blog_label = "blog optimizer (SGD m=0.9, lr 0.035)"
    readings = {(cell[1], cell[2]) for cell in cells}
    for pair, label in (("candidate_sgd vs baseline_sgd", PAPER_LABEL), ("candidate vs baseline", blog_label)):
        for protocol in ("paper protocol", "blog protocol"):
            assert (f"{pair}: {label}", protocol) in readings
    landscape = [cell for cell in cells if cell[0].endswith("Smoother loss landscape with BN")]
    assert len(landscape) == 4  # side by side: each pair in each protocol
    summary = json.loads(latest(paper_optimizer_run,
                                "data/08_reporting/summaries/optimizer_fidelity_study.fidelity.json").read_text())
    assert summary["comparison"] == "candidate_sgd_vs_baseline_sgd"
    assert len(summary["readings"]) == 20
