"""Thin Kedro adapters of the DLN study's own question: the curvature of full-batch gradient
descent against 2/eta at each learning rate of the sweep (the edge of stability, Cohen et al.
2021), from :func:`bnstudy.analysis.beyond.curvature_analysis` once per rate."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bnstudy.analysis import beyond
from bnstudy.pipelines import json_ready
from bnstudy.pipelines.analysis.nodes import traces_by_kind
from bnstudy.reporting import beyond_figures, beyond_report
from bnstudy.reporting.document import ReportPart
from bnstudy.reporting.plotting import note_figure, to_png
from bnstudy.runs import learning_rate_key


def analyze_curvature_by_rate(params: dict[str, Any], **inputs: Any
                              ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every model's curvature trace (read from ``results:<model>``) against the thresholds of
    each learning rate it trained at, paired with the study's model without normalization
    (``results:<model>``: each run record names each model's normalization and momentum).

    Returns:
        The table with a ``learning_rate`` column, and ``{"by_learning_rate": {rate:
        summary}}`` (:func:`bnstudy.analysis.beyond.curvature_analysis`'s, per rate).
    """
    grouped = traces_by_kind(inputs)
    records, traces = grouped["run_record"], grouped["curvature_trace"]
    momentum = float(next(iter(records.values()))["train_config"]["momentum"])
    reference = next((model for model, record in records.items()
                      if record["model_config"]["normalization"] == "none"), None)
    rates = sorted({float(rate) for frame in traces.values() for rate in frame["learning_rate"]},
                   reverse=True)
    tables, summaries = [], {}
    for rate in rates:
        at_rate = {model: frame[frame["learning_rate"] == rate] for model, frame in traces.items()}
        table, summary = beyond.curvature_analysis(at_rate, rate, momentum,
                                                   float(params["near_threshold"]), reference)
        tables.append(table.assign(learning_rate=rate))
        summaries[repr(rate)] = summary
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(),
            json_ready({"by_learning_rate": summaries}))


def plot_curvature_by_rate(table: pd.DataFrame, summary: dict[str, Any]) -> bytes:
    """The curvature figure at the sweep's first (largest) learning rate, the paper's
    default; the report states the others' numbers."""
    if table.empty or not summary["by_learning_rate"]:
        return to_png(note_figure("Curvature", "Curvature was not measured."))
    rate, first = next(iter(summary["by_learning_rate"].items()))
    rows = table[table["learning_rate"] == float(rate)]
    if rows.empty:
        return to_png(note_figure("Curvature", first.get("statement", "Not measured.")))
    return to_png(beyond_figures.curvature_figure(rows, first["thresholds"]))


def curvature_part(summary: dict[str, Any], figure: bytes) -> ReportPart:
    """One curvature section per learning rate (the first with the figure), and each model's
    late means as MLflow metrics (``<model>/<quantity>_late/lr_<x>``)."""
    sections, metrics, captions = [], {}, {}
    for index, (rate, entry) in enumerate(summary["by_learning_rate"].items()):
        part = beyond_report.curvature_part(entry, figure)
        for section in part.sections:
            section.title = f"{section.title}, lr {float(rate):g}"
            if index:  # the figure is the first rate's
                section.figures = []
            sections.append(section)
        metrics.update({f"{name}/{learning_rate_key(float(rate))}": value
                        for name, value in part.metrics.items() if math.isfinite(value)})
        if not index:
            captions = {name: f"{caption} At lr {float(rate):g} (the sweep's first rate)."
                        for name, caption in part.captions.items()}
    return ReportPart(sections, figures={"curvature": figure}, captions=captions, metrics=metrics)
