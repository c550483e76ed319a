"""Thin Kedro adapters around :mod:`bnstudy.reporting` (figures, histograms, report)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bnstudy.analysis.divergence import record_divergence
from bnstudy.reporting import conclusions, document, figures, histograms, report
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
    "beta_smoothness",
    "init_distance",
)


def _drawn(draw, title: str, table: pd.DataFrame, *args: Any) -> bytes:
    """``draw(table, *args)`` as PNG; an empty table (every seed diverged, see the analysis
    summaries) gives a figure that says so instead of a crash or a blank plot."""
    if table.empty:
        return to_png(note_figure(title, "Nothing to draw: every seed diverged in at least one model "
                                         "(see the report's caveats)."))
    return to_png(draw(table, *args))


def plot_training_curves(table: pd.DataFrame) -> bytes:
    return _drawn(figures.training_curves_figure, "Training curves", table)


def plot_gradient_ics(table: pd.DataFrame, baseline_record: dict[str, Any], candidate_record: dict[str, Any],
                      params: dict[str, Any]) -> bytes:
    zero = figures.zero_by_definition({"baseline": baseline_record, "candidate": candidate_record})
    return _drawn(figures.gradient_ics_figure, "Gradient ICS", table, params["ics_layers"], zero)


def plot_loss_landscape(table: pd.DataFrame) -> bytes:
    return _drawn(figures.loss_landscape_figure, "Loss landscape", table)


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


def plot_activation_histograms(baseline: dict[str, Any], candidate: dict[str, Any], baseline_record: dict[str, Any],
                               candidate_record: dict[str, Any], params: dict[str, Any]) -> bytes:
    return to_png(histograms.activation_histograms_figure(
        {"baseline": baseline, "candidate": candidate}, params["activation_layers"],
        params["histogram_snapshots"], seeds=shown_seeds(baseline_record, candidate_record)))


def plot_activation_final_snapshot(baseline_histograms: dict[str, Any], candidate_histograms: dict[str, Any],
                                   baseline_stats: pd.DataFrame, candidate_stats: pd.DataFrame,
                                   baseline_record: dict[str, Any], candidate_record: dict[str, Any],
                                   params: dict[str, Any]) -> bytes:
    return to_png(histograms.activation_final_snapshot_figure(
        {"baseline": baseline_histograms, "candidate": candidate_histograms},
        {"baseline": baseline_stats, "candidate": candidate_stats},
        params["activation_layers"], seeds=shown_seeds(baseline_record, candidate_record)))


def animate_activations(baseline_histograms: dict[str, Any], candidate_histograms: dict[str, Any],
                        baseline_stats: pd.DataFrame, candidate_stats: pd.DataFrame,
                        baseline_record: dict[str, Any], candidate_record: dict[str, Any],
                        params: dict[str, Any]) -> bytes:
    return histograms.activation_animation_gif(
        {"baseline": baseline_histograms, "candidate": candidate_histograms},
        {"baseline": baseline_stats, "candidate": candidate_stats},
        params["activation_layers"], fps=params["animation_fps"],
        seeds=shown_seeds(baseline_record, candidate_record))


def write_report(baseline_record: dict[str, Any], candidate_record: dict[str, Any], params: dict[str, Any],
                 model_comparisons: dict[str, Any], fidelity: dict[str, Any], provenance: dict[str, Any],
                 preprocessing: dict[str, Any], *rendered: bytes
                 ) -> tuple[dict[str, Any], str, dict[str, dict[str, float]]]:
    """The report as Markdown (with its figures, to be saved next to it) and HTML, and the
    study-level metrics for MLflow. ``rendered``: the figures in :data:`FIGURE_NAMES` order."""
    records = {"baseline": baseline_record, "candidate": candidate_record}
    built = report.build_report(model_comparisons, fidelity, records, provenance, preprocessing, params)
    figure_bytes = dict(zip(FIGURE_NAMES, rendered, strict=True))
    markdown = {"text": document.render_markdown(built, figure_bytes), "files": document.figure_files(figure_bytes)}
    metrics = conclusions.headline_metrics(model_comparisons, records)
    return markdown, document.render_html(built, figure_bytes), {k: {"value": v, "step": 0} for k, v in metrics.items()}
