"""Diverged seeds are left out of every statistic and figure, and said to be.

A seed *diverges* at its first non-finite loss or gradient (the core freezes it there). Its
traces carry ``diverged`` = True from that step on, and ``diverged_at`` = that step on
every row of the seed (-1 for a healthy seed). Its values before that step are valid
measurements of a run that then failed, so averaging them with healthy seeds would compare a
different population at each step; and a seed is a *pair* (the same seed in both models), so a
pair is left out of the comparisons when either of its models diverged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd


def diverged_at(frame: pd.DataFrame) -> dict[int, int]:
    """``{seed: step it diverged at}`` of a trace with ``seed`` and ``diverged_at`` columns
    (-1 for a healthy seed; every row of a seed carries it, so a trace says so even where it
    has no row after the step). An empty dict for a trace without them."""
    if frame is None or "diverged_at" not in getattr(frame, "columns", ()) or frame.empty:
        return {}
    steps = frame.groupby("seed")["diverged_at"].first()
    return {int(seed): int(step) for seed, step in steps.items() if step >= 0}


def record_divergence(run_record: Mapping[str, Any]) -> dict[str, int]:
    """``{seed: step it diverged at}`` from a run record's ``per_seed`` entries (seeds as the
    record keys them), in the record's order; empty when every seed is healthy."""
    return {seed: entry["diverged_at"] for seed, entry in run_record.get("per_seed", {}).items()
            if entry.get("diverged_at") is not None}


def excluded_pairs(frames: Mapping[str, pd.DataFrame]) -> dict[int, str]:
    """``{seed: "baseline diverged at step 3"}`` for each seed that diverged in any model."""
    reasons: dict[int, list[str]] = {}
    for model, frame in frames.items():
        for seed, step in diverged_at(frame).items():
            reasons.setdefault(seed, []).append(f"{model} diverged at step {step}")
    return {seed: "; ".join(parts) for seed, parts in sorted(reasons.items())}


def healthy(frame: pd.DataFrame, seeds: Any) -> pd.DataFrame:
    """``frame`` without the rows of ``seeds`` (and without its divergence columns)."""
    if frame is None or not hasattr(frame, "columns"):
        return frame
    kept = frame if "seed" not in frame.columns else frame[~frame["seed"].isin(list(seeds))]
    return kept.drop(columns=["diverged", "diverged_at"], errors="ignore").reset_index(drop=True)


def healthy_histograms(histograms: Mapping[str, Any], seeds: Any) -> dict[str, Any]:
    """A model's ``{"seed_<k>": histograms}`` without the excluded seeds."""
    dropped = {f"seed_{seed}" for seed in seeds}
    return {key: value for key, value in histograms.items() if key not in dropped}


def exclude_diverged(traces: Mapping[str, Mapping[str, pd.DataFrame]]
                     ) -> tuple[dict[str, dict[str, pd.DataFrame]], dict[int, str]]:
    """Every trace of every model without the seeds that diverged in any model.

    Args:
        traces: ``{kind: {model: frame}}`` (``kind`` e.g. "training", "ics").

    Returns:
        The same mapping with the excluded seeds' rows dropped, and ``{seed: reason}``.
    """
    excluded: dict[int, str] = {}
    for pair in traces.values():
        for seed, reason in excluded_pairs(pair).items():
            excluded.setdefault(seed, reason)
    kept = {kind: {model: healthy(frame, excluded) for model, frame in pair.items()}
            for kind, pair in traces.items()}
    return kept, dict(sorted(excluded.items()))


def exclusion_note(excluded: Mapping[int, str], seeds: Any = None) -> str | None:
    """One sentence for a summary or a caption; None when nothing was excluded."""
    if not excluded:
        return None
    parts = "; ".join(f"seed {seed}: {reason}" for seed, reason in excluded.items())
    left = "" if seeds is None else f" {len(set(seeds) - set(excluded))} of {len(set(seeds))} seeds remain."
    return f"Left out of every statistic and figure (diverged): {parts}.{left}"
