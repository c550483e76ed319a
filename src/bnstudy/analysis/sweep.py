"""The learning-rate sweep (Santurkar et al. 2018, Fig 1; Bjorck et al. 2018): how each model
ends at each learning rate of its grid, the largest learning rate it trains stably at, and
whether BN's advantage holds across the grid (numpy/pandas/scipy only).

A run is one (model, learning rate, seed). It is **stable** when it never diverged (every loss,
gradient and update finite: the run record's ``diverged_at``) and its final training loss is
below its first and below chance level (``(1 - 0.01) ln C`` for C classes, the edge of the
stall band of :func:`bnstudy.analysis.statistics.stalled_mask`): it trained, not merely stayed
finite. A run that spiked early and settled at chance has a final loss below its first, but
did not train. A model's largest stable learning rate
is the largest rate of its grid at which every seed's run is stable; per seed, the largest rate
at which that seed's run is; the interval is a t-interval over the seeds' values in log space
(a geometric mean), since the grid is log-spaced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.analysis import statistics as st
from bnstudy.analysis.study import comparison_key, model_word

RUN_COLUMNS = ("model", "learning_rate", "seed", "steps", "first_train_loss", "final_train_loss",
               "final_test_loss", "final_test_accuracy", "diverged", "stable")
"""The columns of :func:`final_runs`."""


def _window(steps: int, fraction: float) -> int:
    return max(1, int(math.ceil(fraction * steps)))


def _record_runs(record: Mapping[str, Any]) -> dict[tuple[float, int], Any]:
    """``{(learning_rate, seed): diverged_at}`` of a run record's ``per_seed`` entries (keyed
    ``<k>`` or, in a sweep, ``<k>/lr_<x>``)."""
    return {(float(entry["learning_rate"]), int(key.split("/")[0])): entry["diverged_at"]
            for key, entry in record["per_seed"].items()}


def _rate_of(frame: pd.DataFrame, record: Mapping[str, Any]) -> pd.Series:
    if "learning_rate" in frame.columns:
        return frame["learning_rate"].astype(float)
    return pd.Series(float(record["train_config"]["learning_rate"]), index=frame.index)


def trained(first: float, final: float, num_classes: int | None = 10) -> bool:
    """Whether a finite run trained: its final loss below its first and, for a classifier of
    ``num_classes`` (None: a regression, no chance level), below the stall band around
    ln C (:func:`bnstudy.analysis.statistics.stalled_mask`'s 1%)."""
    if not (np.isfinite(final) and final < first):
        return False
    return num_classes is None or final < (1 - st.STALL_TOLERANCE) * math.log(num_classes)


def final_runs(training: Mapping[str, pd.DataFrame], evals: Mapping[str, pd.DataFrame],
               records: Mapping[str, Mapping[str, Any]], final_fraction: float,
               num_classes: int | None = 10) -> pd.DataFrame:
    """One row per (model, learning rate, seed) (:data:`RUN_COLUMNS`): the mean batch loss over
    the first and the last ``final_fraction`` of the steps, the last evaluation's test loss and
    accuracy, whether the run diverged and whether it is stable (module docstring,
    :func:`trained`). A diverged run's final values are NaN."""
    rows = []
    for model, trace in training.items():
        record = records[model]
        diverged = _record_runs(record)
        frame = trace.assign(learning_rate=_rate_of(trace, record))
        tests = evals[model].assign(learning_rate=_rate_of(evals[model], record))
        for (rate, seed), run in frame.groupby(["learning_rate", "seed"], sort=True):
            losses = run.sort_values("step")["train_loss"].to_numpy(float)
            width = _window(losses.size, final_fraction)
            test = tests[(tests["learning_rate"] == rate) & (tests["seed"] == seed)].sort_values("step")
            failed = diverged.get((float(rate), int(seed))) is not None
            first, final = float(np.mean(losses[:width])), float(np.mean(losses[-width:]))
            last = test.iloc[-1] if len(test) else None
            rows.append({
                "model": model, "learning_rate": float(rate), "seed": int(seed), "steps": losses.size,
                "first_train_loss": first, "final_train_loss": math.nan if failed else final,
                "final_test_loss": math.nan if failed or last is None else float(last["test_loss"]),
                "final_test_accuracy": (math.nan if failed or last is None
                                        else float(last["test_accuracy"])),
                "diverged": failed, "stable": (not failed) and trained(first, final, num_classes)})
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def _interval(values: Sequence[float], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean and 95% t-interval across seeds; an accuracy's interval clipped to [0, 1] (an
    interval of a mean of values in [0, 1] lies in it)."""
    interval = st.seed_interval(values)
    low, high = interval.low, interval.high
    if bounds is not None and np.isfinite(low):
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"n": interval.n, "mean": interval.mean, "low": low, "high": high}


def per_rate(runs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``{model: {repr(rate): {...}}}``: the seeds, how many diverged, whether every seed is
    stable, and the final training loss, test loss and test accuracy across the healthy seeds
    (mean and 95% t-interval)."""
    out: dict[str, dict[str, Any]] = {}
    for (model, rate), rows in runs.groupby(["model", "learning_rate"], sort=False):
        out.setdefault(model, {})[repr(float(rate))] = {
            "learning_rate": float(rate), "seeds": [int(s) for s in rows["seed"]],
            "diverged": int(rows["diverged"].sum()), "stable": bool(rows["stable"].all()),
            **{column: _interval(rows[column].to_numpy(float),
                                 (0.0, 1.0) if column == "final_test_accuracy" else None)
               for column in ("final_train_loss", "final_test_loss", "final_test_accuracy")}}
    return out


def largest_stable(runs: pd.DataFrame, model: str) -> dict[str, Any]:
    """A model's largest stable learning rate (module docstring): ``rate`` (every seed; None
    when no rate is), ``per_seed`` ``{seed: rate or None}``, and the geometric mean of the
    seeds' rates with its 95% t-interval (``mean``, ``low``, ``high``; over the seeds that
    have one)."""
    rows = runs[runs["model"] == model]
    every = rows.groupby("learning_rate")["stable"].all()
    stable_rates = every[every].index
    per_seed = {}
    for seed, part in rows.groupby("seed"):
        rates = part.loc[part["stable"], "learning_rate"]
        per_seed[int(seed)] = float(rates.max()) if len(rates) else None
    found = [rate for rate in per_seed.values() if rate is not None]
    interval = st.seed_interval(np.log(found)) if found else None
    stalled = rows[~rows["stable"] & ~rows["diverged"]]
    return {"rate": float(stable_rates.max()) if len(stable_rates) else None, "per_seed": per_seed,
            "steps": int(rows["steps"].max()) if len(rows) else 0,
            "diverged_at": sorted(float(r) for r in rows.loc[rows["diverged"], "learning_rate"].unique()),
            "untrained_at": sorted(float(r) for r in stalled["learning_rate"].unique()),
            "mean": math.exp(interval.mean) if interval else math.nan,
            "low": math.exp(interval.low) if interval and np.isfinite(interval.low) else math.nan,
            "high": math.exp(interval.high) if interval and np.isfinite(interval.high) else math.nan}


def compare_rates(runs: pd.DataFrame, reference: str, treatment: str) -> dict[str, Any]:
    """The pair at each learning rate both trained at: the final training loss compared across
    the seeds healthy in both (treatment / reference, paired by seed); ``lower`` counts the
    rates where the treatment's is significantly lower, ``higher`` where it is significantly
    higher, ``only_reference_diverged`` / ``only_treatment_diverged`` the rates where one
    model's seeds all diverged and the other's did not."""
    ref, treat = (runs[runs["model"] == m].set_index(["learning_rate", "seed"]) for m in (reference, treatment))
    at: dict[str, Any] = {}
    counts = {"lower": 0, "higher": 0, "only_reference_diverged": 0, "only_treatment_diverged": 0}
    for rate in sorted(set(ref.index.get_level_values(0)) & set(treat.index.get_level_values(0))):
        a, b = ref.loc[rate], treat.loc[rate]
        seeds = sorted(set(a.index) & set(b.index))
        a_loss = a.loc[seeds, "final_train_loss"].to_numpy(float)
        b_loss = b.loc[seeds, "final_train_loss"].to_numpy(float)
        healthy = np.isfinite(a_loss) & np.isfinite(b_loss)
        entry: dict[str, Any] = {"learning_rate": float(rate), "n": int(healthy.sum())}
        if healthy.sum() >= 2:
            comparison = st.paired_comparison(b_loss[healthy], a_loss[healthy], kind="ratio")
            entry.update(estimate=comparison.estimate, low=comparison.low, high=comparison.high,
                         p_value=comparison.p_value, significant=comparison.significant)
            if comparison.significant:
                counts["lower" if comparison.estimate < 1 else "higher"] += 1
        if bool(a["diverged"].all()) and not bool(b["diverged"].all()):
            counts["only_reference_diverged"] += 1
        if bool(b["diverged"].all()) and not bool(a["diverged"].all()):
            counts["only_treatment_diverged"] += 1
        at[repr(float(rate))] = entry
    return {"reference": reference, "treatment": treatment, "rates": at, "compared": len(at), **counts}


def _rate_text(entry: Mapping[str, Any]) -> str:
    if entry["rate"] is None:
        return "at none of its learning rates"
    interval = (f" (per seed: geometric mean {entry['mean']:.3g} [{entry['low']:.3g}, {entry['high']:.3g}])"
                if np.isfinite(entry["low"]) else "")
    return f"up to lr {entry['rate']:g}{interval}"


def sweep_statement(pair: Mapping[str, Any], stable: Mapping[str, Mapping[str, Any]]) -> str:
    """The sweep's conclusion for one pair, from :func:`compare_rates` and
    :func:`largest_stable`: "BN trains stably up to lr X [CI], no BN up to Y; BN's final
    training loss is lower at k of n learning rates"."""
    ref, treat = pair["reference"], pair["treatment"]
    ref_word, treat_word = model_word(ref), model_word(treat)
    a, b = stable[ref]["rate"], stable[treat]["rate"]
    ratio = (f" (a ratio of {b / a:.3g})" if a is not None and b is not None else "")
    text = (f"{treat_word} trains stably {_rate_text(stable[treat])}, {ref_word} "
            f"{_rate_text(stable[ref])}{ratio}. {treat_word}'s final training loss is "
            f"significantly lower at {pair['lower']} of the {pair['compared']} learning rates "
            f"both trained at, and higher at {pair['higher']} (paired over seeds, 95%)")
    diverged = []
    if pair["only_reference_diverged"]:
        diverged.append(f"only {ref_word} diverged at {pair['only_reference_diverged']}")
    if pair["only_treatment_diverged"]:
        diverged.append(f"only {treat_word} diverged at {pair['only_treatment_diverged']}")
    text += f"; {', '.join(diverged)}." if diverged else "."
    return text + "".join(_failures(model_word(m), stable[m]) for m in (treat, ref))


def _rates(values: Sequence[float]) -> str:
    return ", ".join(f"{rate:g}" for rate in values)


def _failures(word: str, entry: Mapping[str, Any]) -> str:
    """Where a model's runs failed, and how: diverged, or finite but not trained within the
    run's steps (its final training loss not below its first, or at chance level: on its plateau,
    not unstable)."""
    parts = []
    if entry.get("diverged_at"):
        parts.append(f"a seed diverged at lr {_rates(entry['diverged_at'])}")
    if entry.get("untrained_at"):
        parts.append(f"a seed stayed finite but did not train within its {entry['steps']} steps "
                     f"at lr {_rates(entry['untrained_at'])}")
    return f" {word}: {'; '.join(parts)}." if parts else ""


def analyze_sweep(training: Mapping[str, pd.DataFrame], evals: Mapping[str, pd.DataFrame],
                  records: Mapping[str, Mapping[str, Any]], pairs: Sequence[tuple[str, str]],
                  final_fraction: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The sweep's table (:func:`final_runs`) and summary: ``per_rate``, ``largest_stable``
    per model, and per pair ``comparisons`` (:func:`compare_rates` with its ``statement``)."""
    runs = final_runs(training, evals, records, final_fraction)
    stable = {model: largest_stable(runs, model) for model in training}
    compared = {}
    for reference, treatment in pairs:
        pair = compare_rates(runs, reference, treatment)
        compared[comparison_key(reference, treatment)] = {**pair, "statement": sweep_statement(pair, stable)}
    return runs, {"per_rate": per_rate(runs), "largest_stable": stable, "comparisons": compared}
