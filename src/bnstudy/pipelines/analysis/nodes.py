"""Thin Kedro adapters around :mod:`bnstudy.analysis.tables` (which holds the maths).

Each node takes the baseline's and the candidate's traces as separate inputs (so kedro-viz
shows where they come from) and returns a tidy table and a JSON-ready summary. A seed that
diverged in either model is left out of both (:mod:`bnstudy.analysis.divergence`), and the
summary says so under ``excluded_seeds``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bnstudy.analysis import fidelity
from bnstudy.analysis import tables as analysis
from bnstudy.analysis.divergence import exclude_diverged, exclusion_note, healthy_histograms
from bnstudy.pipelines import json_ready

Result = tuple[pd.DataFrame, dict[str, Any]]


def _pair(baseline: Any, candidate: Any) -> dict[str, Any]:
    return {analysis.BASELINE: baseline, analysis.CANDIDATE: candidate}


def _analyzed(compute, *pairs: dict[str, Any]) -> Result:
    """``compute(*pairs)`` on the traces without diverged seeds, the exclusions noted; with
    no seed left, an empty table and a summary that says why."""
    frames = {index: pair for index, pair in enumerate(pairs) if _is_trace(pair)}
    kept, excluded = exclude_diverged(frames)
    pairs = tuple(kept.get(index, _histograms(pair, excluded)) for index, pair in enumerate(pairs))
    note = exclusion_note(excluded)
    if excluded and all(frame.empty for pair in kept.values() for frame in pair.values()):
        return pd.DataFrame(), json_ready({"excluded_seeds": excluded, "note": note,
                                           "nothing_to_compare": True})
    table, summary = compute(*pairs)
    if excluded:
        summary = {**summary, "excluded_seeds": excluded, "note": note}
    return table, json_ready(summary)


def _is_trace(pair: dict[str, Any]) -> bool:
    return all(isinstance(value, pd.DataFrame) for value in pair.values())


def _histograms(pair: dict[str, Any], excluded: dict[int, str]) -> dict[str, Any]:
    return {model: healthy_histograms(value, excluded) for model, value in pair.items()}


def analyze_training_curves(baseline_training: pd.DataFrame, candidate_training: pd.DataFrame,
                            baseline_eval: pd.DataFrame, candidate_eval: pd.DataFrame,
                            params: dict[str, Any]) -> Result:
    return _analyzed(
        lambda training, evals: analysis.analyze_training_curves(
            training, evals, params["num_phases"], params["smoothing_fraction"]),
        _pair(baseline_training, candidate_training), _pair(baseline_eval, candidate_eval))


def analyze_gradient_ics(baseline: pd.DataFrame, candidate: pd.DataFrame, params: dict[str, Any]) -> Result:
    return _analyzed(lambda traces: analysis.analyze_gradient_ics(traces, params["num_phases"]),
                     _pair(baseline, candidate))


def analyze_loss_landscape(baseline: pd.DataFrame, candidate: pd.DataFrame, params: dict[str, Any]) -> Result:
    return _analyzed(lambda traces: analysis.analyze_loss_landscape(traces, params["num_phases"]),
                     _pair(baseline, candidate))


def analyze_gradient_predictiveness(baseline: pd.DataFrame, candidate: pd.DataFrame,
                                    params: dict[str, Any]) -> Result:
    return _analyzed(lambda traces: analysis.analyze_gradient_predictiveness(traces, params["num_phases"]),
                     _pair(baseline, candidate))


def analyze_beta_smoothness(baseline: pd.DataFrame, candidate: pd.DataFrame, params: dict[str, Any]) -> Result:
    return _analyzed(lambda traces: analysis.analyze_beta_smoothness(traces, params["num_phases"]),
                     _pair(baseline, candidate))


def analyze_activation_shift(baseline_stats: pd.DataFrame, candidate_stats: pd.DataFrame,
                             baseline_histograms: dict[str, Any], candidate_histograms: dict[str, Any],
                             params: dict[str, Any]) -> Result:
    return _analyzed(
        lambda stats, histograms: analysis.analyze_activation_shift(stats, histograms, params["num_phases"]),
        _pair(baseline_stats, candidate_stats), _pair(baseline_histograms, candidate_histograms))


def analyze_init_distance(baseline: pd.DataFrame, candidate: pd.DataFrame) -> Result:
    return _analyzed(analysis.analyze_init_distance, _pair(baseline, candidate))


def compare_models(baseline_training: pd.DataFrame, candidate_training: pd.DataFrame,
                   baseline_eval: pd.DataFrame, candidate_eval: pd.DataFrame,
                   baseline_smoothness: pd.DataFrame, candidate_smoothness: pd.DataFrame,
                   baseline_ics: pd.DataFrame, candidate_ics: pd.DataFrame,
                   baseline_histograms: dict[str, Any], candidate_histograms: dict[str, Any],
                   baseline_init: pd.DataFrame, candidate_init: pd.DataFrame,
                   params: dict[str, Any]) -> dict[str, Any]:
    """Every measurement compared across seeds, and the Fidelity table (seeds that diverged in
    either model left out, and named)."""
    kept, excluded = exclude_diverged({
        "training": _pair(baseline_training, candidate_training),
        "evals": _pair(baseline_eval, candidate_eval),
        "smoothness": _pair(baseline_smoothness, candidate_smoothness),
        "ics": _pair(baseline_ics, candidate_ics),
        "init": _pair(baseline_init, candidate_init)})
    histograms = _histograms(_pair(baseline_histograms, candidate_histograms), excluded)
    if kept["training"][analysis.BASELINE].empty:
        summary = fidelity.nothing_to_compare(excluded, exclusion_note(excluded))
    else:
        summary = fidelity.compare_models(
            kept["training"], kept["evals"], kept["smoothness"], kept["ics"], histograms,
            kept["init"], smoothing_fraction=params["smoothing_fraction"])
        summary["excluded_seeds"], summary["note"] = excluded, exclusion_note(excluded)
    return {"model_comparisons_summary": json_ready(summary),
            "fidelity_summary": json_ready({"rows": fidelity.fidelity_table(summary)})}
