"""One analysis for every comparison of a study (numpy/pandas/scipy only).

A study of the roster declares its comparisons as (reference, treatment) pairs of models. Each
pair is compared exactly as the paper's pair, BN against no BN: seeds that diverged in either
model are left out, then every measurement is compared across the seeds that remain
(:func:`bnstudy.analysis.fidelity.compare_models`). :func:`compare_pair` does that for any
pair; :func:`per_comparison` runs a measurement's table-and-summary function once per pair
and keeps each model's rows once, under the model's own name.

The library's pair functions name their two models by role (``tables.BASELINE`` for the
reference, ``tables.CANDIDATE`` for the treatment); here those roles become the roster's
names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from bnstudy.analysis import fidelity
from bnstudy.analysis.divergence import exclude_diverged, exclusion_note, healthy_histograms
from bnstudy.analysis.tables import BASELINE, CANDIDATE
from bnstudy.runs import learning_rate_key

KINDS = ("training", "evals", "smoothness", "ics", "init")
"""The per-model traces a comparison reads (besides the activation histograms)."""
MODEL_WORDS = {BASELINE: "no BN", CANDIDATE: "BN", "candidate_noisy": "noisy BN",
               "candidate_l1": "L1 normalization", "candidate_l2": "L2 normalization",
               "candidate_linf": "L-infinity normalization",
               "baseline_noisy": "Algorithm 1's noise without BN",
               "baseline_sgd": "no BN (plain SGD)", "candidate_sgd": "BN (plain SGD)",
               "dln_baseline": "no BN (DLN)", "dln_candidate": "BN (DLN)",
               "dln_l1": "L1 normalization (DLN)", "dln_l2": "L2 normalization (DLN)",
               "dln_linf": "L-infinity normalization (DLN)",
               "baseline_sweep": "no BN (plain SGD)", "candidate_sweep": "BN (plain SGD)",
               "baseline_sweep_blog": "no BN (momentum 0.9)",
               "candidate_sweep_blog": "BN (momentum 0.9)"}
"""How a sentence names the models of conf/base's roster; any other model by its name."""


def model_word(model: str) -> str:
    return MODEL_WORDS.get(model, model)


def comparison_key(reference: str, treatment: str) -> str:
    """``<treatment>_vs_<reference>``: how summaries, metrics and the report name a pair."""
    return f"{treatment}_vs_{reference}"


def pairs(comparisons: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    """``[(reference, treatment), ...]`` of a study's ``comparisons`` parameter."""
    return [(c["reference"], c["treatment"]) for c in comparisons]


def roles(reference: str, treatment: str) -> dict[str, str]:
    """Role (the pair functions' key) -> model name."""
    return {BASELINE: reference, CANDIDATE: treatment}


def as_roles(pair: Mapping[str, Any], reference: str, treatment: str) -> dict[str, Any]:
    """``{model: value}`` of a pair -> ``{role: value}``, as the pair functions take it."""
    return {role: pair[model] for role, model in roles(reference, treatment).items()}


def compare_pair(reference: str, treatment: str, traces: Mapping[str, Mapping[str, Any]],
                 histograms: Mapping[str, Any], smoothing_fraction: float) -> dict[str, Any]:
    """Every measurement of ``treatment`` against ``reference``, across the seeds healthy in both.

    Args:
        reference, treatment: model names (keys of every mapping of ``traces``).
        traces: ``{kind: {model: frame}}`` for the kinds of :data:`KINDS`.
        histograms: ``{model: {"seed_<k>": activation histograms}}``.
        smoothing_fraction: the training-curve smoothing of the study's analysis.

    Returns:
        :func:`fidelity.compare_models`'s summary with the treatment in BN's place: effects
        are treatment / reference (or treatment - reference), worded "lower for
        <treatment>"; ``reference``, ``treatment``, ``excluded_seeds`` and ``note`` added.
    """
    named = {kind: {model: traces[kind][model] for model in (reference, treatment)} for kind in KINDS}
    healthy, excluded = exclude_diverged(named)  # the reasons name the models
    kept = {kind: as_roles(pair, reference, treatment) for kind, pair in healthy.items()}
    shown = {BASELINE: healthy_histograms(histograms[reference], excluded),
             CANDIDATE: healthy_histograms(histograms[treatment], excluded)}
    if kept["training"][BASELINE].empty:
        summary = fidelity.nothing_to_compare(excluded, exclusion_note(excluded))
    else:
        word = model_word(treatment)
        summary = fidelity.compare_models(
            kept["training"], kept["evals"], kept["smoothness"], kept["ics"], shown, kept["init"],
            smoothing_fraction=smoothing_fraction, words=(f"lower for {word}", f"higher for {word}"))
        summary.update(excluded_seeds=excluded, note=exclusion_note(excluded))
    summary.update(reference=reference, treatment=treatment)
    return summary


def model_rates(per_model: Sequence[Mapping[str, Any]], model: str) -> list[float]:
    """A model's learning rates, in order (its traces' ``learning_rate`` column)."""
    found: dict[float, None] = {}
    for values in per_model:
        value = values.get(model)
        if isinstance(value, pd.DataFrame) and "learning_rate" in value.columns:
            found.update(dict.fromkeys(float(x) for x in value["learning_rate"].unique()))
    return list(found)


def sweep_rates(reference: str, treatment: str, *per_model: Mapping[str, Any]) -> list[float]:
    """The learning rates a pair is compared at: none (compare as a whole) unless one of its
    models swept several rates; then each rate both swept, or the sweeping model's rates
    against the other's single run. Two models that each train at one rate of their own (a
    roster override, a diverging baseline) are not a sweep."""
    ref, treat = model_rates(per_model, reference), model_rates(per_model, treatment)
    if len(ref) <= 1 and len(treat) <= 1:
        return []
    if len(ref) > 1 and len(treat) > 1:
        return [rate for rate in ref if rate in treat]
    return ref if len(ref) > 1 else treat


def at_learning_rate(values: Mapping[str, Any], learning_rate: float) -> dict[str, Any]:
    """``{model: trace}`` at one learning rate of a sweep: a swept model's table rows at that
    rate and its ``{"seed_<k>": {"lr_<x>": histograms}}`` entries at it (``seed_<k>`` kept);
    a model that trained at one rate as it is."""
    key = learning_rate_key(learning_rate)
    picked = {}
    for model, value in values.items():
        if isinstance(value, pd.DataFrame):
            swept = "learning_rate" in value.columns and value["learning_rate"].nunique() > 1
            picked[model] = (value[value["learning_rate"] == learning_rate].reset_index(drop=True)
                             if swept else value)
        else:
            swept = any(isinstance(runs, Mapping) and key in runs for runs in value.values())
            picked[model] = {seed: runs[key] for seed, runs in value.items() if key in runs} if swept else value
    return picked


def sweep_key(key: str, learning_rate: float) -> str:
    """A comparison's key at one learning rate of a sweep: ``<key>@lr=<x>``."""
    return f"{key}@lr={float(learning_rate)!r}"


def compare_study(comparisons: Sequence[Mapping[str, str]], traces: Mapping[str, Mapping[str, Any]],
                  histograms: Mapping[str, Any], smoothing_fraction: float) -> dict[str, Any]:
    """Every comparison of a study: ``{"headline": key, "comparisons": {key: summary}}``,
    the headline being the first comparison declared (the one the Fidelity table reads).

    In a learning-rate sweep (:func:`sweep_rates`) a comparison is made at each rate, paired
    by seed at that rate (:func:`sweep_key`; the headline at the first rate), and each
    summary names its ``learning_rate``."""
    compared = {}
    for ref, treat in pairs(comparisons):
        for key, rate, (*frames, shown) in pair_slices(ref, treat, *traces.values(), histograms):
            summary = compare_pair(ref, treat, dict(zip(traces, frames, strict=True)), shown,
                                   smoothing_fraction)
            compared[key] = summary if rate is None else {**summary, "learning_rate": rate}
    return {"headline": next(iter(compared)), "comparisons": compared}


def pair_slices(reference: str, treatment: str, *per_model: Mapping[str, Any]):
    """``(key, learning_rate, per_model)`` for each slice a pair is compared in: the whole
    traces (``learning_rate`` None, key :func:`comparison_key`), or in a sweep
    (:func:`sweep_rates`) each rate, with every mapping at that rate and key :func:`sweep_key`."""
    key = comparison_key(reference, treatment)
    rates = sweep_rates(reference, treatment, *per_model)
    if not rates:
        yield key, None, per_model
    for rate in rates:
        yield sweep_key(key, rate), rate, tuple(at_learning_rate(values, rate) for values in per_model)


def headline(study_summary: Mapping[str, Any]) -> dict[str, Any]:
    """The headline comparison of :func:`compare_study`'s summary."""
    return study_summary["comparisons"][study_summary["headline"]]


def per_comparison(compute: Callable[..., tuple[pd.DataFrame, dict[str, Any]]],
                   comparisons: Sequence[Mapping[str, str]],
                   *per_model: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``compute(reference, treatment, *pairs)`` once per comparison, ``pairs`` being the
    pair's ``{model: trace}`` entries of each ``per_model`` mapping, and ``compute``
    returning a table whose ``model`` column holds roles (:func:`as_roles`); the tables
    concatenated with each model's rows kept once, under its name, and the summaries keyed
    by :func:`comparison_key`."""
    tables, summaries = [], {}
    for reference, treatment in pairs(comparisons):
        role = roles(reference, treatment)
        for key, rate, chosen in pair_slices(reference, treatment, *per_model):
            table, summary = compute(reference, treatment, *({m: values[m] for m in (reference, treatment)}
                                                             for values in chosen))
            if "model" in getattr(table, "columns", ()):
                table = table.assign(model=table["model"].map(role))
            if rate is not None:
                table, summary = table.assign(learning_rate=rate), {**summary, "learning_rate": rate}
            tables.append(table)
            summaries[key] = {**summary, "reference": reference, "treatment": treatment}
    filled = [t for t in tables if not t.empty]
    table = (pd.concat(filled, ignore_index=True).drop_duplicates(ignore_index=True)
             if filled else pd.DataFrame())
    return table, {"comparisons": summaries}
