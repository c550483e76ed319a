"""The study's curve and per-layer figures, drawn from the analysis's tidy tables.

Pure plotting (no Kedro): each ``*_figure`` function takes a tidy table (columns ``model,
seed, step, layer, preset, metric, value``) and returns a matplotlib ``Figure``;
:func:`bnstudy.reporting.plotting.to_png` renders one to bytes. Curves over steps are the
mean across seeds with a 95% t-interval band (:func:`bnstudy.reporting.plotting.seed_band`);
per-layer values carry 95% t-interval error bars across seeds. Every model of the table is
drawn, each in its own colour everywhere (:func:`bnstudy.reporting.plotting.model_color`). The activation histograms are
in :mod:`bnstudy.reporting.histograms`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from bnstudy.reporting.plotting import (
    draw_range_band,
    draw_seed_mean,
    metric_rows,
    model_color,
    model_label,
    models_in,
    new_figure,
    note_figure,
    omitted_panel,
    presets,
    seed_summary,
    shared_legend,
    styled,
)


@styled
def training_curves_figure(table: pd.DataFrame) -> Figure:
    """Training loss (log), batch training accuracy and test accuracy against the step; for
    a regression (no accuracy: the DLN's) training loss and test loss, both on log axes."""
    accuracy = metric_rows(table, "test_accuracy")["value"]
    if accuracy.notna().any():
        panels = [("train_loss", "Training loss (batch)", True),
                  ("train_accuracy", "Training accuracy (batch, after the update)", False),
                  ("test_accuracy", "Test accuracy (full test set)", False)]
    else:
        panels = [("train_loss", "Training loss (full batch)", True),
                  ("test_loss", "Test loss (held-out samples)", True)]
    figure, axes = new_figure(1, len(panels), 16 * len(panels) / 3, 4.2)
    for ax, (metric, title, log) in zip(axes[0], panels, strict=True):
        for model in models_in(table):
            style = ({"marker": "o", "markersize": 3} if metric.startswith("test_")
                     else {"linewidth": 0.8})
            draw_seed_mean(ax, metric_rows(table, metric, model=model), model, log=log,
                           bounds=None if log else (0.0, 1.0), **style)
        ax.set(title=title, xlabel="Step", ylabel=title.split(" (")[0])
        if log:
            ax.set_yscale("log")
    shared_legend(figure, axes)
    return figure


def _range_figure(table: pd.DataFrame, low: str, high: str, compared: str, title: str,
                  band_label: str, compared_label: str) -> Figure:
    """Per protocol: the seed-mean min-to-max band over s (top, as the paper draws it) and the
    compared quantity's seed mean with its 95% interval (bottom, log axis)."""
    names = presets(table)
    figure, axes = new_figure(2, len(names), 7.5 * len(names), 7.6)
    for col, preset in enumerate(names):
        top, bottom = axes[0, col], axes[1, col]
        for model in models_in(table):
            lo = metric_rows(table, low, preset=preset, model=model).groupby("step")["value"].mean()
            hi = metric_rows(table, high, preset=preset, model=model).groupby("step")["value"].mean()
            lo, hi = lo.align(hi, join="inner")
            draw_range_band(top, lo.index, lo.to_numpy(), hi.to_numpy(), model)
            draw_seed_mean(bottom, metric_rows(table, compared, preset=preset, model=model), model, log=True)
        top.set(title=f"{title} ({preset} protocol)", xlabel="Step", ylabel=band_label)
        bottom.set(title=f"{compared_label} ({preset} protocol)", xlabel="Step", ylabel=compared_label,
                   yscale="log")
    shared_legend(figure, axes, ranges=True)
    return figure


@styled
def loss_landscape_figure(table: pd.DataFrame) -> Figure:
    """Loss along the gradient direction: min-to-max band over s, and its range per step."""
    return _range_figure(table, "probe_loss_min", "probe_loss_max", "loss_range", "Loss landscape",
                         "Loss along the gradient (min to max over s)", "Loss range (max - min over s)")


@styled
def gradient_predictiveness_figure(table: pd.DataFrame) -> Figure:
    """``||grad L(W(s)) - g_t||`` over s: min-to-max band, and its max per step."""
    return _range_figure(table, "grad_diff_min", "grad_diff_max", "grad_diff_max", "Gradient predictiveness",
                         "||grad L(W(s)) - g_t|| (min to max over s)", "max over s of ||grad L(W(s)) - g_t||")


@styled
def beta_smoothness_figure(table: pd.DataFrame) -> Figure:
    """Effective beta-smoothness per step, one panel per protocol (log)."""
    names = presets(table)
    figure, axes = new_figure(1, len(names), 7.5 * len(names), 4.2)
    for ax, preset in zip(axes[0], names, strict=True):
        for model in models_in(table):
            draw_seed_mean(ax, metric_rows(table, "beta_smoothness", preset=preset, model=model), model, log=True)
        ax.set(title=f"Effective beta-smoothness ({preset} protocol)", xlabel="Step",
               ylabel="Effective beta-smoothness", yscale="log")
    shared_legend(figure, axes)
    return figure


def zero_by_definition(records: Mapping[str, Mapping[str, Any]]) -> dict[str, set[tuple[str, str]]]:
    """Per model, the ``(preset, layer)`` ICS values that are zero by definition: the first
    layer's, where nothing but the preceding layers' update could change its gradient (and
    none precede it). That holds in every protocol of ``none`` (its train and eval modes are
    one function), and for every other kind in the protocols that measure ICS in train mode:
    the step's own batch statistics and noise. In eval mode BN's running statistics, or the
    absence of ``noisy``'s training-mode noise, change the first layer's gradient too. What a
    run records where it is zero is float rounding.

    Args:
        records: ``{model: run_record}`` (``layers``, ``measurement_configs``, ``model_config``).
    """
    zero = {}
    for model, record in records.items():
        layers = record.get("layers") or []
        modes_differ = record.get("model_config", {}).get("normalization", "none") != "none"
        zero[model] = {(m["name"], layers[0]) for m in record.get("measurement_configs", [])
                       if layers and (not modes_differ or m.get("ics_mode") == "train")}
    return zero


def _ics_panel(ax: Axes, table: pd.DataFrame, preset: str, metric: str, layer: str,
               zero: Mapping[str, set[tuple[str, str]]]) -> None:
    """One ICS panel: each model's seed-mean curve, or a note where it is zero by definition."""
    models = models_in(table)
    skipped = [model_label(m) for m in models if (preset, layer) in zero.get(m, set())]
    if len(skipped) == len(models):
        omitted_panel(ax, f"{layer}, {preset}: ICS zero by definition\n(no layer precedes it): omitted")
        return
    for model in models:
        if (preset, layer) not in zero.get(model, set()):
            draw_seed_mean(ax, metric_rows(table, metric, preset=preset, model=model, layer=layer), model,
                           log=metric == "ics_l2", linewidth=0.8)
    if skipped:
        ax.text(0.02, 0.03, f"{', '.join(skipped)}: zero by definition, not drawn", transform=ax.transAxes,
                fontsize=7)
    name = "ICS L2 distance" if metric == "ics_l2" else "ICS cosine"
    ax.set(title=f"{layer}: {name} ({preset})", xlabel="Step", ylabel=name, yscale="log" if metric == "ics_l2"
           else "linear")
    ax.title.set_fontsize(9)


@styled
def gradient_ics_figure(table: pd.DataFrame, layers: Sequence[str],
                        zero: Mapping[str, set[tuple[str, str]]] | None = None) -> Figure:
    """ICS L2 distance (log) and cosine per layer: rows = layers, columns = protocol x metric.

    ``zero``: per model, the ``(preset, layer)`` values zero by definition
    (:func:`zero_by_definition`): not drawn, and the panel says so (rounding noise on a log
    axis would look like data).
    """
    names = presets(table)
    available = [layer for layer in layers if layer in set(table["layer"])]
    columns = [(preset, metric) for preset in names for metric in ("ics_l2", "ics_cosine")]
    figure, axes = new_figure(len(available), len(columns), 4.6 * len(columns), 2.6 * len(available))
    for row, layer in enumerate(available):
        for col, (preset, metric) in enumerate(columns):
            _ics_panel(axes[row, col], table, preset, metric, layer, zero or {})
    shared_legend(figure, axes)
    return figure


def _per_layer_errorbars(ax: Axes, values: pd.DataFrame, layers: Sequence[str]) -> None:
    """Per model and layer: mean across seeds with 95% t-interval error bars."""
    positions = {layer: i for i, layer in enumerate(layers)}
    models = models_in(values)
    offsets = np.linspace(-0.12, 0.12, len(models)) if len(models) > 1 else np.zeros(1)
    for offset, model in zip(offsets, models, strict=False):
        rows = values[values["model"] == model]
        summary = [seed_summary(rows.loc[rows["layer"] == layer, "value"]) for layer in layers]
        means, halves = np.array(summary).T if summary else (np.array([]), np.array([]))
        ax.errorbar(np.arange(len(layers)) + offset, means, yerr=halves, fmt="o", capsize=3,
                    color=model_color(model), label=model_label(model))
    ax.set_xticks(range(len(positions)), list(positions), rotation=45)


GEOMETRY_PANELS = (
    ("abs", "||W - W_0||_F", "Distance from initialization"),
    ("rel", "||W - W_0||_F / ||W_0||_F", "Relative to the initial norm"),
    ("angle", "angle to W_0 (degrees)", "Direction: the angle to W_0"),
    ("norm_growth", "||W|| / ||W_0||", "Scale: growth of the norm"),
    ("effective_lr", "lr / ||W||^2", "Effective learning rate"),
    ("gamma_over_sigma", "|gamma| / sigma (mean over channels)", "Normalization scale"),
)
"""The panels of :func:`init_distance_figure`: (metric, y label, title)."""


@styled
def init_distance_figure(table: pd.DataFrame) -> Figure:
    """Per layer at the end of training: the distance from initialization (absolute and
    relative), the angle to W_0, the norm's growth, the effective learning rate and (at the
    last snapshot, the end having no batch) a normalization layer's |gamma| / sigma; each the
    mean across seeds with 95% t-interval error bars. A trace without a metric (one written
    before the geometry was recorded) leaves its panel out."""
    panels = [panel for panel in GEOMETRY_PANELS if (table["metric"] == panel[0]).any()]
    layers = list(dict.fromkeys(table["layer"]))
    columns = min(3, len(panels))
    figure, axes = new_figure(-(-len(panels) // columns), columns, 4.4 * columns,
                              4.2 * -(-len(panels) // columns))
    for ax, (metric, ylabel, title) in zip(axes.reshape(-1), panels, strict=False):
        values = table[(table["metric"] == metric) & np.isfinite(table["value"])]
        final = values[values["step"] == values["step"].max()]
        if metric == "angle":
            final = final.assign(value=np.degrees(final["value"]))
        _per_layer_errorbars(ax, final, [layer for layer in layers if layer in set(final["layer"])])
        ax.set(xlabel="Layer", ylabel=ylabel, title=f"{title} (step {final['step'].max()})")
        if metric == "effective_lr":
            ax.set_yscale("log")
    for ax in axes.reshape(-1)[len(panels):]:
        ax.set_visible(False)
    shared_legend(figure, axes)
    return figure


@styled
def activation_shift_figure(table: pd.DataFrame) -> Figure:
    """Per layer: each seed's median between-snapshot |delta mu| and |delta sigma^2|, then the
    mean across seeds with 95% t-interval error bars (log)."""
    figure, axes = new_figure(1, 2, 13, 4.2)
    shift = table[table["metric"].isin(["delta_mu", "delta_var"])]
    per_seed = shift.groupby(["model", "seed", "layer", "metric"], sort=False)["value"].median().reset_index()
    layers = list(dict.fromkeys(per_seed["layer"]))
    for ax, (metric, name) in zip(axes[0], [("delta_mu", "|delta mu|"), ("delta_var", "|delta sigma^2|")],
                                  strict=True):
        _per_layer_errorbars(ax, per_seed[per_seed["metric"] == metric], layers)
        ax.set(title=f"{name} between snapshots (mean over channels)", xlabel="Layer",
               ylabel=f"Median {name} over snapshots", yscale="log")
    shared_legend(figure, axes)
    return figure


WIDE_RANGE = 100.0  # a row whose values span more than this factor gets a log y-axis


def _shared_row_scale(row: np.ndarray, values: pd.Series) -> None:
    """One y-range for a row of Fig 11's panels (the models side by side read on one scale),
    on a log axis when the positive values span more than :data:`WIDE_RANGE` (the blog
    protocol's eval-mode differences run over decades, which a linear axis flattens)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.empty:
        return
    low, high = float(positive.min()), float(positive.max())
    for ax in row:
        if high / low > WIDE_RANGE:
            ax.set_yscale("log")
            ax.set_ylim(low / 1.2, high * 1.2)
        else:
            ax.set_ylim(0.0, high * 1.05)


@styled
def gradient_difference_figure(table: pd.DataFrame) -> Figure:
    """The paper's Fig 11: ||grad L(W - s lr g) - g|| against the distance s lr ||g||, one line
    per (model, measured step), coloured by the step (``table``:
    :func:`bnstudy.analysis.tables.gradient_difference_curves`). One panel per model (columns)
    and per protocol and learning rate (rows); a colour bar gives the step."""
    if table.empty:
        return note_figure("Gradient difference against distance (Fig 11)",
                           "No probe was measured (measurements off), so nothing to draw.")
    models = models_in(table)
    rows = list(table.groupby(["preset", "learning_rate"], sort=True).groups)
    figure, axes = new_figure(len(rows), len(models), 5.2 * len(models), 3.8 * len(rows))
    steps = table["step"].to_numpy()
    norm = Normalize(vmin=float(steps.min()), vmax=float(max(steps.max(), steps.min() + 1)))
    cmap = colormaps["viridis"]
    for i, (preset, rate) in enumerate(rows):
        for j, model in enumerate(models):
            ax = axes[i, j]
            part = table[(table.preset == preset) & (table.learning_rate == rate)
                         & (table.model == model)]
            for step, curve in part.groupby("step", sort=True):
                ax.plot(curve["distance"], curve["grad_diff"], color=cmap(norm(step)),
                        lw=0.8, alpha=0.8)
            ax.set_title(f"{model_label(model)}: {preset} protocol, lr {rate:g}", fontsize=10)
            ax.set_xlabel("distance moved along the gradient, s lr ||g||")
            ax.set_ylabel("||grad L(W - s lr g) - g||")
        _shared_row_scale(axes[i], table[(table.preset == preset) & (table.learning_rate == rate)]["grad_diff"])
    figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(),
                    label="training step")
    return figure
