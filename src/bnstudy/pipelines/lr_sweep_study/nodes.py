"""Thin Kedro adapters of the learning-rate sweep's question
(:mod:`bnstudy.analysis.sweep`, :mod:`bnstudy.reporting.sweep_figures`,
:mod:`bnstudy.reporting.sweep_report`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bnstudy.analysis import sweep
from bnstudy.analysis.study import pairs
from bnstudy.pipelines import json_ready
from bnstudy.pipelines.analysis.nodes import traces_by_kind
from bnstudy.reporting import sweep_figures, sweep_report
from bnstudy.reporting.document import ReportPart
from bnstudy.reporting.plotting import to_png


def analyze_sweep(params: dict[str, Any], comparisons: list, **inputs: Any
                  ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every model's ``training_trace``, ``eval_trace`` and ``run_record`` (keyword inputs
    ``results:<model>``) -> the runs table and the sweep summary
    (:func:`bnstudy.analysis.sweep.analyze_sweep`)."""
    grouped = traces_by_kind(inputs)
    table, summary = sweep.analyze_sweep(grouped["training_trace"], grouped["eval_trace"],
                                         grouped["run_record"], pairs(comparisons),
                                         float(params["final_fraction"]))
    return table, json_ready(summary)


def plot_sweep(table: pd.DataFrame) -> bytes:
    return to_png(sweep_figures.sweep_figure(table))


def _headline_models(comparisons: list) -> tuple[str, str]:
    reference, treatment = pairs(comparisons)[0]
    return reference, treatment


def plot_sweep_curves(params: dict[str, Any], comparisons: list, **inputs: Any) -> bytes:
    """The paper's Fig 1 for the headline pair at ``sweep.curve_rates``."""
    grouped, models = traces_by_kind(inputs), _headline_models(comparisons)
    return to_png(sweep_figures.curves_figure(
        {m: grouped["training_trace"][m] for m in models}, {m: grouped["eval_trace"][m] for m in models},
        [float(rate) for rate in params["curve_rates"]]))


def ics_preset(ics: dict[str, pd.DataFrame]) -> str:
    """The protocol Fig 3 is drawn in: the paper's when measured, else the first."""
    presets = list(dict.fromkeys(p for frame in ics.values() for p in frame["preset"]))
    return "paper" if "paper" in presets or not presets else presets[0]


def plot_sweep_ics(params: dict[str, Any], reporting: dict[str, Any], comparisons: list,
                   **inputs: Any) -> bytes:
    """The paper's Fig 3 for the headline pair at ``sweep.ics_rates`` in the report's
    ``reporting.ics_layers``."""
    ics = {m: traces_by_kind(inputs)["ics_trace"][m] for m in _headline_models(comparisons)}
    return to_png(sweep_figures.ics_figure(ics, [float(rate) for rate in params["ics_rates"]],
                                           list(reporting["ics_layers"]), ics_preset(ics)))


def sweep_part(params: dict[str, Any], summary: dict[str, Any], sweep_figure: bytes,
               curves_figure: bytes, ics_figure: bytes, **ics: Any) -> ReportPart:
    """The sweep's section of the study's report (:func:`bnstudy.reporting.sweep_report.sweep_part`)."""
    captions = sweep_report.sweep_captions([float(r) for r in params["curve_rates"]],
                                           [float(r) for r in params["ics_rates"]],
                                           ics_preset(traces_by_kind(ics).get("ics_trace", {})))
    return sweep_report.sweep_part(
        summary, {"sweep": sweep_figure, "sweep_curves": curves_figure, "sweep_ics": ics_figure},
        final_fraction=float(params["final_fraction"]), captions=captions)
