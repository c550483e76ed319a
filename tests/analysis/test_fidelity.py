"""The seed-aware comparisons and the Fidelity table on synthetic traces with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis import comparisons as cmp
from bnstudy.analysis import fidelity

STEPS = 120
STALL = 30  # the baseline sits at ln 10 for its first 30 steps
LAYERS = ["conv_0", "conv_1", "fc1", "out"]


def _loss(model: str, seed: int) -> np.ndarray:
    steps = np.arange(STEPS, dtype=float)
    if model == "candidate":
        return 2.3 * np.exp(-steps / 40) + 0.2 + 0.001 * seed
    loss = np.full(STEPS, math.log(10))
    loss[STALL:] = math.log(10) * np.exp(-(steps[STALL:] - STALL) / 50) + 0.1
    return loss


def _traces(seeds, ratio: float = 0.4, stalled_outlier: float = 1000.0):
    rng = np.random.default_rng(0)
    out = {k: {} for k in ("training", "evals", "smoothness", "ics", "histograms", "init")}
    for model in ("baseline", "candidate"):
        frames = {k: [] for k in out}
        for seed in seeds:
            steps = np.arange(STEPS)
            frames["training"].append(pd.DataFrame({"seed": seed, "step": steps,
                                                    "train_loss": _loss(model, seed)}))
            frames["evals"].append(pd.DataFrame({"seed": seed, "step": [0, STEPS],
                                                 "test_accuracy": [0.1, 0.6 if model == "candidate"
                                                                   else 0.4 + 0.01 * seed]}))
            measured = steps[::4]
            base = 1.0 + rng.random(measured.size)
            scale = ratio * np.exp(rng.normal(0, 0.05, measured.size)) if model == "candidate" \
                else np.ones(measured.size)
            loss_range = base * scale
            if model == "candidate":  # a huge value where the baseline is stalled: excluded
                loss_range = np.where(measured < STALL, stalled_outlier, loss_range)
            frames["smoothness"].append(pd.DataFrame({
                "seed": seed, "preset": "paper", "step": measured, "probe_loss_min": 1.0,
                "probe_loss_max": 1.0 + loss_range, "grad_diff_max": loss_range,
                "beta_smoothness": loss_range, "grad_norm": 2.0}))
            for layer in LAYERS:
                frames["ics"].append(pd.DataFrame({
                    "seed": seed, "preset": "paper", "step": measured, "layer": layer,
                    "param": "all", "ics_l2": base * (1.5 if model == "candidate" else 1.0),
                    "ics_cosine": 0.5}))
            channels = rng.random((4, 3)) * (0.5 if model == "candidate" else 1.0)
            out["histograms"].setdefault(model, {})[f"seed_{seed}"] = {
                "steps": np.array([0, 40, 80, 119]),
                "layers": {"conv_1": {"channel_mean": np.cumsum(channels, 0),
                                      "channel_var": np.cumsum(channels, 0) + 1}}}
            frames["init"].append(pd.DataFrame({"seed": seed, "step": [STEPS] * 2,
                                                "layer": ["conv_0", "conv_1"],
                                                "abs": [0.5, 0.7] if model == "candidate"
                                                else [1.0 + 0.01 * seed, 1.2]}))
        for key, parts in frames.items():
            if parts:
                out[key][model] = pd.concat(parts, ignore_index=True)
    return out


def _compare(seeds, **kwargs):
    t = _traces(seeds, **kwargs)
    return fidelity.compare_models(t["training"], t["evals"], t["smoothness"], t["ics"],
                                   t["histograms"], t["init"], smoothing_fraction=0.01)


def test_stalled_steps_are_excluded_and_the_known_ratio_is_recovered():
    summary = _compare([1, 2, 3, 4, 5])
    landscape = summary["measures"]["paper/loss_range"]
    # Measured every 4th step; the baseline is stalled (loss within 1% of ln 10) for its
    # first 30 steps and a little after; both models' rows of those steps go, in every seed.
    baseline = _loss("baseline", 1)[::4]
    stalled = int(np.sum(np.abs(baseline - math.log(10)) <= 0.01 * math.log(10)))
    assert stalled == 9  # steps 0..32
    assert landscape["excluded_stalled_rows"] == 5 * 2 * stalled
    overall = landscape["overall"]
    assert overall["significant"] and overall["direction"] == "lower"
    assert overall["estimate"] == pytest.approx(0.4, rel=0.08)
    assert "lower for BN" in overall["text"] and "5 seeds" in overall["text"]
    assert summary["stalled"]["stalled_steps"]["1"] >= STALL - 1
    exits = summary["stalled"]["plateau_exit_step"]
    assert exits["candidate"]["1"] < exits["baseline"]["1"]


def test_averaging_the_stalled_phase_in_would_reverse_the_conclusion():
    """The outliers sit in the stalled phase only: with them the candidate's median over
    all steps would be higher in the early third; excluded, it is lower everywhere."""
    summary = _compare([1, 2, 3, 4, 5], stalled_outlier=1000.0)
    early = summary["measures"]["paper/loss_range"]["phases"]["early"]
    assert early["direction"] == "lower"
    long = fidelity.measure_frames(_traces([1, 2, 3])["smoothness"], _traces([1, 2, 3])["ics"],
                                   _traces([1, 2, 3])["histograms"], ["paper"])
    raw = long["paper/loss_range"]["long"]
    stalled_rows = raw[(raw.model == "candidate") & (raw.step < STALL)]
    assert (stalled_rows.value > 100).all()  # the values that exclusion removed


def test_fidelity_table_rows_and_verdicts():
    rows = {row["key"]: row for row in fidelity.fidelity_table(_compare([1, 2, 3, 4, 5]))}
    assert list(rows) == ["ics", "landscape", "predictive", "beta", "shift", "init"]
    assert rows["landscape"]["agrees"] == "yes"  # candidate 0.4x the baseline
    assert rows["ics"]["agrees"] == "yes"  # candidate ICS 1.5x: not reduced
    assert rows["init"]["agrees"] == "yes"  # candidate closer to its initialization
    assert rows["shift"]["agrees"] == "no"  # candidate shift half the baseline's
    for row in rows.values():
        assert {"claim", "paper", "blog", "protocol", "this_run", "agrees", "n_seeds"} <= set(row)
    # the probe and ICS claims are read in the paper's measurement protocol (measured here)
    assert [rows[k]["protocol"] for k in ("ics", "landscape", "predictive", "beta")] == ["paper protocol"] * 4
    assert rows["shift"]["protocol"] == "activation snapshots (no protocol)"
    assert rows["init"]["protocol"] == "final conv kernels (no protocol)"


def test_fidelity_rows_carry_raw_and_holm_adjusted_p_and_the_detectable_effect():
    """The six claims are one family: each row's p_holm is Holm's adjustment of the six raw p
    (recomputed here by hand from the rows' own raw p), and detectable is the effect a
    paired t-test on these seeds finds with power 0.8."""
    rows = fidelity.fidelity_table(_compare([1, 2, 3, 4, 5]))
    raw = np.array([row["p_value"] for row in rows])
    order = np.argsort(raw)
    by_hand = np.empty(6)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (6 - rank) * raw[index]))
        by_hand[index] = running
    np.testing.assert_allclose([row["p_holm"] for row in rows], by_hand, rtol=1e-12)
    for row in rows:
        assert row["p_holm"] >= row["p_value"]
        assert row["significant_holm"] == (row["p_holm"] < 0.05)
        assert row["significant_holm"] <= row["significant"]  # adjusting never adds a claim
        null = 1.0 if row["kind"] == "ratio" else 0.0
        assert row["detectable"] >= null
    # one seed: nothing is tested, nothing adjusted, nothing detectable
    single = fidelity.fidelity_table(_compare([7]))
    assert all(np.isnan(row["p_holm"]) and not row["significant_holm"]
               and np.isnan(row["detectable"]) for row in single)


def test_without_the_paper_protocol_the_claims_are_read_in_the_first_one():
    t = _traces([1, 2, 3])
    for frames in (t["smoothness"], t["ics"]):
        for model, frame in frames.items():
            frames[model] = frame.assign(preset="blog")
    summary = fidelity.compare_models(t["training"], t["evals"], t["smoothness"], t["ics"],
                                      t["histograms"], t["init"], smoothing_fraction=0.01)
    rows = {row["key"]: row for row in fidelity.fidelity_table(summary)}
    assert rows["landscape"]["measure"] == "blog/loss_range"
    assert rows["landscape"]["protocol"] == "blog protocol"


@pytest.mark.parametrize(("learning_rate", "momentum", "nesterov", "label"), [
    (0.1, 0.0, False, "paper optimizer (plain SGD, lr 0.1)"),  # Santurkar et al.
    (0.1, 0.0, True, "paper optimizer (plain SGD, lr 0.1)"),  # Nesterov without momentum is plain
    (0.035, 0.9, False, "blog optimizer (SGD m=0.9, lr 0.035)"),
    (0.035, 0.9, True, "SGD, Nesterov momentum 0.9, lr 0.035"),
    (0.1, 0.9, False, "SGD, momentum 0.9, lr 0.1"),  # the paper's lr with the blog's momentum
    (0.035, 0.0, False, "SGD, momentum 0, lr 0.035"),
    (0.05, 0.5, False, "SGD, momentum 0.5, lr 0.05"),
])
def test_optimizer_label_names_whose_optimizer_it_is(learning_rate, momentum, nesterov, label):
    assert fidelity.optimizer_label(learning_rate, momentum, nesterov) == label


def test_one_seed_is_never_a_verdict():
    summary = _compare([7])
    rows = fidelity.fidelity_table(summary)
    assert {row["agrees"] for row in rows} == {"untested (one seed)"}
    assert "single seed" in summary["measures"]["paper/loss_range"]["overall"]["text"]


def test_views_that_disagree_are_named():
    result = {"overall": {"n": 3, "direction": "lower"},
              "matched_loss": {"n": 3, "direction": "none"},
              "phases": {"early": {"n": 3, "direction": "higher"}}}
    text = cmp.disagreement(result)
    assert "overall: lower" in text and "early third: higher" in text
    assert "matched loss" not in text and "1 other view(s) not significant" in text
    same = {"overall": {"n": 3, "direction": "lower"}, "matched_loss": {"n": 3, "direction": "lower"},
            "phases": {}}
    assert cmp.disagreement(same) == ""


def test_a_view_without_a_significant_difference_is_no_disagreement():
    """Issue 24: "views disagree" only where two views reach different significant verdicts;
    lower overall with the other views undecided points one way."""
    result = {"overall": {"n": 3, "direction": "lower"},
              "matched_loss": {"n": 3, "direction": "none"},
              "phases": {"early": {"n": 3, "direction": "none"},
                         "late": {"n": 3, "direction": "lower"}}}
    assert cmp.disagreement(result) == ""
    # one seed has no verdict at all, whatever its direction field says
    result["phases"]["early"] = {"n": 1, "direction": "higher"}
    assert cmp.disagreement(result) == ""


def _two_protocols(seeds, ratio: float):
    t = _traces(seeds, ratio=ratio)
    for kind in ("smoothness", "ics"):
        t[kind] = {model: pd.concat([frame, frame.assign(preset="blog")], ignore_index=True)
                   for model, frame in t[kind].items()}
    return fidelity.compare_models(t["training"], t["evals"], t["smoothness"], t["ics"],
                                   t["histograms"], t["init"], smoothing_fraction=0.01)


def test_the_readings_are_every_claimed_pair_in_every_protocol_with_holm_over_the_table():
    """Two pairs of BN against no BN, each measured in two protocols, one pair of BN against
    L1 and a sweep's per-rate comparison: the readings are the two claimed pairs' four
    protocol claims in each protocol and their two protocol-free claims once, 2 x (4 x 2 + 2)
    = 20 tests, Holm-adjusted as one family (by hand here), each protocol's rows equal to that
    protocol's own table."""
    paper_pair, blog_pair = _two_protocols([1, 2, 3, 4, 5], 0.4), _two_protocols([1, 2, 3], 0.7)
    comparisons = {
        "c_sgd_vs_b_sgd": {**paper_pair, "reference": "b_sgd", "treatment": "c_sgd"},
        "c_vs_b": {**blog_pair, "reference": "b", "treatment": "c"},
        "l1_vs_c": {**blog_pair, "reference": "c", "treatment": "l1"},
        "c_vs_b@lr=0.5": {**blog_pair, "reference": "b", "treatment": "c", "learning_rate": 0.5},
    }
    normalization = {"b_sgd": "none", "c_sgd": "batch", "b": "none", "c": "batch", "l1": "l1"}
    rows = fidelity.fidelity_readings({"headline": "c_sgd_vs_b_sgd", "comparisons": comparisons},
                                      normalization)
    assert len(rows) == 20
    assert {row["comparison"] for row in rows} == {"c_sgd_vs_b_sgd", "c_vs_b"}
    for key, summary in (("c_sgd_vs_b_sgd", paper_pair), ("c_vs_b", blog_pair)):
        mine = [row for row in rows if row["comparison"] == key]
        assert sorted((row["preset"] or "-") for row in mine) == ["-"] * 2 + ["blog"] * 4 + ["paper"] * 4
        for preset in ("paper", "blog"):
            own = {row["key"]: row for row in fidelity.fidelity_table(summary, preset)}
            for row in mine:
                if row["preset"] == preset:
                    assert row["measure"] == f"{preset}/" + own[row["key"]]["measure"].split("/")[1]
                    assert row["p_value"] == own[row["key"]]["p_value"]
                    assert row["p_holm"] >= own[row["key"]]["p_holm"]  # a larger family
        free = {row["key"] for row in mine if row["preset"] is None}
        assert free == {"shift", "init"}
    raw = np.array([row["p_value"] for row in rows])
    by_hand, running = np.empty(raw.size), 0.0
    for rank, index in enumerate(np.argsort(raw)):
        running = max(running, min(1.0, (raw.size - rank) * raw[index]))
        by_hand[index] = running
    np.testing.assert_allclose([row["p_holm"] for row in rows], by_hand, rtol=1e-12)
    with pytest.raises(ValueError, match="not 'other'"):
        fidelity.fidelity_table(paper_pair, "other")
