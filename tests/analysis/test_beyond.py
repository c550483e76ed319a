"""The questions only beyond_study asks: thresholds, when a curve reaches one, the curvature
summary across seeds, the noise question's verdicts, and how the questions find the comparisons
they read by the models' normalization kinds (not their names)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bnstudy.analysis import beyond


def test_thresholds_at_the_blog_optimizer():
    """lr 0.035, momentum 0.9: the blog's optimizer (the study's default), not the paper's."""
    limits = beyond.thresholds(0.035, 0.9)
    np.testing.assert_allclose(limits["2/eta"], 2 / 0.035, rtol=1e-12)
    np.testing.assert_allclose(limits["2(1-beta)/eta"], 0.2 / 0.035, rtol=1e-12)
    np.testing.assert_allclose(limits["2(1+beta)/eta"], 3.8 / 0.035, rtol=1e-12)
    # the rounded values
    assert [round(v, 1) for v in limits.values()] == [57.1, 5.7, 108.6]


def test_near_threshold_finds_the_first_step_within_and_whether_it_stays():
    steps = np.arange(0, 100, 10)
    rising = np.array([1.0, 10.0, 40.0, 52.0, 56.0, 58.0, 60.0, 57.0, 55.0, 54.0])
    found = beyond.near_threshold(steps, rising, 57.1, 0.1)  # within [51.4, 62.8]
    assert found == {"first_step": 30, "stays": True, "fraction_after": 1.0}
    leaves = rising.copy()
    leaves[8] = 40.0  # one later value drops out
    found = beyond.near_threshold(steps, leaves, 57.1, 0.1)
    assert found["first_step"] == 30 and not found["stays"]
    np.testing.assert_allclose(found["fraction_after"], 6 / 7)
    never = beyond.near_threshold(steps, rising / 10, 57.1, 0.1)
    assert never == {"first_step": None, "stays": False, "fraction_after": 0.0}
    # NaN (a diverged seed's mean) is skipped, not counted as leaving
    with_nan = rising.copy()
    with_nan[5] = np.nan
    assert beyond.near_threshold(steps, with_nan, 57.1, 0.1)["stays"]


def _curvature_frame(seed: int, values: np.ndarray, sharpness: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"seed": seed, "step": np.arange(values.size) * 10,
                         "lambda_max": values, "batch_sharpness": sharpness,
                         "diverged": False})


def test_curvature_analysis_late_means_intervals_and_paired_ratio():
    """Three seeds: the late mean is each seed's mean over the last third of its steps, the
    interval is the t interval across seeds (scipy), and the BN/no-BN ratio is the paired
    geometric-mean ratio with scipy's paired t-test on the logs."""
    rng = np.random.default_rng(0)
    base, bn = [], []
    for seed in (1, 2, 3):
        base.append(_curvature_frame(seed, 10 + rng.normal(0, 1, 9), 5 + rng.normal(0, 1, 9)))
        bn.append(_curvature_frame(seed, 50 + rng.normal(0, 2, 9), 55 + rng.normal(0, 1, 9)))
    curvature = {"baseline": pd.concat(base), "candidate": pd.concat(bn)}
    table, summary = beyond.curvature_analysis(curvature, 0.035, 0.9, 0.1, reference="baseline")
    assert set(table["metric"]) == {"lambda_max", "batch_sharpness"}
    late = {m: np.array([f[f["step"] >= 60 - 1e-9]["lambda_max"].mean() for f in frames])
            for m, frames in (("baseline", base), ("candidate", bn))}
    entry = summary["models"]["candidate"]["lambda_max"]
    np.testing.assert_allclose(entry["late_mean"], late["candidate"].mean(), rtol=1e-12)
    low, high = stats.t.interval(0.95, 2, loc=late["candidate"].mean(),
                                 scale=stats.sem(late["candidate"]))
    np.testing.assert_allclose([entry["late_low"], entry["late_high"]], [low, high], rtol=1e-9)
    ratio = np.exp(np.mean(np.log(late["candidate"] / late["baseline"])))
    p = stats.ttest_rel(np.log(late["candidate"]), np.log(late["baseline"])).pvalue
    assert f"ratio {ratio:.3g}" in entry["vs_reference"]
    assert f"p = {p:.2g}" in entry["vs_reference"] or "p < 0.001" in entry["vs_reference"]
    assert "vs_reference" not in summary["models"]["baseline"]["lambda_max"]
    # BN's batch sharpness sits at 2/eta = 57.1 (55 +- 1 is within 10%) from the first step
    sharp = summary["models"]["candidate"]["batch_sharpness"]["thresholds"]["2/eta"]
    assert sharp["first_step"] == 0 and sharp["stays"]
    assert any("BN: batch sharpness" in s and "within 10% of 2/eta from step 0, and stays"
               in s for s in summary["statements"])


def test_the_hessian_trace_is_compared_without_thresholds_and_left_out_when_not_estimated():
    """Trace columns with values: a third metric with a late interval and the paired ratio
    against no BN, but no threshold crossings; all NaN (curvature_trace_samples 0): absent,
    and the summary says it was not estimated."""
    rng = np.random.default_rng(1)
    frames = {}
    for model, level in (("baseline", 400.0), ("candidate", 100.0)):
        parts = []
        for seed in (1, 2, 3):
            part = _curvature_frame(seed, 10 + rng.normal(0, 1, 9), 5 + rng.normal(0, 1, 9))
            parts.append(part.assign(hessian_trace=level + rng.normal(0, 5, 9)))
        frames[model] = pd.concat(parts)
    table, summary = beyond.curvature_analysis(frames, 0.035, 0.9, 0.1, reference="baseline")
    assert set(table["metric"]) == {"lambda_max", "batch_sharpness", "hessian_trace"}
    assert summary["trace_measured"]
    entry = summary["models"]["candidate"]["hessian_trace"]
    assert entry["thresholds"] == {} and entry["n"] == 3
    assert "ratio 0.2" in entry["vs_reference"] and "lower for BN" in entry["vs_reference"]
    sentence = next(s for s in summary["statements"] if s.startswith("BN: Hessian trace"))
    assert "threshold" not in sentence and "/eta" not in sentence and "Against no BN: ratio 0.2" in sentence
    off = {model: frame.assign(hessian_trace=np.nan) for model, frame in frames.items()}
    table, summary = beyond.curvature_analysis(off, 0.035, 0.9, 0.1, reference="baseline")
    assert set(table["metric"]) == {"lambda_max", "batch_sharpness"}
    assert not summary["trace_measured"]
    from bnstudy.reporting.beyond_report import curvature_section

    section = curvature_section(summary)
    assert any("not estimated (training.curvature_trace_samples is 0)" in p
               for p in section.paragraphs)


def test_curvature_not_measured_says_so():
    empty = pd.DataFrame(columns=["seed", "step", "lambda_max", "batch_sharpness"])
    table, summary = beyond.curvature_analysis({"baseline": empty, "candidate": empty},
                                               0.035, 0.9, 0.1)
    assert table.empty and not summary["measured"]
    assert "not measured" in summary["statement"]


def _view(direction: str, n: int = 3) -> dict:
    return {"overall": {"direction": direction, "n": n, "text": f"<{direction}>"}}


def _summary(**views: str) -> dict:
    return {"measures": {name.replace("__", "/"): _view(d) for name, d in views.items()}}


@pytest.mark.parametrize("noisy_gain, noisy_vs_bn, bn_gain, advantage", [
    ("higher", "not significant", "higher", "intact"),
    ("higher", "lower", "higher", "reduced"),
    ("not significant", "lower", "higher", "lost"),
    ("not significant", "not significant", "not significant", "not shown"),
])
def test_noise_question_verdicts(noisy_gain, noisy_vs_bn, bn_gain, advantage):
    bn_vs_none = _summary(test_accuracy=bn_gain)
    noisy_vs_none = _summary(test_accuracy=noisy_gain)
    noisy_vs_bn_summary = _summary(test_accuracy=noisy_vs_bn, activation__delta_mu="higher",
                                   activation__delta_var="not significant")
    answer = beyond.noise_answer(bn_vs_none, noisy_vs_none, noisy_vs_bn_summary)
    assert answer["shift_raised"] == "yes"
    assert answer["advantage"] == advantage
    assert "<higher>" in answer["statement"]  # the views' own wording is quoted


def test_noise_question_with_one_seed_is_untested():
    one = {"measures": {"test_accuracy": _view("higher", n=1),
                        "activation/delta_mu": _view("higher", n=1),
                        "activation/delta_var": _view("higher", n=1)}}
    answer = beyond.noise_answer(one, one, one)
    assert answer["advantage"] == "untested" and answer["shift_raised"] == "untested"


# Models named unlike conf/base's: the questions find them by their normalization kind.
KINDS = {"plain": "none", "bn": "batch", "jittered": "batch_noisy", "plain_jittered": "noisy",
         "other_bn": "batch"}


def _compared(reference: str, treatment: str, **views: str) -> dict:
    return {**_summary(**views), "reference": reference, "treatment": treatment}


def _study(*comparisons: dict) -> dict:
    keyed = {f"{c['treatment']}_vs_{c['reference']}": c for c in comparisons}
    return {"headline": next(iter(keyed)), "comparisons": keyed}


def test_the_noise_question_reads_the_pairs_of_its_kinds_whatever_their_names():
    study = _study(
        _compared("plain", "bn", test_accuracy="higher"),
        _compared("other_bn", "jittered", test_accuracy="lower"),  # batch vs batch_noisy, but
        _compared("plain", "jittered", test_accuracy="higher"),    # declared before bn's: first wins
        _compared("bn", "jittered", test_accuracy="lower", activation__delta_mu="higher",
                  activation__delta_var="higher"))
    study["comparisons"]["jittered_vs_other_bn"]["measures"]["activation/delta_mu"] = _view("lower")
    study["comparisons"]["jittered_vs_other_bn"]["measures"]["activation/delta_var"] = _view("lower")

    answer = beyond.noise_question(study, KINDS)

    assert answer["asked"] and answer["comparisons"] == {
        "bn_vs_none": "bn_vs_plain", "noisy_vs_none": "jittered_vs_plain",
        "noisy_vs_bn": "jittered_vs_other_bn"}
    assert answer["shift_raised"] == "no" and answer["advantage"] == "reduced"
    assert answer["without_bn"] is None  # no `noisy` model compared


def test_a_missing_pair_leaves_the_noise_question_unasked_and_says_which():
    study = _study(_compared("plain", "bn", test_accuracy="higher"),
                   _compared("plain", "jittered", test_accuracy="higher"))

    answer = beyond.noise_question(study, KINDS)

    assert not answer["asked"] and answer["advantage"] == "untested"
    assert answer["comparisons"]["noisy_vs_bn"] is None
    assert "compares no batch_noisy against batch" in answer["statement"]


def test_noise_without_bn_counts_the_seeds_that_left_the_plateau():
    """The treatment's role is ``candidate`` in a comparison's stall summary."""
    stuck = _compared("plain", "plain_jittered", test_accuracy="lower")
    stuck["stalled"] = {"plateau_exit_step": {"baseline": {"1": 40.0, "2": 38.0},
                                              "candidate": {"1": None, "2": None}}}
    study = _study(_compared("plain", "bn", test_accuracy="higher"), stuck)

    without = beyond.noise_question(study, KINDS)["without_bn"]

    assert without["model"] == "plain_jittered" and without["trains"] == "no"
    assert "left the chance-level plateau in 0 of 2 seeds, plain in 2" in without["statement"]
    assert "<lower>" in without["statement"]  # its test accuracy against no BN, as worded
    stuck["stalled"]["plateau_exit_step"]["candidate"]["2"] = 55.0
    assert beyond.noise_question(study, KINDS)["without_bn"]["trains"] == "in some seeds"
    # a run so short that no BN stays on the plateau too cannot tell
    stuck["stalled"]["plateau_exit_step"]["baseline"] = {"1": None, "2": None}
    short = beyond.noise_question(study, KINDS)["without_bn"]
    assert short["trains"] == "untested" and "too short a run to tell" in short["statement"]


def _record(normalization: str, **changes) -> dict:
    record = {"model_config": {"normalization": normalization, "width_multiplier": 0.125,
                               "noise_mean_range": 0.5},
              "train_config": {"learning_rate": 0.035, "epochs": 28},
              "measurement_configs": [{"name": "paper"}], "num_train": 5000, "num_test": 1000}
    for key, value in changes.items():
        part, field = key.split("__")
        record[part] = {**record[part], field: value}
    return record


def test_models_trained_alike_pass_the_setup_check():
    records = {"baseline": _record("none"), "candidate": _record("batch"),
               "candidate_noisy": _record("batch_noisy", model_config__noise_mean_range=0.0)}
    assert beyond.check_same_setup(records) == {"baseline": "none", "candidate": "batch",
                                                "candidate_noisy": "batch_noisy"}


def test_a_model_from_another_environment_is_refused_with_the_difference_named():
    records = {"baseline": _record("none"), "candidate": _record("batch"),
               "candidate_l1": _record("l1", train_config__epochs=2)}
    with pytest.raises(ValueError, match=r"'candidate_l1' was trained with other training "
                                         r"than 'baseline' \(epochs differ\).*make beyond"):
        beyond.check_same_setup(records)
