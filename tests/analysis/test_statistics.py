"""bnstudy.analysis.statistics against hand computations, scipy and naive loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bnstudy.analysis import statistics as st

# ----------------------------------------------------------------------------- across seeds


def test_seed_interval_matches_hand_computation():
    values = np.array([1.3, 0.7, 2.1, 1.8, 0.9])
    n = values.size
    mean = values.mean()
    half = sps.t.ppf(0.975, df=n - 1) * values.std(ddof=1) / math.sqrt(n)

    result = st.seed_interval(values)

    assert result.n == n and result.method == "t"
    assert result.mean == pytest.approx(mean, abs=1e-12)
    assert result.low == pytest.approx(mean - half, abs=1e-12)
    assert result.high == pytest.approx(mean + half, abs=1e-12)


def test_seed_interval_drops_nan_and_handles_tiny_samples():
    dropped = st.seed_interval([1.0, np.nan, 3.0])
    assert dropped.n == 2 and dropped.values == (1.0, 3.0) and dropped.mean == 2.0

    single = st.seed_interval([np.nan, 4.0])
    assert single.n == 1 and single.mean == 4.0
    assert math.isnan(single.low) and math.isnan(single.high)
    assert single.method == "t (n=1: no interval)"

    empty = st.seed_interval([np.nan])
    assert empty.n == 0 and all(math.isnan(x) for x in (empty.mean, empty.low, empty.high))


def test_seed_interval_coverage_is_nominal():
    # n = 5 seeds: a normal-quantile (z) interval would cover only ~88%, the t interval 95%.
    rng = np.random.default_rng(1234)
    true_mean = 3.0
    samples = rng.normal(true_mean, 2.0, size=(2000, 5))

    covered = [(r := st.seed_interval(row)).low <= true_mean <= r.high for row in samples]

    assert 0.93 <= np.mean(covered) <= 0.97


def test_bootstrap_interval_close_to_t_on_large_normal_sample():
    values = np.random.default_rng(7).normal(10.0, 3.0, size=400)
    t_interval = st.seed_interval(values)
    width = t_interval.high - t_interval.low

    boot = st.bootstrap_interval(values)

    assert "BCa" in boot.method
    assert abs(boot.low - t_interval.low) < 0.1 * width
    assert abs(boot.high - t_interval.high) < 0.1 * width
    assert boot.low < boot.mean < boot.high
    assert math.isnan(st.bootstrap_interval([1.0, 2.0]).low)


# ----------------------------------------------------------------------------- paired


def test_paired_difference_p_value_matches_ttest_rel():
    rng = np.random.default_rng(3)
    baseline = rng.normal(1.0, 0.5, size=6)
    candidate = baseline + rng.normal(0.3, 0.4, size=6)

    result = st.paired_comparison(candidate, baseline, kind="difference")

    expected = sps.ttest_rel(candidate, baseline)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-12)
    assert result.estimate == pytest.approx(np.mean(candidate - baseline), abs=1e-12)
    assert result.wilcoxon_p == pytest.approx(sps.wilcoxon(candidate - baseline).pvalue)
    assert result.low < result.estimate < result.high


def test_paired_ratio_p_value_matches_ttest_rel_on_logs():
    rng = np.random.default_rng(4)
    baseline = rng.uniform(0.5, 2.0, size=7)
    candidate = baseline * np.exp(rng.normal(-0.2, 0.3, size=7))

    result = st.paired_comparison(candidate, baseline, kind="ratio")

    logs = np.log(candidate) - np.log(baseline)
    assert result.p_value == pytest.approx(
        sps.ttest_rel(np.log(candidate), np.log(baseline)).pvalue, abs=1e-12)
    assert result.estimate == pytest.approx(np.exp(logs.mean()), rel=1e-12)
    half = sps.t.ppf(0.975, df=6) * logs.std(ddof=1) / math.sqrt(7)
    assert result.low == pytest.approx(np.exp(logs.mean() - half), rel=1e-12)
    assert result.high == pytest.approx(np.exp(logs.mean() + half), rel=1e-12)


def test_constant_ratio_collapses_interval_and_gives_p_zero():
    baseline = np.array([1.0, 2.0, 4.0, 8.0])
    result = st.paired_comparison(baseline * 0.5, baseline)

    assert result.estimate == 0.5 and result.low == 0.5 and result.high == 0.5
    assert result.p_value == 0.0 and result.significant

    null = st.paired_comparison(baseline, baseline)
    assert null.estimate == 1.0 and null.p_value == 1.0 and not null.significant


def test_synthetic_effect_is_significant_and_worded():
    rng = np.random.default_rng(11)
    baseline = rng.uniform(1.0, 3.0, size=5)
    candidate = baseline * 0.4 * np.exp(rng.normal(0.0, 0.02, size=5))

    result = st.paired_comparison(candidate, baseline)
    text = result.describe()

    assert result.significant and result.n == 5
    assert result.estimate == pytest.approx(0.4, rel=0.05)
    assert "lower for BN" in text and "significant across 5 seeds" in text
    assert "paired t-test on log ratios" in text
    assert "higher for BN" in st.paired_comparison(baseline, candidate).describe()


def test_no_effect_is_worded_as_no_significant_difference():
    rng = np.random.default_rng(12)
    baseline = rng.uniform(1.0, 3.0, size=5)
    candidate = baseline * np.exp(rng.normal(0.0, 0.3, size=5))

    result = st.paired_comparison(candidate, baseline)

    assert not result.significant
    assert "no significant difference across 5 seeds" in result.describe()
    assert "for BN" not in result.describe()


def test_describe_formats_numbers():
    result = st.PairedComparison("ratio", 5, (), 0.41234, 0.33333, 0.52222, 0.0041234,
                                 "paired t-test on log ratios", True, 0.06)
    assert result.describe() == ("ratio 0.412 [0.333, 0.522], lower for BN, significant across "
                                 "5 seeds (paired t-test on log ratios, p = 0.0041)")
    tiny = st.PairedComparison("difference", 3, (), 2.0, 1.5, 2.5, 1e-5, "paired t-test", True,
                               0.2)
    assert tiny.describe(higher_is="slower with BN").endswith(
        "slower with BN, significant across 3 seeds (paired t-test, p < 0.001)")


def test_single_seed_and_nan_pairs():
    single = st.paired_comparison([0.95, np.nan], [1.0, 2.0])
    assert single.n == 1 and single.estimate == pytest.approx(0.95)
    assert single.describe() == "ratio 0.950 from a single seed: no interval, not testable"
    assert not single.significant and math.isnan(single.p_value)

    candidate = np.array([1.0, np.nan, 2.5, 3.0, 0.5])
    baseline = np.array([1.5, 1.0, np.nan, 2.0, 0.7])
    dropped = st.paired_comparison(candidate, baseline, kind="difference")
    assert dropped.n == 3
    assert dropped.per_seed == pytest.approx((-0.5, 1.0, -0.2))
    expected = sps.ttest_rel([1.0, 3.0, 0.5], [1.5, 2.0, 0.7]).pvalue
    assert dropped.p_value == pytest.approx(expected, abs=1e-12)


def test_non_positive_ratio_names_the_seed():
    with pytest.raises(ValueError, match="seed 2"):
        st.paired_comparison([1.0, 2.0, -1.0, 3.0], [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="seed 0"):
        st.paired_comparison([1.0, 2.0], [0.0, 1.0])


# ----------------------------------------------------------------------------- traces


def test_smooth_matches_naive_loop_with_nan():
    rng = np.random.default_rng(5)
    values = rng.normal(size=60)
    values[rng.choice(60, size=15, replace=False)] = np.nan
    values[20:25] = np.nan  # an all-NaN window of 4 inside
    window = 4

    naive = []
    for i in range(values.size):
        chunk = [v for v in values[max(0, i - window + 1) : i + 1] if not math.isnan(v)]
        naive.append(sum(chunk) / len(chunk) if chunk else math.nan)

    np.testing.assert_allclose(st.smooth(values, window), naive, rtol=1e-12, equal_nan=True)
    assert math.isnan(st.smooth(values, window)[23])


def test_stalled_mask_finds_exactly_the_plateau():
    rng = np.random.default_rng(6)
    chance = math.log(10)
    plateau = chance * (1 + rng.uniform(-0.005, 0.005, size=100))
    drop = np.linspace(2.2, 0.5, 50)
    loss = np.concatenate([plateau, drop])
    steps = np.arange(loss.size)

    mask = st.stalled_mask(loss)

    assert mask[:100].all() and not mask[100:].any()
    np.testing.assert_array_equal(st.stalled_steps(steps, loss), np.arange(100))
    assert not st.stalled_mask(np.array([2.5])).any()
    assert st.leaves_plateau_step(steps, loss) == 100 + int(np.argmax(drop < 2.0))
    assert st.leaves_plateau_step(steps, plateau) is None


def test_phase_of_boundaries():
    phases = st.phase_of([0, 99, 100, 199, 200, 299], 300)
    assert phases.tolist() == ["early", "early", "middle", "middle", "late", "late"]
    assert st.phase_of([33, 34], 100).tolist() == ["early", "middle"]


def test_first_crossing_and_at_matched_loss_known_values():
    steps = np.arange(0, 101, 10.0)
    loss = 2.3 - 0.01 * steps
    assert st.first_crossing(steps, loss, 1.8) == pytest.approx(50.0, abs=1e-9)
    assert st.first_crossing(steps, loss, 1.75) == pytest.approx(55.0, abs=1e-9)
    assert st.first_crossing(steps, loss, 2.5) == 0.0
    assert math.isnan(st.first_crossing(steps, loss, 1.0))

    measure_steps = np.array([0.0, 20.0, 40.0, 60.0, 80.0])
    measure_values = 3.0 + 0.5 * measure_steps
    values = st.at_matched_loss(steps, loss, measure_steps, measure_values, [1.8, 1.75, 1.0])
    assert values[:2] == pytest.approx([3.0 + 0.5 * 50, 3.0 + 0.5 * 55], abs=1e-9)
    assert math.isnan(values[2])


def test_interpolation_ignores_nan_rows_and_is_nan_outside():
    steps = np.array([0.0, 10.0, 20.0, 30.0])
    values = np.array([0.0, 1000.0, np.nan, 30.0])
    values[1] = np.nan
    result = st.interpolate_at_steps(steps, values, [15.0, -1.0, 31.0, 30.0])
    assert result[0] == pytest.approx(15.0, abs=1e-12)
    assert math.isnan(result[1]) and math.isnan(result[2]) and result[3] == 30.0


def test_matched_levels_lie_strictly_inside_both_ranges():
    a = np.array([2.3, 2.0, 1.5, 1.0, 0.8])
    b = np.array([2.1, np.nan, 1.9, 1.2, 1.1])
    levels = st.matched_loss_levels(a, b, num_levels=4)

    assert levels.size == 4
    assert np.all((levels < 2.1) & (levels > 1.1))
    np.testing.assert_allclose(levels, [1.9, 1.7, 1.5, 1.3])
    assert st.matched_loss_levels([3.0, 2.5], [2.0, 1.0]).size == 0


def test_normalized_by_gradient_norm():
    result = st.normalized_by_gradient_norm([2.0, 2.0, 2.0, 2.0, 2.0],
                                            [4.0, 0.0, -1.0, np.inf, np.nan])
    assert result[0] == 0.5 and np.isnan(result[1:]).all()


# ----------------------------------------------------------------------------- families of tests


def test_holm_adjusted_equals_the_hand_computed_example():
    """p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03,
    0.03 * 2 = 0.06, 0.04 * 1 = 0.04 raised to the running maximum 0.06."""
    np.testing.assert_allclose(st.holm_adjusted([0.01, 0.04, 0.03, 0.005]),
                               [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    # an untested claim (NaN) is not part of the family: m = 2 here
    adjusted = st.holm_adjusted([0.01, np.nan, 0.04])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.04], rtol=1e-12)
    assert np.isnan(adjusted[1])
    # capped at 1, and never below the raw p
    np.testing.assert_array_equal(st.holm_adjusted([0.6, 0.7]), [1.0, 1.0])


def test_holm_controls_the_family_wise_error_where_raw_p_does_not():
    """Five true nulls (uniform p) in 20,000 families: some raw p < 0.05 in about
    1 - 0.95^5 = 23% of them; some Holm-adjusted p < 0.05 in at most 5% (+ 3 MC errors)."""
    p = np.random.default_rng(1).uniform(size=(20_000, 5))
    raw = np.mean((p < 0.05).any(axis=1))
    holm = np.mean([(st.holm_adjusted(row) < 0.05).any() for row in p])
    assert abs(raw - (1 - 0.95 ** 5)) < 0.01
    assert holm <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 20_000)


@pytest.mark.parametrize("n", [3, 5])
def test_detectable_effect_has_the_stated_power_by_simulation(n):
    """A paired t-test on n seeds whose log ratios are N(log r, sd^2), r the detectable ratio
    for that sd, rejects in 80% of 40,000 simulated studies (to 4 Monte-Carlo errors)."""
    effects = np.array([0.1, -0.05, 0.2, 0.0, 0.12])[:n]
    ratio = st.detectable_effect(effects, kind="ratio")
    sd = effects.std(ddof=1)
    rng = np.random.default_rng(2)
    simulated = rng.normal(np.log(ratio), sd, size=(40_000, n))
    p = sps.ttest_1samp(simulated, 0.0, axis=1).pvalue
    assert abs(np.mean(p < 0.05) - 0.8) < 4 * np.sqrt(0.8 * 0.2 / 40_000)
    # the difference form is the same delta, unexponentiated
    assert math.isclose(st.detectable_effect(effects, kind="difference"), np.log(ratio),
                        rel_tol=1e-9)


def test_detectable_effect_degenerate_cases():
    assert np.isnan(st.detectable_effect([0.3]))
    assert st.detectable_effect([0.2, 0.2, 0.2]) == 1.0  # sd 0: any effect is detected


def test_one_number_format_for_an_estimate_and_its_interval():
    """Issue 24: "0.07 [0.00489, 0.135]" mixed formats; every number now has 3 significant
    digits, trailing zeros kept."""
    assert [st.three_digits(v) for v in (0.07, 0.00489, 0.135, 1.0, 135.0, 12.0, -0.5)] == [
        "0.0700", "0.00489", "0.135", "1.00", "135", "12.0", "-0.500"]
    comparison = st.paired_comparison([0.07, 0.07 * 1.01, 0.07 * 0.99], [1.0, 1.0, 1.0])
    head = comparison.describe().split(",")[0]
    estimate, low = head.split(" ")[1], head.split("[")[1]
    assert all(len(number.lstrip("0.").replace(".", "")) == 3 for number in (estimate, low))
