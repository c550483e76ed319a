"""Figures of the questions only beyond_study asks: curvature against the stability thresholds,
and the activation shift of noisy BatchNorm over training (the paper's plot). The study's
other figures, a line per model, are the general ones (:mod:`bnstudy.reporting.figures`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from bnstudy.analysis.beyond import THRESHOLD_METRICS
from bnstudy.reporting.plotting import (
    draw_seed_mean,
    hide_unused,
    metric_rows,
    models_in,
    new_figure,
    omitted_panel,
    styled,
)

THRESHOLD_STYLES = {"2/eta": "--", "2(1-beta)/eta": ":", "2(1+beta)/eta": "-."}


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
        for model in models_in(table):
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
def noisy_shift_figure(table: pd.DataFrame, models: Sequence[str], layers: Sequence[str]) -> Figure:
    """The paper's activation-shift plot for ``models`` (no BN, BN, noisy BN): |delta mu| (top)
    and |delta sigma^2| (bottom) between consecutive snapshots, per layer, against the step.

    ``table``: the study's tidy ``activation_shift_table`` (metrics ``delta_mu``, ``delta_var``).
    """
    shown = [layer for layer in layers if layer in set(table["layer"])]
    cols = max(1, len(shown))
    figure, axes = new_figure(2, cols, 3.6 * cols, 6.6)
    drawn = [model for model in models_in(table) if model in models]
    if not shown or not drawn:
        omitted_panel(axes[0, 0], "no activation snapshots" if drawn else
                      "no model of the noise question in this study")
        hide_unused(axes, 1)
        return figure
    for col, layer in enumerate(shown):
        for row, (metric, name) in enumerate([("delta_mu", "|delta mu|"),
                                              ("delta_var", "|delta sigma^2|")]):
            ax = axes[row, col]
            for model in drawn:
                rows = metric_rows(table, metric, model=model, layer=layer)
                draw_seed_mean(ax, rows[rows["value"] > 0], model, log=True, marker="o",
                               markersize=2)
            ax.set(title=f"{layer}: {name}", xlabel="Step", yscale="log")
    axes[0, 0].legend(fontsize=8)
    return figure
