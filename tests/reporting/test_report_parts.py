"""A study's own questions add to the general report through ReportParts (beyond_study's noise
question, Lp table and curvature): their sections follow the Fidelity section, their figures and
captions join the report's, their metrics the study's; and the report's own sections stay."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from bnstudy.analysis import beyond
from bnstudy.pipelines.reporting import nodes
from bnstudy.reporting import beyond_report, conclusions
from bnstudy.reporting.document import ReportPart, Section
from tests.reporting.conftest import comparisons, inputs, record
from tests.reporting.test_report import FAKE_PNG, _figures

KINDS = {"baseline": "none", "candidate": "batch", "candidate_l2": "l2", "candidate_noisy": "batch_noisy",
         "candidate_l1": "l1"}


def _study(seeds: list[int], *treatments: tuple[str, str]) -> dict:
    """A study summary: BN against no BN (the headline), then each (reference, treatment)."""
    keyed = {}
    for reference, treatment in (("baseline", "candidate"), *treatments):
        keyed[f"{treatment}_vs_{reference}"] = {**comparisons(seeds), "reference": reference,
                                                "treatment": treatment}
    return {"headline": "candidate_vs_baseline", "comparisons": keyed}


def _write(study: dict, parts: dict[str, ReportPart]) -> tuple[dict, str, dict, str]:
    i = inputs([1337, 1, 2])
    models = {treatment for summary in study["comparisons"].values()
              for treatment in (summary["reference"], summary["treatment"])}
    records = {f"run_record:{m}": record([1337, 1, 2], KINDS[m]) for m in sorted(models)}
    return nodes.write_report(i["params"], study, i["fidelity"], i["provenance"], i["preprocessing"],
                              **records, **{f"figure:{n}": v for n, v in _figures().items()},
                              **{f"part:{name}": part for name, part in parts.items()})


def test_parts_follow_fidelity_with_their_figures_captions_and_metrics_and_the_report_stays():
    study = _study([1337, 1, 2], ("baseline", "candidate_l2"), ("candidate", "candidate_l2"))
    question = ReportPart([Section("A question", paragraphs=["its answer"], figures=["its_plot"]),
                           Section("Its detail", level=3)],
                          figures={"its_plot": FAKE_PNG}, captions={"its_plot": "What its plot shows."},
                          metrics={"candidate_l2/lambda_max_late": 12.5})

    markdown, page, metrics, _ = _write(study, {"question": question})
    text = markdown["text"]

    order = [text.index(f"\n{title}\n") for title in (
        "## Setup (provenance)", "## Fidelity", "## A question", "### Its detail", "## Conclusions",
        "## Training", "## Further comparisons", "### L2 normalization against no BN (candidate_l2 vs baseline)",
        "### L2 normalization against BN (candidate_l2 vs candidate)")]
    assert order == sorted(order)
    assert "figures/its_plot.png" in markdown["files"] and "](figures/its_plot.png)" in text
    assert "*Figure 1. What its plot shows.*" in text  # numbered first: its section comes first
    assert page.count("data:image/png;base64,") == len(nodes.FIGURE_NAMES)  # the GIF aside, plus its own
    assert metrics["candidate_l2/lambda_max_late"] == {"value": 12.5, "step": 0}
    # every model in the Setup, and the further comparisons' metrics by their pair
    setup = text.split("## Setup (provenance)", 1)[1].split("\n## ", 1)[0]
    assert "baseline: none; candidate: batch; candidate_l2: l2" in setup
    estimate = study["comparisons"]["candidate_l2_vs_candidate"]["measures"]["paper/loss_range"]["overall"]["estimate"]
    assert metrics["candidate_l2_vs_candidate/paper/loss_range.ratio"]["value"] == pytest.approx(estimate, rel=1e-3)
    assert "candidate_vs_baseline/paper/loss_range.ratio" not in metrics  # the headline's are unprefixed
    assert "paper/loss_range.ratio" in metrics and "paper/loss_range.ratio_ci_low" in metrics
    assert "test_accuracy.difference" in metrics and not any(k.endswith(".estimate") for k in metrics)
    for value in (m["value"] for m in metrics.values()):  # 4 significant digits, not a float's 17
        assert value == float(f"{value:.4g}")


def test_further_metrics_of_a_sweep_name_the_rate_as_mlflow_allows():
    summary = {**comparisons([1, 2]), "reference": "baseline", "treatment": "candidate", "learning_rate": 0.1}
    names = conclusions.further_metrics(summary)
    assert "candidate_vs_baseline/lr_0.1/test_accuracy.difference" in names
    assert all(re.fullmatch(r"[/\w.\- :]*", name) for name in names)  # mlflow's rule: no @ or =


def test_the_lp_table_has_bn_then_each_lp_normalization_against_no_bn_found_by_kind():
    study = _study([1337, 1, 2], ("baseline", "candidate_l2"), ("baseline", "candidate_l1"),
                   ("candidate", "candidate_l1"))
    part = beyond_report.lp_part(study, KINDS)
    (caption, table), = part.sections[0].tables
    assert caption == "Normalizations against no BN"
    assert [row[0] for row in table.rows] == ["BN (candidate)", "L1 normalization (candidate_l1)",
                                              "L2 normalization (candidate_l2)"]
    accuracy = study["comparisons"]["candidate_l1_vs_baseline"]["measures"]["test_accuracy"]["overall"]["text"]
    assert table.columns[1] == "test_accuracy vs no BN" and table.rows[1][1] == accuracy

    unasked = beyond_report.lp_part(_study([1337, 1, 2]), KINDS)
    assert "Not asked" in unasked.sections[0].paragraphs[0] and not unasked.sections[0].tables


def test_the_noise_section_gives_the_answer_the_pairs_it_read_and_noise_without_bn():
    study = _study([1337, 1, 2], ("baseline", "candidate_noisy"), ("candidate", "candidate_noisy"))
    noise = beyond.noise_question(study, KINDS)
    noise["without_bn"] = {"model": "baseline_noisy", "trains": "no", "statement": "Stays at chance."}

    part = beyond_report.noise_part(noise, FAKE_PNG)

    text = " ".join(part.sections[0].paragraphs)
    assert f"**Answer:** shift raised: {noise['shift_raised']}" in text and noise["statement"] in text
    assert "`candidate_vs_baseline`, `candidate_noisy_vs_baseline`, `candidate_noisy_vs_candidate`" in text
    assert "**Noise without BN**" in text and "trains: no. Stays at chance." in text
    assert part.figures == {"noisy_shift": FAKE_PNG} and part.sections[0].figures == ["noisy_shift"]


def test_the_curvature_part_gives_each_models_late_means_as_metrics():
    frame = pd.DataFrame({"seed": [1, 1, 1, 2, 2, 2], "step": [0, 10, 20] * 2, "diverged": False,
                          "lambda_max": [5.0, 6.0, 7.0, 5.5, 6.5, 9.0],
                          "batch_sharpness": [1.0, 2.0, 3.0, 1.0, 2.0, 5.0]})
    _, summary = beyond.curvature_analysis({"baseline": frame, "candidate": frame.assign(lambda_max=2 * frame["lambda_max"])}, 0.035, 0.9, 0.1,
                                           reference="baseline")

    part = beyond_report.curvature_part(summary, FAKE_PNG)

    assert part.metrics["baseline/lambda_max_late"] == 8.0  # the seeds' last-third means 7 and 9
    assert part.metrics["candidate/lambda_max_late"] == 16.0
    assert set(part.metrics) == {f"{m}/{q}_late" for m in ("baseline", "candidate")
                                 for q in ("lambda_max", "batch_sharpness")}
    assert part.sections[0].figures == ["curvature"] and "curvature" in part.captions
