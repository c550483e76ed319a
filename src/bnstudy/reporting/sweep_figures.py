"""The learning-rate sweep's figures (``lr_sweep_study``; Santurkar et al. 2018, Figs 1 and 3):
the final training loss and test accuracy against the learning rate, the training and test
curves at chosen rates, and the gradient ICS at chosen rates. Pure matplotlib (no pyplot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter

from bnstudy.reporting.plotting import (
    draw_seed_mean,
    hide_unused,
    model_color,
    model_label,
    new_figure,
    omitted_panel,
    seed_summary,
    shared_legend,
    styled,
)

SWEEP_PANELS = (("final_train_loss", "final training loss (log)"),
                ("final_test_accuracy", "final test accuracy"),
                ("diverged", "seeds diverged"))
"""The panels of :func:`sweep_figure`: (column of the runs table, y label)."""


@styled
def sweep_figure(runs: pd.DataFrame) -> Figure:
    """Per model, against the learning rate (log axis): the final training loss and test
    accuracy (mean across the seeds that did not diverge, 95% t-interval error bars) and the
    number of seeds that diverged."""
    figure, axes = new_figure(1, len(SWEEP_PANELS), 14, 4.2)
    for ax, (column, ylabel) in zip(axes[0], SWEEP_PANELS, strict=True):
        for model, rows in runs.groupby("model", sort=False):
            grouped = rows.groupby("learning_rate", sort=True)[column]
            rates = np.array(sorted(grouped.groups))
            if column == "diverged":
                ax.plot(rates, grouped.sum().to_numpy(int), marker="o", color=model_color(model),
                        label=model_label(model))
                continue
            means, halves = np.array([seed_summary(grouped.get_group(r).astype(float)) for r in rates]).T
            ax.errorbar(rates, means, yerr=halves, fmt="-o", capsize=3, color=model_color(model),
                        label=model_label(model))
        ax.set(xscale="log", xlabel="learning rate", ylabel=ylabel)
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_minor_formatter(NullFormatter())
        if column == "final_train_loss":
            ax.set_yscale("log")
        if column == "final_test_accuracy":
            ax.set_ylim(0, 1)
        if column == "diverged":
            ax.set_ylim(-0.2, max(1, runs.groupby(["model", "learning_rate"]).size().max()) + 0.2)
            ax.yaxis.get_major_locator().set_params(integer=True)
    axes[0, 0].set_title("Final training loss")
    axes[0, 1].set_title("Final test accuracy")
    axes[0, 2].set_title("Seeds that diverged")
    shared_legend(figure, axes)
    return figure


def _at(frame: pd.DataFrame, rate: float, column: str) -> pd.DataFrame:
    rows = frame[np.isclose(frame["learning_rate"], rate)] if "learning_rate" in frame.columns else frame
    return rows.rename(columns={column: "value"})[["seed", "step", "value"]]


@styled
def curves_figure(training: Mapping[str, pd.DataFrame], evals: Mapping[str, pd.DataFrame],
                  rates: Sequence[float]) -> Figure:
    """The paper's Fig 1: per learning rate (rows), the training loss of each step's batch
    (log axis) and the test accuracy against the step, each model's mean across seeds with
    its 95% band. A rate no model trained at says so in its row."""
    figure, axes = new_figure(len(rates), 2, 12, 3.8 * len(rates))
    for row, rate in enumerate(rates):
        loss_ax, accuracy_ax = axes[row]
        drawn = False
        for model, frame in training.items():
            loss = _at(frame, rate, "train_loss")
            if loss.empty:
                continue
            drawn = True
            draw_seed_mean(loss_ax, loss, model, log=True, marker="")
            draw_seed_mean(accuracy_ax, _at(evals[model], rate, "test_accuracy"), model, bounds=(0, 1))
        if not drawn:
            omitted_panel(loss_ax, f"No model trained at lr {rate:g}.")
            accuracy_ax.set_visible(False)
            continue
        loss_ax.set(yscale="log", xlabel="step", ylabel="training loss (log)",
                    title=f"Training loss, lr {rate:g}")
        accuracy_ax.set(xlabel="step", ylabel="test accuracy", ylim=(0, 1),
                        title=f"Test accuracy, lr {rate:g}")
    shared_legend(figure, axes)
    return figure


@styled
def ics_figure(ics: Mapping[str, pd.DataFrame], rates: Sequence[float], layers: Sequence[str],
               preset: str) -> Figure:
    """The paper's Fig 3: per learning rate (rows) and layer (columns), the gradient ICS (L2
    distance, log axis) of protocol ``preset`` at the measured steps, each model's mean
    across seeds with its 95% band."""
    figure, axes = new_figure(len(rates), len(layers), 4.4 * len(layers), 3.6 * len(rates))
    for row, rate in enumerate(rates):
        for col, layer in enumerate(layers):
            ax = axes[row, col]
            for model, frame in ics.items():
                rows = frame[(frame["preset"] == preset) & (frame["layer"] == layer)
                             & (frame["param"] == "all")]
                rows = _at(rows, rate, "ics_l2")
                if not rows.empty:
                    draw_seed_mean(ax, rows, model, log=True)
            if not ax.lines:
                omitted_panel(ax, f"Nothing to draw on a log axis at lr {rate:g} in {layer}: "
                                  "not measured, or zero at every measured step (the first "
                                  "layer's ICS in training mode is zero by definition).")
                continue
            ax.set(yscale="log", xlabel="step", ylabel="ICS, L2 (log)",
                   title=f"{layer}, lr {rate:g} ({preset} protocol)")
    hide_unused(axes, len(rates) * len(layers))
    shared_legend(figure, axes)
    return figure
