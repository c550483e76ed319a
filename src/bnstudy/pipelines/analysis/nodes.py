"""Thin Kedro adapters around :mod:`bnstudy.analysis.tables` (which holds the maths).

Each node takes the baseline's and the candidate's traces as separate inputs (so kedro-viz
shows where they come from) and returns a tidy table and a JSON-ready summary.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bnstudy.analysis import fidelity
from bnstudy.analysis import tables as analysis
from bnstudy.pipelines import json_ready

Result = tuple[pd.DataFrame, dict[str, Any]]


def _pair(baseline: Any, candidate: Any) -> dict[str, Any]:
    return {analysis.BASELINE: baseline, analysis.CANDIDATE: candidate}


def _done(result: Result) -> Result:
    table, summary = result
    return table, json_ready(summary)


def analyze_training_curves(baseline_training: pd.DataFrame, candidate_training: pd.DataFrame,
                            baseline_eval: pd.DataFrame, candidate_eval: pd.DataFrame,
                            params: dict[str, Any]) -> Result:
    return _done(analysis.analyze_training_curves(
        _pair(baseline_training, candidate_training), _pair(baseline_eval, candidate_eval),
        params["num_phases"], params["smoothing_fraction"]))


def analyze_gradient_ics(baseline: pd.DataFrame, candidate: pd.DataFrame, params: dict[str, Any]) -> Result:
    return _done(analysis.analyze_gradient_ics(_pair(baseline, candidate), params["num_phases"]))


def analyze_loss_landscape(baseline: pd.DataFrame, candidate: pd.DataFrame, params: dict[str, Any]) -> Result:
    return _done(analysis.analyze_loss_landscape(_pair(baseline, candidate), params["num_phases"]))


def analyze_gradient_predictiveness(baseline: pd.DataFrame, candidate: pd.DataFrame,
                                    params: dict[str, Any]) -> Result:
    return _done(analysis.analyze_gradient_predictiveness(_pair(baseline, candidate), params["num_phases"]))


def analyze_beta_smoothness(baseline: pd.DataFrame, candidate: pd.DataFrame, params: dict[str, Any]) -> Result:
    return _done(analysis.analyze_beta_smoothness(_pair(baseline, candidate), params["num_phases"]))


def analyze_activation_shift(baseline_stats: pd.DataFrame, candidate_stats: pd.DataFrame,
                             baseline_histograms: dict[str, Any], candidate_histograms: dict[str, Any],
                             params: dict[str, Any]) -> Result:
    return _done(analysis.analyze_activation_shift(
        _pair(baseline_stats, candidate_stats), _pair(baseline_histograms, candidate_histograms),
        params["num_phases"]))


def analyze_init_distance(baseline: pd.DataFrame, candidate: pd.DataFrame) -> Result:
    return _done(analysis.analyze_init_distance(_pair(baseline, candidate)))


def compare_models(baseline_training: pd.DataFrame, candidate_training: pd.DataFrame,
                   baseline_eval: pd.DataFrame, candidate_eval: pd.DataFrame,
                   baseline_smoothness: pd.DataFrame, candidate_smoothness: pd.DataFrame,
                   baseline_ics: pd.DataFrame, candidate_ics: pd.DataFrame,
                   baseline_histograms: dict[str, Any], candidate_histograms: dict[str, Any],
                   baseline_init: pd.DataFrame, candidate_init: pd.DataFrame,
                   params: dict[str, Any]) -> dict[str, Any]:
    """Every measurement compared across seeds, and the Fidelity table."""
    summary = fidelity.compare_models(
        _pair(baseline_training, candidate_training), _pair(baseline_eval, candidate_eval),
        _pair(baseline_smoothness, candidate_smoothness), _pair(baseline_ics, candidate_ics),
        _pair(baseline_histograms, candidate_histograms), _pair(baseline_init, candidate_init),
        smoothing_fraction=params["smoothing_fraction"])
    return {"model_comparisons_summary": json_ready(summary),
            "fidelity_summary": json_ready({"rows": fidelity.fidelity_table(summary)})}
