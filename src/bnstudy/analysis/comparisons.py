"""Seed-aware comparisons of the candidate (BN) with the baseline: every conclusion of the
report comes from here, with per-seed values, a 95% t interval and a paired test.

A measurement is compared in several views, and the summary says where they disagree:

* ``overall``: per seed, the median over all compared steps; the seeds are the pairs.
* ``phases``: the same within the early / middle / late third of training.
* ``matched_loss``: each model's measurement interpolated at the steps where its smoothed
  training loss first reaches common levels (so a fast learner is not compared with a slow
  one at the same step), geometric mean over the levels.
* ``normalized``: the measurement divided by the step's gradient norm ||g_t||, where the
  measurement scales with it (the stalled baseline's gradients are ~13x smaller).

Steps at which either model of a seed is stalled (smoothed loss within 1% of ln 10) are
excluded from every view and counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.analysis import statistics as st

BASELINE, CANDIDATE = "baseline", "candidate"


def smoothed_losses(training_traces: Mapping[str, pd.DataFrame],
                    smoothing_fraction: float) -> dict[tuple[str, int], pd.Series]:
    """{(model, seed): smoothed training loss indexed by step} (trailing window of
    ``smoothing_fraction`` of the steps)."""
    curves = {}
    for model, trace in training_traces.items():
        for seed, unordered in trace.groupby("seed", sort=True):
            frame = unordered.sort_values("step")
            window = max(1, int(round(smoothing_fraction * len(frame))))
            curves[model, int(seed)] = pd.Series(st.smooth(frame["train_loss"].to_numpy(), window),
                                                 index=frame["step"].to_numpy())
    return curves


def stalled_table(curves: Mapping[tuple[str, int], pd.Series],
                  num_classes: int | None = 10) -> pd.DataFrame:
    """``seed, step, stalled``: True where either model of the seed is stalled (never
    without classes, ``num_classes=None``: a regression has no chance level)."""
    frames = []
    for seed in sorted({seed for _, seed in curves}):
        base, cand = curves[BASELINE, seed], curves[CANDIDATE, seed]
        if num_classes is None:
            stalled = np.zeros(len(base.index), bool)
        else:
            stalled = (st.stalled_mask(base.to_numpy(), num_classes=num_classes)
                       | st.stalled_mask(cand.reindex(base.index).to_numpy(),
                                         num_classes=num_classes))
        frames.append(pd.DataFrame({"seed": seed, "step": base.index, "stalled": stalled}))
    return pd.concat(frames, ignore_index=True)


def _by_seed(long: pd.DataFrame, model: str) -> dict[int, pd.DataFrame]:
    part = long[long["model"] == model]
    return {int(seed): frame.sort_values("step") for seed, frame in part.groupby("seed")}


def _paired(long: pd.DataFrame, statistic, kind: str, column: str = "value"):
    """Paired comparison of a per-seed statistic of ``column``; seeds that lack either
    model are left out."""
    base, cand = _by_seed(long, BASELINE), _by_seed(long, CANDIDATE)
    seeds = sorted(set(base) & set(cand))
    b = np.array([statistic(base[s][column].to_numpy()) for s in seeds], dtype=float)
    c = np.array([statistic(cand[s][column].to_numpy()) for s in seeds], dtype=float)
    if kind == "ratio":  # a non-positive statistic cannot enter a ratio: leave that seed out
        keep = (b > 0) & (c > 0)
        b, c = np.where(keep, b, np.nan), np.where(keep, c, np.nan)
    return st.paired_comparison(c, b, kind=kind), seeds


def _median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def _geomean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values) & (values > 0)]
    return float(np.exp(np.mean(np.log(finite)))) if finite.size else float("nan")


def _view(comparison: st.PairedComparison, words: tuple[str, str]) -> dict[str, Any]:
    return {
        "n": comparison.n, "per_seed": list(comparison.per_seed), "estimate": comparison.estimate,
        "low": comparison.low, "high": comparison.high, "p_value": comparison.p_value,
        "wilcoxon_p": comparison.wilcoxon_p, "test": comparison.test, "kind": comparison.kind,
        "significant": comparison.significant,
        "direction": _direction(comparison),
        "text": comparison.describe(lower_is=words[0], higher_is=words[1]),
    }


def _direction(comparison: st.PairedComparison) -> str:
    if not comparison.significant:
        return "none"
    neutral = 1.0 if comparison.kind == "ratio" else 0.0
    return "lower" if comparison.estimate < neutral else "higher"


def _matched(long: pd.DataFrame, curves, kind: str) -> st.PairedComparison:
    base, cand = _by_seed(long, BASELINE), _by_seed(long, CANDIDATE)
    values = {BASELINE: [], CANDIDATE: []}
    for seed in sorted(set(base) & set(cand)):
        levels = st.matched_loss_levels(curves[BASELINE, seed].to_numpy(),
                                        curves[CANDIDATE, seed].to_numpy())
        for model, frames in ((BASELINE, base), (CANDIDATE, cand)):
            curve = curves[model, seed]
            at = st.at_matched_loss(curve.index.to_numpy(), curve.to_numpy(),
                                    frames[seed]["step"].to_numpy(),
                                    frames[seed]["value"].to_numpy(), levels)
            values[model].append(_geomean(at) if kind == "ratio" else float(np.nanmean(at))
                                 if np.isfinite(at).any() else float("nan"))
    return st.paired_comparison(np.array(values[CANDIDATE]), np.array(values[BASELINE]),
                                kind=kind)


def compare_measure(long: pd.DataFrame, curves, stalled: pd.DataFrame, total_steps: int, *,
                    kind: str = "ratio", words: tuple[str, str] = ("lower for BN",
                                                                   "higher for BN"),
                    normalize: bool = False) -> dict[str, Any]:
    """All views of one measurement.

    Args:
        long: ``model, seed, step, value`` (and ``grad_norm`` when ``normalize``).
        curves: :func:`smoothed_losses`; stalled: :func:`stalled_table`.
        total_steps: T (for the thirds of training).
        kind: "ratio" (positive measures) or "difference" (e.g. cosines).
        words: how to say a significant lower / higher candidate value.
        normalize: add the view divided by ||g_t||.
    """
    merged = long.merge(stalled, on=["seed", "step"], how="left")
    excluded = merged["stalled"].fillna(False).astype(bool)
    kept = merged[~excluded]
    result = {
        "excluded_stalled_rows": int(excluded.sum()),
        "rows": int(len(kept)),
        "overall": _view(_paired(kept, _median, kind)[0], words),
        "phases": {},
    }
    phases = st.phase_of(kept["step"].to_numpy(), total_steps)
    for phase in ("early", "middle", "late"):
        result["phases"][phase] = _view(_paired(kept[phases == phase], _median, kind)[0], words)
    result["matched_loss"] = _view(_matched(long, curves, kind), words)
    if normalize:
        scaled = kept.assign(value=st.normalized_by_gradient_norm(kept["value"].to_numpy(),
                                                                  kept["grad_norm"].to_numpy()))
        result["normalized"] = _view(_paired(scaled, _median, kind)[0], words)
    result["disagreement"] = disagreement(result)
    return result


def disagreement(result: Mapping[str, Any]) -> str:
    """A sentence naming the views whose significant verdicts differ, "" unless two views
    are significant in opposite directions. A view without a significant difference does not
    contradict a significant one (it lacks the power to decide), so it is only counted."""
    views = {"overall": result["overall"], "matched loss": result["matched_loss"]}
    if "normalized" in result:
        views["normalized by ||g||"] = result["normalized"]
    views.update({f"{phase} third": view for phase, view in result["phases"].items()})
    directions = {name: view["direction"] for name, view in views.items()
                  if view["n"] >= 2 and view["direction"] != "none"}
    if len(set(directions.values())) <= 1:
        return ""
    parts = [f"{name}: {direction}" for name, direction in directions.items()]
    undecided = sum(view["n"] >= 2 and view["direction"] == "none" for view in views.values())
    rest = f"; {undecided} other view(s) not significant" if undecided else ""
    return "significant views disagree (" + "; ".join(parts) + rest + ")"


def final_values(frames: Mapping[str, pd.DataFrame], column: str, *,
                 kind: str = "ratio", words: tuple[str, str] = ("lower for BN",
                                                                "higher for BN"),
                 aggregate=_geomean) -> dict[str, Any]:
    """Paired comparison of one value per seed taken at each model's last step (e.g. the
    distance from initialization, aggregated over layers, or the final test accuracy)."""
    rows = []
    for model, frame in frames.items():
        last = frame[frame["step"] == frame["step"].max()]
        for seed, part in last.groupby("seed"):
            rows.append({"model": model, "seed": int(seed), "step": 0,
                         "value": aggregate(part[column].to_numpy(dtype=float))})
    comparison, _ = _paired(pd.DataFrame(rows), lambda v: float(v[0]), kind)
    return {"overall": _view(comparison, words)}
