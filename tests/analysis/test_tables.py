"""bnstudy.analysis.tables against naive loops and hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis import tables as analysis


def test_moving_average_matches_naive_trailing_window():
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    window = 3

    naive = [np.mean(values[max(0, i - window + 1) : i + 1]) for i in range(values.size)]

    np.testing.assert_allclose(analysis.moving_average(values, window), naive, rtol=1e-12)


def test_phase_labels_split_steps_into_equal_thirds():
    labels = analysis.phase_labels(np.arange(9), 3)
    assert labels.tolist() == ["early"] * 3 + ["middle"] * 3 + ["late"] * 3
    # sparse, offset steps are split by position in the step range, not by count
    assert analysis.phase_labels(np.array([10, 11, 40]), 3).tolist() == ["early", "early", "late"]


def test_compare_series_hand_computed():
    steps = np.arange(6)
    baseline = pd.Series([4.0, 4.0, 2.0, 2.0, 1.0, 1.0], index=steps)
    candidate = pd.Series([2.0, 5.0, 1.0, 1.0, 2.0, 0.5], index=steps)

    result = analysis.compare_series(baseline, candidate, num_phases=3)

    early = result["phases"]["early"]
    assert (early["baseline_median"], early["candidate_median"]) == (4.0, 3.5)
    assert early["ratio"] == pytest.approx(3.5 / 4.0)
    assert early["candidate_better_fraction"] == 0.5
    assert result["phases"]["middle"]["candidate_better_fraction"] == 1.0
    overall = result["overall"]
    assert overall["baseline_median"] == 2.0 and overall["candidate_median"] == 1.5
    assert overall["candidate_better_fraction"] == pytest.approx(4 / 6)


def test_compare_series_higher_is_better_and_alignment_on_shared_steps():
    baseline = pd.Series([0.5, 0.5, 0.5], index=[0, 1, 2])
    candidate = pd.Series([0.9, 0.1, np.nan, 0.7], index=[0, 1, 2, 3])

    result = analysis.compare_series(baseline, candidate, num_phases=1, lower_is_better=False)

    assert result["steps"] == 2  # step 2 (NaN) and step 3 (baseline missing) are dropped
    assert result["overall"]["candidate_better_fraction"] == 0.5


def _smoothness(preset_values: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    rows = []
    for preset, pairs in preset_values.items():
        for step, (low, high) in enumerate(pairs):
            rows.append({"preset": preset, "step": step, "probe_loss_min": low, "probe_loss_max": high,
                         "grad_diff_min": low, "grad_diff_max": high, "beta_smoothness": high})
    return pd.DataFrame(rows)


def test_loss_landscape_compares_ranges_per_preset():
    baseline = _smoothness({"blog": [(1.0, 3.0), (1.0, 2.0), (1.0, 5.0)], "paper": [(0.0, 1.0)] * 3})
    candidate = _smoothness({"blog": [(1.0, 1.5), (1.0, 2.5), (1.0, 1.1)], "paper": [(0.0, 2.0)] * 3})

    table, summary = analysis.analyze_loss_landscape({"baseline": baseline, "candidate": candidate}, num_phases=3)

    blog = summary["presets"]["blog"]["overall"]
    assert blog["baseline_median"] == 2.0  # ranges 2, 1, 4
    assert blog["candidate_median"] == pytest.approx(0.5)  # ranges .5, 1.5, .1
    assert blog["candidate_better_fraction"] == pytest.approx(2 / 3)
    assert summary["presets"]["paper"]["overall"]["ratio"] == 2.0
    assert list(table.columns) == analysis.TIDY_COLUMNS
    ranges = table[(table.metric == "loss_range") & (table.model == "candidate") & (table.preset == "blog")]
    np.testing.assert_allclose(ranges["value"], [0.5, 1.5, 0.1])


def test_channel_shift_matches_naive_loop():
    rng = np.random.default_rng(0)
    means, variances = rng.normal(size=(4, 5)), rng.random(size=(4, 5))
    histograms = {"steps": np.array([0, 10, 20, 30]),
                  "layers": {"conv_0": {"channel_mean": means, "channel_var": variances}}}

    shift = analysis.channel_shift(histograms)

    for k in range(1, 4):
        row = shift[shift.step == 10 * k].iloc[0]
        naive_mu = sum(abs(means[k, c] - means[k - 1, c]) for c in range(5)) / 5
        naive_var = sum(abs(variances[k, c] - variances[k - 1, c]) for c in range(5)) / 5
        assert row["delta_mu"] == pytest.approx(naive_mu, rel=1e-12)
        assert row["delta_var"] == pytest.approx(naive_var, rel=1e-12)


def test_init_distance_summary_uses_final_step():
    def frame(values, norms):
        return pd.DataFrame({"step": [0, 0, 5, 5], "layer": ["conv_0", "fc1"] * 2,
                             "abs": values, "rel": np.array(values) / 10, "norm": norms,
                             "angle": [0.0, 0.0, 0.5, 0.25], "effective_lr": 0.1 / np.square(norms),
                             **{k: np.nan for k in ("gamma", "sigma", "gamma_over_sigma")}})

    table, summary = analysis.analyze_init_distance(
        {"baseline": frame([0.0, 0.0, 4.0, 1.0], [10.0, 10.0, 12.0, 10.0]),
         "candidate": frame([0.0, 0.0, 2.0, 3.0], [10.0, 10.0, 30.0, 10.0])})

    assert summary["final_step"] == 5
    assert summary["layers"]["conv_0"]["ratio_abs"] == 0.5
    assert summary["fraction_layers_candidate_closer"] == 0.5
    # ||W_5|| / ||W_0|| per layer, against the step-0 norm of the same layer
    assert summary["layers"]["conv_0"]["candidate_norm_growth"] == 3.0
    assert summary["layers"]["conv_0"]["baseline_norm_growth"] == 1.2
    assert summary["layers"]["fc1"]["candidate_angle"] == 0.25
    growth = table[(table["metric"] == "norm_growth") & (table["model"] == "candidate")]
    assert growth["value"].tolist() == [1.0, 1.0, 3.0, 1.0]


def test_missing_model_is_a_clear_error():
    with pytest.raises(ValueError, match="missing \\['candidate'\\]"):
        analysis.analyze_init_distance({"baseline": pd.DataFrame()})
