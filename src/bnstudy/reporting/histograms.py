"""Figures of the pre-activation histograms: small multiples over training, the final
snapshot, and the blog's animation.

Input: each model's ``activation_histograms`` as the training pipeline persists them,
``{"seed_<k>": {steps [K], hist_edges [B+1], layers: {layer: {hist_counts [K, B], ...}}}}``
(a single run without seed keys is accepted too). Histograms are not averaged across seeds:
every figure here shows one seed, :func:`pick_seed` (the first of the run's seeds). The
histograms have fixed edges (``training.histogram_range``); each layer's x-range is taken
from the data (:func:`robust_range`) and kept the same in every panel and frame.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bnstudy.reporting.plotting import hide_unused, model_color, model_label, new_figure, styled

Histograms = Mapping[str, Any]  # one seed: steps, hist_edges, layers
# Each layer's x-range: the central mass between these quantiles, padded by RANGE_PAD of it.
RANGE_QUANTILES = (0.005, 0.995)
RANGE_PAD = 0.05


def pick_seed(histograms: Mapping[str, Any], seeds: Sequence[int] | None = None) -> tuple[int | None, Histograms]:
    """``(seed, that seed's histograms)``: ``seeds[0]`` when given and present, else the
    first stored seed; ``(None, histograms)`` for a single run without seed keys."""
    if "layers" in histograms:
        return None, histograms
    key = f"seed_{seeds[0]}" if seeds and f"seed_{seeds[0]}" in histograms else next(iter(histograms))
    picked = histograms[key]
    if "layers" not in picked:  # a learning-rate sweep: {"lr_<x>": ...} per seed, the first rate
        picked = next(iter(picked.values()))
    return int(key.removeprefix("seed_")), picked


def _one_seed(histograms: Mapping[str, Mapping[str, Any]], seeds: Sequence[int] | None
              ) -> tuple[int | None, dict[str, Histograms]]:
    """The seed shown and every model's histograms of it, in the order of ``histograms``
    (``{model: activation_histograms}``, the study's models)."""
    seed = pick_seed(next(iter(histograms.values())), seeds)[0]
    chosen = [seed] if seed is not None else seeds
    return seed, {model: pick_seed(h, chosen)[1] for model, h in histograms.items()}


def robust_range(counts: np.ndarray, edges: np.ndarray, quantiles: tuple[float, float] = RANGE_QUANTILES,
                 pad: float = RANGE_PAD) -> tuple[float, float]:
    """The x-range holding the central ``quantiles`` of a histogram's mass, padded by ``pad``.

    Args:
        counts: ``[..., B]`` counts over fixed bins (summed over every leading axis, e.g. all
            snapshots of a layer and every model).
        edges: ``[B + 1]`` bin edges.
        quantiles: Lower and upper mass fractions to keep.
        pad: Fraction of the range added on each side (clipped to the edges).

    Returns:
        ``(low, high)`` in the units of ``edges``; all of ``edges`` when the counts are empty.
    """
    total = np.asarray(counts, dtype=float).reshape(-1, len(edges) - 1).sum(axis=0)
    if total.sum() <= 0:
        return float(edges[0]), float(edges[-1])
    cdf = np.cumsum(total) / total.sum()
    first = int(np.searchsorted(cdf, quantiles[0], side="left"))
    last = int(np.searchsorted(cdf, quantiles[1], side="left"))
    low, high = float(edges[first]), float(edges[min(last + 1, len(edges) - 1)])
    margin = pad * (high - low)
    return max(float(edges[0]), low - margin), min(float(edges[-1]), high + margin)


def _layers(per_model: Mapping[str, Histograms], layers: Sequence[str]) -> list[str]:
    return [layer for layer in layers if all(layer in h["layers"] for h in per_model.values())]


def _counts(histograms: Histograms, layer: str) -> np.ndarray:
    return np.asarray(histograms["layers"][layer]["hist_counts"], dtype=float)


def layer_limits(per_model: Mapping[str, Histograms], layers: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Per layer: ``(x_low, x_high, y_max)`` shared by every model and every snapshot."""
    limits = {}
    for layer in layers:
        edges = np.asarray(next(iter(per_model.values()))["hist_edges"])
        counts = np.stack([_counts(h, layer) for h in per_model.values()])
        low, high = robust_range(counts, edges)
        inside = (edges[1:] > low) & (edges[:-1] < high)
        limits[layer] = (low, high, 1.05 * float(counts[..., inside].max(initial=0.0)) or 1.0)
    return limits


def _draw(ax: Axes, histograms: Histograms, layer: str, index: int, model: str, label: str | None) -> None:
    ax.stairs(_counts(histograms, layer)[index], np.asarray(histograms["hist_edges"]), fill=True, alpha=0.55,
              color=model_color(model), label=label)


def _frame_axes(ax: Axes, limits: tuple[float, float, float], ylabel: str = "Count") -> None:
    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(0, limits[2])
    ax.set_xlabel("Pre-activation value", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=6)


def snapshot_picks(steps: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` snapshots evenly spaced in *steps* (the first and the last
    included): each the snapshot nearest to its even step, none twice. Snapshots taken at an
    uneven cadence (every k-th step and the last) are so shown at even intervals of training."""
    steps = np.asarray(steps)
    targets = np.linspace(steps[0], steps[-1], min(count, steps.size))
    return np.unique([int(np.abs(steps - target).argmin()) for target in targets])


def grid_layers(layers: Sequence[str], chosen: Sequence[str] | None, rows: int = 4) -> list[str]:
    """The rows of the readable histogram grid: ``chosen`` (``reporting.histogram_layers``)
    when given, else ``rows`` layers evenly spaced through ``layers`` (the first and last
    included)."""
    if chosen:
        return list(chosen)
    layers = list(layers)
    if len(layers) <= rows:
        return layers
    return [layers[i] for i in np.unique(np.linspace(0, len(layers) - 1, rows).round().astype(int))]


@styled
def activation_histograms_figure(histograms: Mapping[str, Mapping[str, Any]], layers: Sequence[str],
                                 num_snapshots: int, seeds: Sequence[int] | None = None) -> Figure:
    """Small multiples of one seed: rows = layers, columns = evenly spaced snapshots."""
    seed, per_model = _one_seed(histograms, seeds)
    steps = np.asarray(next(iter(per_model.values()))["steps"])
    picks = snapshot_picks(steps, num_snapshots)
    layers = _layers(per_model, layers)
    limits = layer_limits(per_model, layers)
    figure, axes = new_figure(len(layers), picks.size, 3.0 * picks.size, 1.8 * len(layers))
    for row, layer in enumerate(layers):
        for col, index in enumerate(picks):
            ax = axes[row, col]
            for model in per_model:
                _draw(ax, per_model[model], layer, index, model,
                      model_label(model) if (row, col) == (0, picks.size - 1) else None)
            _frame_axes(ax, limits[layer], f"{layer}: count" if col == 0 else "Count")
            if row == 0:
                ax.set_title(f"step {steps[index]}", fontsize=9)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    figure.suptitle(f"Pre-activation distributions over training (seed {seed})" if seed is not None
                    else "Pre-activation distributions over training")
    return figure


def _stats_legend(stats: Mapping[str, pd.DataFrame], seed: int | None, layer: str, step: int) -> list[str]:
    """Per model ``"<label>: mean ± std"`` of the layer's activations at ``step``."""
    entries = []
    for model, frame in stats.items():
        label = model_label(model)
        mask = (frame["layer"] == layer) & (frame["step"] == step)
        if seed is not None and "seed" in frame:
            mask &= frame["seed"] == seed
        row = frame[mask]
        mean, std = (float(row["mean"].iloc[0]), float(row["std"].iloc[0])) if len(row) else (np.nan, np.nan)
        entries.append(f"{label}: {mean:0.2f} ± {std:0.2f}")
    return entries


def _grid(num_layers: int, width: float = 9.0, height: float = 1.9) -> tuple[Figure, np.ndarray]:
    rows = int(np.ceil(num_layers / 2))
    figure, axes = new_figure(rows, 2, width, height * rows + 0.6)
    hide_unused(axes, num_layers)
    return figure, axes.reshape(-1)


def _draw_snapshot(axes: np.ndarray, per_model: Mapping[str, Histograms], stats: Mapping[str, pd.DataFrame],
                   seed: int | None, layers: Sequence[str], limits, index: int) -> None:
    """Every layer's histograms of every model at snapshot ``index`` on fixed axes."""
    step = int(np.asarray(next(iter(per_model.values()))["steps"])[index])
    for ax, layer in zip(axes, layers, strict=False):
        ax.cla()
        for model in per_model:
            _draw(ax, per_model[model], layer, index, model, None)
        _frame_axes(ax, limits[layer])
        ax.set_title(f"{layer} outputs - step {step}", fontsize=9)
        ax.legend(_stats_legend(stats, seed, layer, step), fontsize=7, loc="upper right")


@styled
def activation_final_snapshot_figure(histograms: Mapping[str, Mapping[str, Any]],
                                     stats: Mapping[str, pd.DataFrame], layers: Sequence[str],
                                     seeds: Sequence[int] | None = None) -> Figure:
    """Every layer's pre-activation histogram at the last snapshot, every model, one seed;
    legends give each model's mean ± std of the layer's activations there."""
    seed, per_model = _one_seed(histograms, seeds)
    layers = _layers(per_model, layers)
    figure, axes = _grid(len(layers))
    last = np.asarray(next(iter(per_model.values()))["steps"]).size - 1
    _draw_snapshot(axes, per_model, stats, seed, layers, layer_limits(per_model, layers), last)
    figure.suptitle(f"Pre-activation distributions at the final snapshot (seed {seed})")
    return figure


@styled
def activation_animation_gif(histograms: Mapping[str, Mapping[str, Any]], stats: Mapping[str, pd.DataFrame],
                             layers: Sequence[str], fps: int = 3, seeds: Sequence[int] | None = None) -> bytes:
    """The blog's animation: a grid of layer histograms, one frame per snapshot, as GIF.

    One seed; each layer's axis limits are fixed for all frames (:func:`layer_limits`);
    legends give each model's mean ± std of the layer's activations at that snapshot.
    """
    seed, per_model = _one_seed(histograms, seeds)
    layers = _layers(per_model, layers)
    limits = layer_limits(per_model, layers)
    figure, axes = _grid(len(layers))
    figure.suptitle(f"Pre-activation distributions (seed {seed})" if seed is not None else
                    "Pre-activation distributions")
    frames = np.asarray(next(iter(per_model.values()))["steps"]).size
    animation = FuncAnimation(figure, lambda index: _draw_snapshot(axes, per_model, stats, seed, layers, limits,
                                                                   index), frames=frames, interval=1000 // fps)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "activations.gif"
        animation.save(path, writer=PillowWriter(fps=fps))
        return path.read_bytes()
