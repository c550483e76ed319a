"""Thin Kedro adapters around :mod:`bnstudy.reporting.figures` and :mod:`bnstudy.reporting.report`."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bnstudy.reporting import figures, report

FIGURE_NAMES = (
    "training_curves",
    "activation_histograms",
    "activation_animation",
    "activation_shift",
    "gradient_ics",
    "loss_landscape",
    "gradient_predictiveness",
    "beta_smoothness",
    "init_distance",
)
SUMMARY_NAMES = (
    "training_curves",
    "gradient_ics",
    "loss_landscape",
    "gradient_predictiveness",
    "beta_smoothness",
    "activation_shift",
    "init_distance",
)


def plot_training_curves(table: pd.DataFrame) -> bytes:
    return figures.to_png(figures.training_curves_figure(table))


def plot_gradient_ics(table: pd.DataFrame, params: dict[str, Any]) -> bytes:
    return figures.to_png(figures.gradient_ics_figure(table, params["ics_layers"]))


def plot_loss_landscape(table: pd.DataFrame) -> bytes:
    return figures.to_png(figures.loss_landscape_figure(table))


def plot_gradient_predictiveness(table: pd.DataFrame) -> bytes:
    return figures.to_png(figures.gradient_predictiveness_figure(table))


def plot_beta_smoothness(table: pd.DataFrame) -> bytes:
    return figures.to_png(figures.beta_smoothness_figure(table))


def plot_init_distance(table: pd.DataFrame) -> bytes:
    return figures.to_png(figures.init_distance_figure(table))


def plot_activation_shift(table: pd.DataFrame) -> bytes:
    return figures.to_png(figures.activation_shift_figure(table))


def plot_activation_histograms(baseline: dict[str, Any], candidate: dict[str, Any], params: dict[str, Any]) -> bytes:
    histograms = {"baseline": baseline, "candidate": candidate}
    return figures.to_png(
        figures.activation_histograms_figure(histograms, params["activation_layers"], params["histogram_snapshots"])
    )


def animate_activations(baseline_histograms: dict[str, Any], candidate_histograms: dict[str, Any],
                        baseline_stats: pd.DataFrame, candidate_stats: pd.DataFrame,
                        params: dict[str, Any]) -> bytes:
    return figures.activation_animation_gif(
        {"baseline": baseline_histograms, "candidate": candidate_histograms},
        {"baseline": baseline_stats, "candidate": candidate_stats},
        params["activation_layers"],
        fps=params["animation_fps"],
    )


def write_report(baseline_record: dict[str, Any], candidate_record: dict[str, Any], params: dict[str, Any],
                 *summaries_then_figures: Any) -> tuple[str, str, dict[str, dict[str, float]]]:
    """The report as Markdown and HTML, and the study-level metrics for MLflow.

    Positional inputs after ``params``: the summaries in :data:`SUMMARY_NAMES` order, then
    the figures in :data:`FIGURE_NAMES` order.
    """
    summaries = dict(zip(SUMMARY_NAMES, summaries_then_figures[: len(SUMMARY_NAMES)], strict=True))
    rendered = dict(zip(FIGURE_NAMES, summaries_then_figures[len(SUMMARY_NAMES) :], strict=True))
    records = {"baseline": baseline_record, "candidate": candidate_record}
    sections, findings = report.build_report(summaries, records)
    title = params["title"]
    markdown = report.render_markdown(title, sections, findings, rendered)
    page = report.render_html(title, sections, findings, rendered)
    return markdown, page, study_metrics(summaries)


def study_metrics(summaries: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Headline numbers for the study's (parent) MLflow run, in kedro-mlflow's format."""
    values: dict[str, Any] = {}
    for model, numbers in summaries["training_curves"]["models"].items():
        values[f"{model}.final_test_accuracy"] = numbers["final_test_accuracy"]
    values["test_accuracy_gain"] = summaries["training_curves"]["test_accuracy_gain"]
    values["smoothed_train_loss.candidate_lower_fraction"] = (
        summaries["training_curves"]["smoothed_train_loss"]["overall"]["candidate_better_fraction"]
    )
    for key in ("loss_landscape", "gradient_predictiveness", "beta_smoothness"):
        for preset, comparison in summaries[key]["presets"].items():
            values[f"{preset}.{key}.ratio"] = comparison["overall"]["ratio"]
            values[f"{preset}.{key}.candidate_lower_fraction"] = comparison["overall"]["candidate_better_fraction"]
    for preset, block in summaries["gradient_ics"].items():
        values[f"{preset}.gradient_ics.fraction_layers_candidate_lower_l2"] = block["fraction_layers_candidate_lower_l2"]
    values["init_distance.fraction_layers_candidate_closer"] = summaries["init_distance"]["fraction_layers_candidate_closer"]
    return {k: {"value": float(v), "step": 0} for k, v in values.items() if v is not None}
