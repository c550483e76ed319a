"""Figures of the beyond-the-paper study: curvature against the stability thresholds, the
activation shift of noisy BatchNorm (the paper's plot) and the normalizations' training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from bnstudy.analysis.beyond import THRESHOLD_METRICS
from bnstudy.reporting.plotting import (
    VARIANT_LABELS,
    draw_seed_mean,
    hide_unused,
    metric_rows,
    new_figure,
    omitted_panel,
    styled,
)

THRESHOLD_STYLES = {"2/eta": "--", "2(1-beta)/eta": ":", "2(1+beta)/eta": "-."}


def _models(table: pd.DataFrame) -> list[str]:
    present = set(table["model"])
    return [model for model in VARIANT_LABELS if model in present]


@styled
def curvature_figure(table: pd.DataFrame, thresholds: Mapping[str, float]) -> Figure:
    """Top Hessian eigenvalue (probe set) and batch sharpness (the step's batch) against
    the step, per model (seed mean and 95% band, log axis), with the three thresholds; and
    Hutchinson's Hessian trace (probe set) when the table has it."""
    panels = [("lambda_max", "Top Hessian eigenvalue (probe set, train-mode BN)"),
              ("batch_sharpness", "Batch sharpness g'H_B g / |g|^2 (step's batch)")]
    if (table["metric"] == "hessian_trace").any():
        panels.append(("hessian_trace", "Hessian trace (Hutchinson, probe set)"))
    figure, axes = new_figure(1, len(panels), 7 * len(panels), 4.8)
    for ax, (metric, title) in zip(axes[0], panels, strict=True):
        for model in _models(table):
            rows = metric_rows(table, metric, model=model)
            draw_seed_mean(ax, rows[rows["value"] > 0], model, log=True,
                           marker="o", markersize=3)
        if metric in THRESHOLD_METRICS:
            for name, value in thresholds.items():
                ax.axhline(value, color="black", linestyle=THRESHOLD_STYLES[name], linewidth=0.9,
                           label=f"{name} = {value:.1f}")
        ax.set(title=title, xlabel="Step", ylabel=metric.replace("_", " "), yscale="log")
    axes[0, 1].legend(fontsize=8)
    return figure


@styled
def noisy_shift_figure(table: pd.DataFrame, layers: Sequence[str]) -> Figure:
    """The paper's activation-shift plot for no BN, BN and noisy BN: |delta mu| (top) and
    |delta sigma^2| (bottom) between consecutive snapshots, per layer, against the step."""
    shown = [layer for layer in layers if layer in set(table["layer"])]
    cols = max(1, len(shown))
    figure, axes = new_figure(2, cols, 3.6 * cols, 6.6)
    if not shown:
        omitted_panel(axes[0, 0], "no activation snapshots")
        hide_unused(axes, 1)
        return figure
    for col, layer in enumerate(shown):
        for row, (metric, name) in enumerate([("delta_mu", "|delta mu|"),
                                              ("delta_var", "|delta sigma^2|")]):
            ax = axes[row, col]
            part = table[table["layer"] == layer]
            for model in _models(table):
                rows = part[part["model"] == model].rename(columns={metric: "value"})
                draw_seed_mean(ax, rows[rows["value"] > 0], model, log=True, marker="o",
                               markersize=2)
            ax.set(title=f"{layer}: {name}", xlabel="Step", yscale="log")
    axes[0, 0].legend(fontsize=8)
    return figure


@styled
def normalizations_figure(table: pd.DataFrame) -> Figure:
    """Smoothed training loss and test accuracy of every model against the step."""
    figure, axes = new_figure(1, 2, 14, 4.6)
    for ax, (metric, title, log) in zip(
            axes[0], [("train_loss", "Training loss (moving average)", True),
                      ("test_accuracy", "Test accuracy", False)], strict=True):
        for model in _models(table):
            style = {"marker": "o", "markersize": 3} if metric == "test_accuracy" else {}
            draw_seed_mean(ax, metric_rows(table, metric, model=model), model, log=log,
                           **style)
        ax.set(title=title, xlabel="Step", yscale="log" if log else "linear")
    axes[0, 1].legend(fontsize=8)
    return figure
