"""The study's figures, drawn with seaborn/matplotlib from the analysis tables.

Pure plotting (no Kedro): each ``*_figure`` function takes tidy tables (columns ``model,
step, layer, preset, metric, value``) or activation histograms and returns a matplotlib
``Figure``; :func:`to_png` renders one to bytes. Baseline = without BatchNorm, candidate =
with BatchNorm, in the same colours everywhere.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures are files, never windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

MODEL_LABELS = {"baseline": "Without BatchNorm", "candidate": "With BatchNorm"}
MODEL_COLORS = {"baseline": "#1f77b4", "candidate": "#d62728"}
PALETTE = {MODEL_LABELS[m]: c for m, c in MODEL_COLORS.items()}

sns.set_theme(style="darkgrid", context="notebook")


def to_png(figure: plt.Figure, dpi: int = 110) -> bytes:
    """Render ``figure`` to PNG bytes and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _labelled(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(Model=table["model"].map(MODEL_LABELS))


def _metric(table: pd.DataFrame, metric: str, **filters: str) -> pd.DataFrame:
    mask = table["metric"] == metric
    for column, value in filters.items():
        mask &= table[column] == value
    return table[mask]


def _presets(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["preset"]))


def training_curves_figure(table: pd.DataFrame) -> plt.Figure:
    """Training loss, batch training accuracy and test accuracy against the step."""
    data = _labelled(table)
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, (metric, title) in zip(
        axes,
        [("train_loss", "Training loss"), ("train_accuracy", "Training accuracy (batch, after the update)"),
         ("test_accuracy", "Test accuracy")],
        strict=True,
    ):
        part = _metric(data, metric)
        for model, label in MODEL_LABELS.items():
            rows = part[part["model"] == model]
            style = {"marker": "o", "markersize": 3} if metric == "test_accuracy" else {"alpha": 0.6, "linewidth": 0.8}
            ax.plot(rows["step"], rows["value"], color=MODEL_COLORS[model], label=label, **style)
        ax.set_title(title)
        ax.set_xlabel("Step")
    axes[0].set_yscale("log")
    axes[2].legend()
    figure.tight_layout()
    return figure


def _band_figure(table: pd.DataFrame, low: str, high: str, title: str, ylabel: str) -> plt.Figure:
    presets = _presets(table)
    figure, axes = plt.subplots(1, len(presets), figsize=(7.5 * len(presets), 4.2), squeeze=False)
    for ax, preset in zip(axes[0], presets, strict=True):
        for model, label in MODEL_LABELS.items():
            lo = _metric(table, low, preset=preset, model=model).set_index("step")["value"]
            hi = _metric(table, high, preset=preset, model=model).set_index("step")["value"]
            lo, hi = lo.align(hi, join="inner")
            ax.fill_between(lo.index, lo.to_numpy(), hi.to_numpy(), color=MODEL_COLORS[model],
                            alpha=0.55, linewidth=0, label=label)
        ax.set_yscale("log")
        ax.set_title(f"{title} ({preset} protocol)")
        ax.set_xlabel("Step")
        ax.set_ylabel(ylabel)
        ax.legend()
    figure.tight_layout()
    return figure


def loss_landscape_figure(table: pd.DataFrame) -> plt.Figure:
    """Band between the min and max loss along the gradient direction, per step (log)."""
    return _band_figure(table, "probe_loss_min", "probe_loss_max", "Loss landscape", "Loss along the gradient (min to max over s)")


def gradient_predictiveness_figure(table: pd.DataFrame) -> plt.Figure:
    """Band of ``||grad L(W(s)) - g_t||`` over s, per step (log)."""
    return _band_figure(table, "grad_diff_min", "grad_diff_max", "Gradient predictiveness",
                        "||grad L(W(s)) - g_t|| over s")


def beta_smoothness_figure(table: pd.DataFrame) -> plt.Figure:
    """Effective beta-smoothness per step, one panel per protocol."""
    data = _labelled(_metric(table, "beta_smoothness"))
    grid = sns.relplot(data=data, x="step", y="value", hue="Model", col="preset", kind="line",
                       palette=PALETTE, linewidth=0.8, alpha=0.8, height=4, aspect=1.6,
                       facet_kws={"sharey": False}, errorbar=None)
    grid.set(yscale="log")
    grid.set_axis_labels("Step", "Effective beta-smoothness")
    grid.set_titles("Effective beta-smoothness ({col_name} protocol)")
    return grid.figure


def gradient_ics_figure(table: pd.DataFrame, layers: Sequence[str]) -> plt.Figure:
    """ICS L2 distance (log) and cosine per layer: rows = layers, columns = protocol x metric."""
    presets = _presets(table)
    available = [layer for layer in layers if layer in set(table["layer"])]
    columns = [(preset, metric) for preset in presets for metric in ("ics_l2", "ics_cosine")]
    figure, axes = plt.subplots(len(available), len(columns), figsize=(4.6 * len(columns), 2.3 * len(available)),
                                squeeze=False, sharex=True)
    for row, layer in enumerate(available):
        for col, (preset, metric) in enumerate(columns):
            ax = axes[row, col]
            for model, label in MODEL_LABELS.items():
                part = _metric(table, metric, preset=preset, model=model, layer=layer)
                ax.plot(part["step"], part["value"], color=MODEL_COLORS[model], label=label,
                        linewidth=0.7, alpha=0.75)
            if metric == "ics_l2":
                ax.set_yscale("log")
            name = "ICS L2 distance" if metric == "ics_l2" else "ICS cosine"
            ax.set_title(f"{layer}: {name} ({preset})", fontsize=9)
    axes[-1, 0].set_xlabel("Step")
    axes[0, -1].legend(fontsize=8)
    figure.tight_layout()
    return figure


def init_distance_figure(table: pd.DataFrame) -> plt.Figure:
    """Final ``||W - W_0||_F`` per layer (absolute and relative to ``||W_0||_F``)."""
    final = table[table["step"] == table["step"].max()]
    figure, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, (metric, ylabel) in zip(axes, [("abs", "||W - W_0||_F"), ("rel", "||W - W_0||_F / ||W_0||_F")],
                                    strict=True):
        for model, label in MODEL_LABELS.items():
            part = _metric(final, metric, model=model)
            ax.plot(part["layer"], part["value"], marker="o", color=MODEL_COLORS[model], label=label)
        ax.set_xlabel("Layer")
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", rotation=45)
    axes[0].set_title("Distance from initialization at the end of training")
    axes[1].set_title("Relative to the initial norm")
    axes[0].legend()
    figure.tight_layout()
    return figure


def activation_shift_figure(table: pd.DataFrame) -> plt.Figure:
    """Median between-snapshot |delta mu| and |delta sigma^2| per layer (log)."""
    data = _labelled(table[table["metric"].isin(["delta_mu", "delta_var"])])
    medians = data.groupby(["Model", "layer", "metric"], sort=False)["value"].median().reset_index()
    grid = sns.catplot(data=medians, x="layer", y="value", hue="Model", col="metric", kind="bar",
                       palette=PALETTE, height=4, aspect=1.6, sharey=False)
    grid.set(yscale="log")
    grid.set_axis_labels("Layer", "Median over snapshots")
    grid.set_titles("{col_name} between snapshots (mean over channels)")
    grid.tick_params(axis="x", rotation=45)
    return grid.figure


def _snapshot_hist(histograms: Mapping[str, Any], layer: str, index: int) -> np.ndarray:
    return np.asarray(histograms["layers"][layer]["hist_counts"])[index]


def _draw_hist(ax: plt.Axes, edges: np.ndarray, counts: np.ndarray, model: str, legend: str | None = None) -> None:
    ax.stairs(counts, edges, fill=True, alpha=0.55, color=MODEL_COLORS[model], label=legend)


def activation_histograms_figure(histograms: Mapping[str, Mapping[str, Any]], layers: Sequence[str],
                                 num_snapshots: int) -> plt.Figure:
    """Small multiples: rows = layers, columns = evenly spaced snapshots; both models overlaid."""
    base = histograms["baseline"]
    steps = np.asarray(base["steps"])
    picks = np.unique(np.linspace(0, steps.size - 1, min(num_snapshots, steps.size)).round().astype(int))
    layers = [layer for layer in layers if layer in base["layers"]]
    edges = np.asarray(base["hist_edges"])
    figure, axes = plt.subplots(len(layers), picks.size, figsize=(3.0 * picks.size, 1.5 * len(layers)),
                                squeeze=False, sharex=True)
    for row, layer in enumerate(layers):
        for col, index in enumerate(picks):
            ax = axes[row, col]
            for model, label in MODEL_LABELS.items():
                _draw_hist(ax, edges, _snapshot_hist(histograms[model], layer, index), model,
                           label if (row, col) == (0, picks.size - 1) else None)
            ax.set_xlim(edges[0], edges[-1])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"step {steps[index]}", fontsize=9)
            if col == 0:
                ax.set_ylabel(layer, fontsize=9)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    figure.suptitle("Pre-activation distributions over training (fixed-edge histograms)")
    figure.tight_layout()
    return figure


def _mean_std_from_stats(stats: pd.DataFrame, layer: str, step: int) -> tuple[float, float]:
    row = stats[(stats["layer"] == layer) & (stats["step"] == step)]
    return (float(row["mean"].iloc[0]), float(row["std"].iloc[0])) if len(row) else (float("nan"), float("nan"))


def activation_animation_gif(histograms: Mapping[str, Mapping[str, Any]], stats: Mapping[str, pd.DataFrame],
                             layers: Sequence[str], fps: int = 3) -> bytes:
    """The blog's animation: a 6x2 grid of layer histograms, one frame per snapshot, as GIF.

    Legends give each model's mean +- std of the layer's activations at that snapshot.
    """
    base = histograms["baseline"]
    steps = np.asarray(base["steps"])
    edges = np.asarray(base["hist_edges"])
    layers = [layer for layer in layers if layer in base["layers"]]
    rows = int(np.ceil(len(layers) / 2))
    figure, axes = plt.subplots(rows, 2, figsize=(9, 1.9 * rows), constrained_layout=True, squeeze=False)
    axes = axes.reshape(-1)
    for extra in axes[len(layers):]:
        extra.set_visible(False)

    def draw(frame: int) -> None:
        for ax, layer in zip(axes, layers, strict=False):
            ax.cla()
            legend = []
            for model in MODEL_LABELS:
                _draw_hist(ax, edges, _snapshot_hist(histograms[model], layer, frame), model)
                mean, std = _mean_std_from_stats(stats[model], layer, int(steps[frame]))
                legend.append(f"{'Baseline' if model == 'baseline' else 'Candidate'}: {mean:0.2f} ± {std:0.2f}")
            ax.set_xlim(edges[0], edges[-1])
            ax.set_title(f"{layer} outputs - step {steps[frame]}", fontsize=9)
            ax.legend(legend, fontsize=7, loc="upper right")

    animation = FuncAnimation(figure, draw, frames=steps.size, interval=1000 // fps)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "activations.gif"
        animation.save(path, writer=PillowWriter(fps=fps))
        plt.close(figure)
        return path.read_bytes()
