"""The report's verdicts follow the numbers, in either direction."""

from __future__ import annotations

import pytest

from bnstudy.reporting import report


@pytest.mark.parametrize(
    ("ratio", "fraction", "expected"),
    [(0.5, 0.9, "yes"), (2.0, 0.1, "no"), (0.9, 0.4, "mixed"), (1.1, 0.6, "mixed"), (None, 0.5, "n/a")],
)
def test_verdict(ratio, fraction, expected):
    assert report.verdict(ratio, fraction) == expected


def test_majority_verdict():
    assert report.majority_verdict(0.8, 0.6) == "yes"
    assert report.majority_verdict(0.2, 0.5) == "no"  # exactly half is not a majority
    assert report.majority_verdict(0.8, 0.1) == "mixed"


def _comparison(base: float, cand: float, better: float) -> dict:
    block = {"baseline_median": base, "candidate_median": cand, "ratio": cand / base,
             "candidate_better_fraction": better, "steps": 10}
    return {"steps": 10, "phases": {"early": block}, "overall": block}


def _summaries(smoother: bool) -> dict:
    good, bad = (0.1, 1.0), (1.0, 0.1)
    base, cand = good[::-1] if smoother else bad[::-1]
    fraction = 0.9 if smoother else 0.1
    smooth = {"presets": {p: _comparison(base, cand, fraction) for p in ("blog", "paper")}}
    return {
        "training_curves": {
            "models": {m: {"final_test_accuracy": acc, "best_test_accuracy": acc, "final_test_loss": 1.0,
                           "final_train_loss": 0.5, "final_train_accuracy": 0.8, "num_steps": 10}
                       for m, acc in (("baseline", 0.79), ("candidate", 0.85))},
            "test_accuracy_gain": 0.06, "smoothed_train_loss": _comparison(1.0, 0.5, 0.8), "smoothing_window": 2,
        },
        "gradient_ics": {"blog": {"layers": {}, "fraction_layers_candidate_lower_l2": 0.2,
                                  "fraction_layers_candidate_higher_cosine": 0.1},
                         "paper": {"layers": {}, "fraction_layers_candidate_lower_l2": 0.9,
                                   "fraction_layers_candidate_higher_cosine": 0.8}},
        "loss_landscape": smooth, "gradient_predictiveness": smooth, "beta_smoothness": smooth,
        "activation_shift": {"layers": {}, "fraction_layers_candidate_lower_delta_mu": 0.9,
                             "fraction_layers_candidate_lower_delta_var": 0.9},
        "init_distance": {"final_step": 10, "layers": {}, "fraction_layers_candidate_closer": 1.0},
    }


RECORD = {"model_config": {"conv_features": [8], "width_multiplier": 1.0},
          "train_config": {"seed": 0, "learning_rate": 0.035, "momentum": 0.9, "batch_size": 128},
          "measurement_configs": [{"name": "blog"}, {"name": "paper"}], "num_steps": 10, "wall_time_s": 1.0}


@pytest.mark.parametrize("smoother", [True, False])
def test_findings_follow_the_data(smoother):
    _, findings = report.build_report(_summaries(smoother), {"baseline": RECORD, "candidate": RECORD})

    landscape = [f for f in findings if f.topic == "smoother loss landscape"]
    assert [f.verdict for f in landscape] == (["yes", "yes"] if smoother else ["no", "no"])
    assert ("ratio 0.1" if smoother else "ratio 10") in landscape[0].sentence


def test_protocol_disagreement_is_reported():
    sections, findings = report.build_report(_summaries(True), {"baseline": RECORD, "candidate": RECORD})

    ics = {f.preset: f.verdict for f in findings if f.topic == "gradient ICS reduced"}
    assert ics == {"blog": "no", "paper": "yes"}
    protocols = sections[-1]
    assert "disagree on: gradient ICS reduced" in protocols.paragraphs[0]


def test_renderers_embed_figures_and_escape_html():
    sections = [report.Section("A <b>", paragraphs=["x < y"], figures=["f"],
                               tables=[("t", report.Table(["c"], [["1"]]))])]
    findings = [report.Finding("topic", "", "yes", "s")]
    png = b"\x89PNG fake"

    markdown = report.render_markdown("T", sections, findings, {"f": png})
    page = report.render_html("T", sections, findings, {"f": png})

    assert "data:image/png;base64," in markdown and "| c |" in markdown
    assert "A &lt;b&gt;" in page and "x &lt; y" in page and "data:image/png;base64," in page
