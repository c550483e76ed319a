"""Thin Kedro adapters around :mod:`bnstudy.reporting` (figures, histograms, report)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bnstudy.analysis import study
from bnstudy.analysis.divergence import record_divergence
from bnstudy.pipelines.analysis.nodes import traces_by_kind
from bnstudy.reporting import conclusions, document, figures, report
from bnstudy.reporting import histograms as histograms_module
from bnstudy.reporting.document import ReportPart
from bnstudy.reporting.plotting import note_figure, to_png

# The report's figures, in the order of the report node's positional inputs.
FIGURE_NAMES = (
    "training_curves",
    "activation_histograms",
    "activation_final_snapshot",
    "activation_animation",
    "activation_shift",
    "gradient_ics",
    "loss_landscape",
    "gradient_predictiveness",
    "gradient_difference",
    "beta_smoothness",
    "init_distance",
)


def at_first_rate(table: pd.DataFrame) -> pd.DataFrame:
    """A learning-rate sweep's table at its first rate (the headline comparison's), so that a
    line over seeds never averages runs of different learning rates; any other table as it
    is. The other rates' numbers are the report's further comparisons."""
    if "learning_rate" not in table.columns or table["learning_rate"].nunique() < 2:
        return table
    first = table["learning_rate"].dropna().iloc[0]
    return table[table["learning_rate"] == first].reset_index(drop=True)


def _drawn(draw, title: str, table: pd.DataFrame, *args: Any) -> bytes:
    """``draw(table, *args)`` as PNG, at a sweep's first learning rate (:func:`at_first_rate`);
    an empty table (every seed diverged, see the analysis summaries) gives a figure that says
    so instead of a crash or a blank plot."""
    table = at_first_rate(table)
    if table.empty:
        return to_png(note_figure(title, "Nothing to draw: every seed diverged in at least one model "
                                         "(see the report's caveats)."))
    return to_png(draw(table, *args))


def plot_training_curves(table: pd.DataFrame) -> bytes:
    return _drawn(figures.training_curves_figure, "Training curves", table)


def plot_gradient_ics(table: pd.DataFrame, params: dict[str, Any], **records: dict[str, Any]) -> bytes:
    """``records``: ``results:<model>`` of every model of the study (its run records are read)."""
    zero = figures.zero_by_definition(traces_by_kind(records)["run_record"])
    return _drawn(figures.gradient_ics_figure, "Gradient ICS", table, params["ics_layers"], zero)


def plot_loss_landscape(table: pd.DataFrame) -> bytes:
    return _drawn(figures.loss_landscape_figure, "Loss landscape", table)


def plot_gradient_difference(table: pd.DataFrame) -> bytes:
    """Fig 11 (an empty table: nothing was probed, which the figure says)."""
    return to_png(figures.gradient_difference_figure(table))


def plot_gradient_predictiveness(table: pd.DataFrame) -> bytes:
    return _drawn(figures.gradient_predictiveness_figure, "Gradient predictiveness", table)


def plot_beta_smoothness(table: pd.DataFrame) -> bytes:
    return _drawn(figures.beta_smoothness_figure, "Effective beta-smoothness", table)


def plot_init_distance(table: pd.DataFrame) -> bytes:
    return _drawn(figures.init_distance_figure, "Distance from initialization", table)


def plot_activation_shift(table: pd.DataFrame) -> bytes:
    return _drawn(figures.activation_shift_figure, "Activation shift", table)


def shown_seeds(baseline_record: dict[str, Any], candidate_record: dict[str, Any]) -> list[int]:
    """The run's seeds, those healthy in both models first (the histogram figures show the
    first: a diverged seed's histograms are empty from its divergence on)."""
    bad = {int(seed) for record in (baseline_record, candidate_record) for seed in record_divergence(record)}
    seeds = [int(seed) for seed in candidate_record.get("seeds", [])]
    return [s for s in seeds if s not in bad] + [s for s in seeds if s in bad]


def _pair(inputs: dict[str, Any], trace: str, comparisons: list) -> dict[str, Any]:
    """The headline comparison's ``{"baseline": reference's, "candidate": treatment's}`` of a
    trace (the histogram figures draw that pair side by side)."""
    reference, treatment = study.pairs(comparisons)[0]
    return study.as_roles(traces_by_kind(inputs)[trace], reference, treatment)


def plot_activation_histograms(params: dict[str, Any], comparisons: list, **inputs: Any) -> bytes:
    """The readable grid: ``histogram_layers`` (or 4 of ``activation_layers``) x
    ``histogram_snapshots`` evenly spaced snapshots."""
    layers = histograms_module.grid_layers(params["activation_layers"], params["histogram_layers"])
    return _histogram_grid(inputs, comparisons, layers, params["histogram_snapshots"])


def plot_activation_histograms_full(params: dict[str, Any], comparisons: list, **inputs: Any) -> bytes:
    """The full grid, saved beside the report (not in it): every layer of
    ``activation_layers`` x ``full_histogram_snapshots`` snapshots."""
    return _histogram_grid(inputs, comparisons, params["activation_layers"],
                           params["full_histogram_snapshots"])


def _histogram_grid(inputs: dict[str, Any], comparisons: list, layers: list, snapshots: int) -> bytes:
    histograms, records = _pair(inputs, "activation_histograms", comparisons), _pair(inputs, "run_record", comparisons)
    return to_png(histograms_module.activation_histograms_figure(
        histograms, layers, snapshots, seeds=shown_seeds(records["baseline"], records["candidate"])))


def plot_activation_final_snapshot(params: dict[str, Any], comparisons: list, **inputs: Any) -> bytes:
    records = _pair(inputs, "run_record", comparisons)
    return to_png(histograms_module.activation_final_snapshot_figure(
        _pair(inputs, "activation_histograms", comparisons), _pair(inputs, "activation_stats", comparisons),
        params["activation_layers"], seeds=shown_seeds(records["baseline"], records["candidate"])))


def animate_activations(params: dict[str, Any], comparisons: list, **inputs: Any) -> bytes:
    records = _pair(inputs, "run_record", comparisons)
    return histograms_module.activation_animation_gif(
        _pair(inputs, "activation_histograms", comparisons), _pair(inputs, "activation_stats", comparisons),
        params["activation_layers"], fps=params["animation_fps"],
        seeds=shown_seeds(records["baseline"], records["candidate"]))


def write_report(params: dict[str, Any], model_comparisons: dict[str, Any],
                 fidelity: dict[str, Any], provenance: dict[str, Any], preprocessing: dict[str, Any],
                 **inputs: Any) -> tuple[dict[str, Any], str, dict[str, dict[str, float]], str]:
    """The report as Markdown (with its figures, to be saved next to it) and HTML, and the
    study-level metrics for MLflow. ``inputs``: ``results:<model>`` of every model of the
    study, ``figure:<name>`` of every figure of :data:`FIGURE_NAMES`, and ``part:<question>``
    for each question of the study's own (a :class:`~bnstudy.reporting.document.ReportPart`:
    its sections, figures, captions and metrics join the report's)."""
    grouped = traces_by_kind(inputs)
    parts: list[ReportPart] = list(grouped.get("part", {}).values())  # a study may ask none
    figure_bytes = {name: grouped["figure"][name] for name in FIGURE_NAMES}
    for part in parts:
        figure_bytes.update(part.figures)
    summary = study.headline(model_comparisons)
    names = (summary["reference"], summary["treatment"])
    records = study.as_roles(grouped["run_record"], *names)
    further = {key: value for key, value in model_comparisons["comparisons"].items()
               if key != model_comparisons["headline"]}
    built = report.build_report(summary, fidelity, records, provenance, preprocessing, params, further,
                                parts, study_records=grouped["run_record"])
    markdown = {"text": document.render_markdown(built, figure_bytes), "files": document.figure_files(figure_bytes)}
    metrics = conclusions.headline_metrics(summary, {name: grouped["run_record"][name] for name in names})
    for comparison in further.values():
        metrics.update(conclusions.further_metrics(comparison))
    for part in parts:
        metrics.update(part.metrics)
    return (markdown, document.render_html(built, figure_bytes), {k: {"value": v, "step": 0} for k, v in metrics.items()},
            document.render_note(built))
