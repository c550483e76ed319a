"""Thin Kedro adapters of the questions only beyond_study asks (:mod:`bnstudy.analysis.beyond`,
:mod:`bnstudy.reporting.beyond_report`, :mod:`bnstudy.reporting.beyond_figures`).

Per-model inputs are keyword inputs ``<dataset>:<model>`` (``run_record:baseline``), as in the
general analysis; the questions find the models they ask about by normalization kind
(``normalizations``: :func:`check_same_setup`'s output), never by name.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bnstudy.analysis import beyond
from bnstudy.pipelines import json_ready
from bnstudy.pipelines.analysis.nodes import traces_by_kind
from bnstudy.reporting import beyond_figures
from bnstudy.reporting.plotting import note_figure, to_png

NOISE_KINDS = ("none", "batch", "batch_noisy", "noisy")
"""The normalizations the paper's activation-shift plot draws (each model of these kinds)."""


def check_same_setup(**records: dict[str, Any]) -> dict[str, str]:
    """``{model: normalization}`` of every model of the study once their run records
    (``results:<model>``) show one setup (ValueError otherwise)."""
    return beyond.check_same_setup(traces_by_kind(records)["run_record"])


def answer_noise_question(study_summary: dict[str, Any], normalizations: dict[str, str]) -> dict[str, Any]:
    """The noise question on the study's comparisons (``model_comparisons_summary``)."""
    return json_ready(beyond.noise_question(study_summary, normalizations))


def analyze_curvature(normalizations: dict[str, str], params: dict[str, Any],
                      **inputs: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every model's curvature trace (read from ``results:<model>``) against the thresholds of
    the run's learning rate and momentum (one setup: :func:`check_same_setup`), paired with
    the first model without normalization."""
    grouped = traces_by_kind(inputs)
    train = next(iter(grouped["run_record"].values()))["train_config"]
    reference = next((model for model, kind in normalizations.items() if kind == "none"), None)
    table, summary = beyond.curvature_analysis(
        grouped["curvature_trace"], float(train["learning_rate"]), float(train["momentum"]),
        float(params["near_threshold"]), reference)
    return table, json_ready(summary)


def plot_noisy_shift(table: pd.DataFrame, normalizations: dict[str, str], params: dict[str, Any]) -> bytes:
    """The paper's activation-shift plot from the study's ``activation_shift_table``."""
    models = [model for model, kind in normalizations.items() if kind in NOISE_KINDS]
    return to_png(beyond_figures.noisy_shift_figure(table, models, params["ics_layers"]))


def plot_curvature(table: pd.DataFrame, summary: dict[str, Any]) -> bytes:
    if table.empty:
        return to_png(note_figure("Curvature", summary["statement"]))
    return to_png(beyond_figures.curvature_figure(table, summary["thresholds"]))
