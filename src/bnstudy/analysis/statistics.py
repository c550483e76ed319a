"""Statistics that turn per-seed measurements into honest conclusions (numpy/pandas/scipy only).

* **Across seeds**: :func:`seed_interval` (Student-t) and :func:`bootstrap_interval` (BCa)
  give a mean and a confidence interval over the seeds' values.
* **Paired comparisons**: :func:`paired_comparison` compares candidate and baseline run with
  the same seeds, as a geometric-mean ratio or a mean difference, with a paired t-test (and a
  Wilcoxon signed-rank p-value beside it), and :meth:`PairedComparison.describe` words it.
* **Families of claims**: :func:`holm_adjusted` controls the family-wise error of several
  claims tested at once; :func:`detectable_effect` says how large an effect the seeds could
  have detected.
* **Traces**: :func:`smooth`, stalled (chance-level) phases, training phases, first crossings
  of a loss level and measurements compared at matched loss rather than at matched step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import integrate, optimize, stats

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


# ----------------------------------------------------------------------------- across seeds


@dataclass(frozen=True)
class SeedInterval:
    """Mean of a measurement across seeds with a confidence interval.

    Attributes:
        values: The finite values the interval was computed from (NaN dropped).
        n: Number of finite values.
        mean: Their mean (NaN when ``n == 0``).
        low: Lower end of the interval (NaN when there is no interval).
        high: Upper end of the interval (NaN when there is no interval).
        method: How the interval was computed.
    """

    values: tuple[float, ...]
    n: int
    mean: float
    low: float
    high: float
    method: str


def _finite_values(values: ArrayLike) -> FloatArray:
    """1-d float array of ``values`` with NaN entries dropped."""
    array = np.asarray(values, dtype=float).ravel()
    return array[~np.isnan(array)]


def _t_interval(effects: FloatArray, confidence: float) -> tuple[float, float, float]:
    """Mean and Student-t interval of ``effects`` (n >= 2); collapses to the mean if sd is 0."""
    mean = float(np.mean(effects))
    sem = float(stats.sem(effects))
    if sem == 0.0 or np.ptp(effects) == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, df=effects.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def seed_interval(values: ArrayLike, confidence: float = 0.95) -> SeedInterval:
    """Student-t confidence interval of the mean across seeds.

    Args:
        values: One value per seed; NaN values are dropped.
        confidence: Confidence level of the interval.

    Returns:
        The interval, ``method="t"``. With one finite value the interval is NaN
        (``method="t (n=1: no interval)"``); with none, everything is NaN. When all values
        are equal the interval collapses to the mean.
    """
    finite = _finite_values(values)
    kept = tuple(float(v) for v in finite)
    if finite.size == 0:
        return SeedInterval(kept, 0, np.nan, np.nan, np.nan, "t (n=0: no data)")
    if finite.size == 1:
        return SeedInterval(kept, 1, kept[0], np.nan, np.nan, "t (n=1: no interval)")
    mean, low, high = _t_interval(finite, confidence)
    return SeedInterval(kept, finite.size, mean, low, high, "t")


def bootstrap_interval(values: ArrayLike, confidence: float = 0.95, n_resamples: int = 10_000,
                       seed: int = 0) -> SeedInterval:
    """BCa bootstrap confidence interval of the mean across seeds.

    Args:
        values: One value per seed; NaN values are dropped.
        confidence: Confidence level of the interval.
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling generator (the result is deterministic given it).

    Returns:
        The interval, ``method="bootstrap BCa"``. With fewer than 3 finite values the interval
        is NaN; when all values are equal it collapses to the mean.
    """
    finite = _finite_values(values)
    kept = tuple(float(v) for v in finite)
    mean = float(np.mean(finite)) if finite.size else np.nan
    if finite.size < 3:
        method = f"bootstrap BCa (n={finite.size}: no interval, needs n >= 3)"
        return SeedInterval(kept, finite.size, mean, np.nan, np.nan, method)
    if np.ptp(finite) == 0.0:
        return SeedInterval(kept, finite.size, mean, mean, mean, "bootstrap BCa")
    result = stats.bootstrap((finite,), np.mean, n_resamples=n_resamples,
                             confidence_level=confidence, method="BCa",
                             rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return SeedInterval(kept, finite.size, mean, float(ci.low), float(ci.high), "bootstrap BCa")


# ----------------------------------------------------------------------------- paired


def three_digits(value: float) -> str:
    """``value`` with 3 significant digits, trailing zeros kept (``0.0700``, ``0.00489``,
    ``1.00``, ``135``), so that an estimate and its interval read in one format."""
    if not np.isfinite(value):
        return str(value)
    text = f"{value:#.3g}"
    return text[:-1] if text.endswith(".") else text


def _format_p(p_value: float) -> str:
    """``p = x`` with 2 significant digits, or ``p < 0.001``."""
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


@dataclass(frozen=True)
class PairedComparison:
    """Candidate vs baseline over seeds, each seed giving one pair.

    Attributes:
        kind: ``"ratio"`` (geometric-mean ratio candidate / baseline) or ``"difference"``
            (mean of candidate - baseline).
        n: Number of pairs used (pairs with a NaN side are dropped).
        per_seed: Per-pair effect: log ratio for ``"ratio"``, difference for ``"difference"``.
        estimate: Geometric-mean ratio (``exp`` of the mean log ratio) or mean difference.
        low: Lower end of the t interval, on the same scale as ``estimate``.
        high: Upper end of the t interval, on the same scale as ``estimate``.
        p_value: Two-sided paired t-test p-value (NaN when ``n < 2``). When every pair has
            exactly the same effect the standard deviation is 0: the interval collapses to the
            estimate and ``p_value`` is 0.0 if the effect is not null (1.0 if it is).
        test: Name of the test.
        significant: ``p_value < 1 - confidence`` and ``n >= 2``.
        wilcoxon_p: Wilcoxon signed-rank p-value on the effects (NaN when ``n < 2`` or all
            effects are 0).
    """

    kind: str
    n: int
    per_seed: tuple[float, ...]
    estimate: float
    low: float
    high: float
    p_value: float
    test: str
    significant: bool
    wilcoxon_p: float

    def describe(self, lower_is: str = "lower for BN", higher_is: str = "higher for BN") -> str:
        """One-sentence wording of the comparison.

        Args:
            lower_is: Direction phrase when the candidate is significantly lower.
            higher_is: Direction phrase when the candidate is significantly higher.

        Returns:
            E.g. ``"ratio 0.41 [0.33, 0.52], lower for BN, significant across 5 seeds
            (paired t-test on log ratios, p = 0.004)"``, ``"ratio 0.95 [0.71, 1.27]: no
            significant difference across 5 seeds (p = 0.62)"`` or ``"ratio 0.95 from a
            single seed: no interval, not testable"``.
        """
        if self.n == 0:
            return f"{self.kind}: no seed measured both models, not testable"
        if self.n == 1:
            return (f"{self.kind} {three_digits(self.estimate)} from a single seed: no interval, "
                    "not testable")
        head = (f"{self.kind} {three_digits(self.estimate)} "
                f"[{three_digits(self.low)}, {three_digits(self.high)}]")
        if not self.significant:
            return (f"{head}: no significant difference across {self.n} seeds "
                    f"({_format_p(self.p_value)})")
        null = 1.0 if self.kind == "ratio" else 0.0
        direction = lower_is if self.estimate < null else higher_is
        return (f"{head}, {direction}, significant across {self.n} seeds "
                f"({self.test}, {_format_p(self.p_value)})")


def _paired_effects(candidate: ArrayLike, baseline: ArrayLike, kind: str) -> FloatArray:
    """Per-pair effects with NaN pairs dropped; ValueError naming the seed of a bad pair."""
    cand = np.asarray(candidate, dtype=float).ravel()
    base = np.asarray(baseline, dtype=float).ravel()
    if cand.shape != base.shape:
        raise ValueError(f"candidate has {cand.size} seeds but baseline has {base.size}")
    keep = ~(np.isnan(cand) | np.isnan(base))
    for index in np.flatnonzero(keep):
        c, b = cand[index], base[index]
        if not (np.isfinite(c) and np.isfinite(b)):
            raise ValueError(f"seed {index}: non-finite pair candidate={c}, baseline={b}")
        if kind == "ratio" and (c <= 0 or b <= 0):
            raise ValueError(f"seed {index}: a ratio needs both values > 0, got "
                             f"candidate={c}, baseline={b}")
    cand, base = cand[keep], base[keep]
    return np.log(cand / base) if kind == "ratio" else cand - base


def _wilcoxon_p(effects: FloatArray) -> float:
    """Wilcoxon signed-rank p-value, NaN when ``n < 2`` or every effect is 0."""
    if effects.size < 2 or not np.any(effects != 0):
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(effects).pvalue)


def paired_comparison(candidate: ArrayLike, baseline: ArrayLike, *,
                      kind: Literal["ratio", "difference"] = "ratio",
                      confidence: float = 0.95) -> PairedComparison:
    """Paired comparison of candidate vs baseline, ``candidate[i]`` and ``baseline[i]`` from seed i.

    ``kind="ratio"``: effects are ``log(candidate / baseline)``; the t interval on their mean
    is exponentiated back (geometric-mean ratio), and the p-value is the paired t-test on the
    logs. ``kind="difference"``: effects are ``candidate - baseline`` and the p-value is
    ``scipy.stats.ttest_rel``'s. Pairs where either side is NaN are dropped.

    Args:
        candidate: One value per seed for the candidate model.
        baseline: One value per seed for the baseline model, same seeds in the same order.
        kind: ``"ratio"`` or ``"difference"``.
        confidence: Confidence level of the interval; significance is ``p < 1 - confidence``.

    Returns:
        The comparison (see :class:`PairedComparison` for the degenerate cases).

    Raises:
        ValueError: If ``kind`` is unknown, the lengths differ, a kept pair is infinite, or
            (ratio) a kept pair has a value <= 0; the message names the seed index.
    """
    if kind not in ("ratio", "difference"):
        raise ValueError(f"kind must be 'ratio' or 'difference', got {kind!r}")
    effects = _paired_effects(candidate, baseline, kind)
    n = int(effects.size)
    test = "paired t-test on log ratios" if kind == "ratio" else "paired t-test"
    back = np.exp if kind == "ratio" else (lambda x: x)
    if n == 0:
        return PairedComparison(kind, 0, (), np.nan, np.nan, np.nan, np.nan, test, False, np.nan)
    if n == 1:
        return PairedComparison(kind, 1, (float(effects[0]),), float(back(effects[0])), np.nan,
                                np.nan, np.nan, test, False, np.nan)
    mean, low, high = _t_interval(effects, confidence)
    if np.ptp(effects) == 0.0:
        p_value = 0.0 if mean != 0.0 else 1.0
    else:
        p_value = float(stats.ttest_1samp(effects, 0.0).pvalue)
    return PairedComparison(
        kind=kind, n=n, per_seed=tuple(float(e) for e in effects), estimate=float(back(mean)),
        low=float(back(low)), high=float(back(high)), p_value=p_value, test=test,
        significant=bool(p_value < 1.0 - confidence), wilcoxon_p=_wilcoxon_p(effects))


# ----------------------------------------------------------------------------- families of tests


def holm_adjusted(p_values: ArrayLike) -> FloatArray:
    """Holm's step-down adjustment of a family of p-values (family-wise error control).

    With the m finite p-values sorted, p_(1) <= ... <= p_(m), the adjusted value of the i-th is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))`` (Holm 1979). Rejecting where the adjusted p is
    below alpha keeps the chance of any false rejection in the family at most alpha, whatever
    the dependence between the tests. scipy.stats offers only false-discovery-rate control
    (``false_discovery_control``), a weaker guarantee, hence this function.

    Args:
        p_values: The raw p-values of the family, in any order; NaN (an untested claim, e.g.
            one seed) is not part of the family and stays NaN.

    Returns:
        The adjusted p-values in the input's order.
    """
    raw = np.asarray(p_values, dtype=float).ravel()
    adjusted = np.full(raw.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(raw))
    order = tested[np.argsort(raw[tested], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * raw[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def detectable_effect(per_seed: ArrayLike, *, kind: Literal["ratio", "difference"] = "ratio",
                      alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest effect a two-sided paired t-test on these seeds detects with ``power``.

    The test's power at a true mean effect delta is that of the noncentral t with n - 1
    degrees of freedom and noncentrality ``delta / sd * sqrt(n)``, ``sd`` being the per-seed
    effects' standard deviation (the noise these seeds showed). Solving power = ``power`` for
    delta gives the detectable effect: at alpha 0.05 and power 0.8, about 11.5 sd with 2
    seeds, 3.3 sd with 3, 1.7 sd with 5 and 1.0 sd with 10.

    Args:
        per_seed: The per-seed effects (:attr:`PairedComparison.per_seed`: log ratios for
            ``"ratio"``, differences for ``"difference"``).
        kind: ``"ratio"`` returns the detectable ratio above 1 (``exp(delta)``; its inverse
            is detectable below 1), ``"difference"`` the detectable difference.
        alpha: The test's level.
        power: The power asked for.

    Returns:
        The detectable ratio or difference; NaN with fewer than 2 seeds, and the null value
        (1 or 0) when the seeds agree exactly (sd 0: any effect is detected).
    """
    effects = _finite_values(per_seed)
    n = effects.size
    if n < 2:
        return np.nan
    sd = float(np.std(effects, ddof=1))
    critical = stats.t.ppf(1.0 - alpha / 2.0, df=n - 1)

    def shortfall(d: float) -> float:
        # P(|T'| > c) for T' = (Z + nc) / sqrt(V / df), V ~ chi2(df), integrated over V
        # (scipy's nct.sf returns NaN for some large noncentralities).
        nc, df = d * np.sqrt(n), n - 1

        def rejects(v: float) -> float:
            bound = critical * np.sqrt(v / df)
            return (stats.norm.cdf(nc - bound) + stats.norm.cdf(-bound - nc)) * stats.chi2.pdf(v, df)

        return integrate.quad(rejects, 0.0, np.inf)[0] - power

    d = optimize.brentq(shortfall, 0.0, 1e3)
    delta = d * sd
    return float(np.exp(delta)) if kind == "ratio" else float(delta)


# ----------------------------------------------------------------------------- traces


def smooth(values: ArrayLike, window: int) -> FloatArray:
    """Trailing moving average, NaN-aware.

    Entry i averages the non-NaN values among ``values[max(0, i - window + 1) : i + 1]``
    (so the first entries average what is available); an all-NaN window gives NaN.

    Args:
        values: 1-d series.
        window: Window length, at least 1.

    Returns:
        The smoothed series, same length as ``values``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    array = np.asarray(values, dtype=float).ravel()
    padded = np.concatenate([np.full(window - 1, np.nan), array])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    present = ~np.isnan(windows)
    totals = np.where(present, windows, 0.0).sum(axis=1)
    counts = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


STALL_TOLERANCE = 0.01
"""The stall band's half-width around chance level, relative to ln C (:func:`stalled_mask`)."""


def stalled_mask(smoothed_loss: ArrayLike, *, num_classes: int = 10,
                 tolerance: float = STALL_TOLERANCE) -> npt.NDArray[np.bool_]:
    """Where the smoothed training loss sits at chance level (a stalled phase).

    Stalled where ``|loss - ln C| <= tolerance * ln C`` (C = ``num_classes``: the network
    predicts chance level); False where the loss is NaN.
    """
    chance = np.log(num_classes)
    loss = np.asarray(smoothed_loss, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.abs(loss - chance) <= tolerance * chance


def stalled_steps(steps: ArrayLike, smoothed_loss: ArrayLike, *, num_classes: int = 10,
                  tolerance: float = STALL_TOLERANCE) -> np.ndarray:
    """The steps at which the smoothed loss is at chance level (see :func:`stalled_mask`)."""
    mask = stalled_mask(smoothed_loss, num_classes=num_classes, tolerance=tolerance)
    return np.asarray(steps)[mask]


def leaves_plateau_step(steps: ArrayLike, smoothed_loss: ArrayLike,
                        threshold: float = 2.0) -> int | float | None:
    """First step at which the smoothed loss is below ``threshold``, ``None`` if never."""
    below = np.flatnonzero(np.asarray(smoothed_loss, dtype=float) < threshold)
    return np.asarray(steps)[below[0]].item() if below.size else None


def phase_of(steps: ArrayLike, total_steps: int) -> np.ndarray:
    """Training phase of each step: thirds of ``total_steps``.

    ``"early"`` where ``step < total / 3``, ``"middle"`` where ``step < 2 total / 3``, else
    ``"late"``.
    """
    step = np.asarray(steps, dtype=float)
    return np.where(step < total_steps / 3, "early",
                    np.where(step < 2 * total_steps / 3, "middle", "late"))


def first_crossing(steps: ArrayLike, smoothed_loss: ArrayLike, level: float) -> float:
    """Fractional step at which the smoothed loss first falls to ``level`` or below.

    NaN loss rows are ignored; the step is linearly interpolated between the last row above
    ``level`` and the first at or below it. The first step if the loss starts at or below
    ``level``; NaN if it never gets there.
    """
    step = np.asarray(steps, dtype=float).ravel()
    loss = np.asarray(smoothed_loss, dtype=float).ravel()
    keep = ~np.isnan(loss)
    step, loss = step[keep], loss[keep]
    reached = np.flatnonzero(loss <= level)
    if reached.size == 0:
        return np.nan
    i = int(reached[0])
    if i == 0:
        return float(step[0])
    fraction = (loss[i - 1] - level) / (loss[i - 1] - loss[i])
    return float(step[i - 1] + fraction * (step[i] - step[i - 1]))


def matched_loss_levels(losses_a: ArrayLike, losses_b: ArrayLike,
                        num_levels: int = 5) -> FloatArray:
    """Loss levels both curves reach, evenly spaced strictly inside their common range.

    ``hi = min(max a, max b)``, ``lo = max(min a, min b)`` (NaN ignored); the levels are
    ``linspace(hi, lo, num_levels + 2)[1:-1]``, descending.

    Returns:
        The levels, or an empty array when ``hi <= lo`` (no common range).
    """
    a = _finite_values(losses_a)
    b = _finite_values(losses_b)
    if a.size == 0 or b.size == 0:
        return np.empty(0)
    hi = min(a.max(), b.max())
    lo = max(a.min(), b.min())
    if not hi > lo:
        return np.empty(0)
    return np.linspace(hi, lo, num_levels + 2)[1:-1]


def interpolate_at_steps(steps: ArrayLike, values: ArrayLike, at_steps: ArrayLike) -> FloatArray:
    """Linear interpolation of a (sparse, NaN-containing) measurement trace at fractional steps.

    Rows where the step or the value is NaN are dropped first. NaN outside the measured step
    range or where ``at_steps`` is NaN.
    """
    step = np.asarray(steps, dtype=float).ravel()
    value = np.asarray(values, dtype=float).ravel()
    at = np.asarray(at_steps, dtype=float)
    keep = ~(np.isnan(step) | np.isnan(value))
    step, value = step[keep], value[keep]
    if step.size == 0:
        return np.full(at.shape, np.nan)
    order = np.argsort(step, kind="stable")
    return np.interp(at, step[order], value[order], left=np.nan, right=np.nan)


def at_matched_loss(loss_steps: ArrayLike, smoothed_loss: ArrayLike, measure_steps: ArrayLike,
                    measure_values: ArrayLike, levels: ArrayLike) -> FloatArray:
    """A measurement at the step where the model's smoothed loss first reaches each level.

    NaN where the loss never reaches the level or the measurement does not cover that step.
    """
    crossings = [first_crossing(loss_steps, smoothed_loss, level)
                 for level in np.asarray(levels, dtype=float).ravel()]
    return interpolate_at_steps(measure_steps, measure_values, np.asarray(crossings))


def normalized_by_gradient_norm(values: ArrayLike, grad_norm: ArrayLike) -> FloatArray:
    """``values / grad_norm``, NaN where ``grad_norm`` is <= 0 or not finite."""
    value = np.asarray(values, dtype=float)
    norm = np.asarray(grad_norm, dtype=float)
    valid = np.isfinite(norm) & (norm > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, value / np.where(valid, norm, 1.0), np.nan)
