"""Shared plotting helpers: style, colours, seed-mean curves with their 95% t intervals.

Figures are built as :class:`matplotlib.figure.Figure` objects, not through pyplot, so
nothing here depends on (or changes) the interactive backend, and importing this module has
no side effects: the seaborn style is applied inside each figure function by
:func:`styled`.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.container import Container
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy import stats

from bnstudy.palette import (  # noqa: F401 - re-exported: the figures' one source of looks
    MODEL_COLORS,
    MODEL_LABELS,
    MODEL_NAMES,
    OTHER_COLORS,
    VARIANT_COLORS,
    VARIANT_LABELS,
    model_color,
    model_label,
)


def models_in(table: pd.DataFrame) -> list[str]:
    """The models of a tidy table: conf/base's in the roster's order, then the others as
    they appear (so a study's reference and treatment keep their places and colours)."""
    present = list(dict.fromkeys(table["model"])) if "model" in table.columns else []
    return [m for m in VARIANT_LABELS if m in present] + [m for m in present if m not in VARIANT_LABELS]
CONFIDENCE = 0.95
# How the bands of every curve over steps are computed, for the captions.
BAND_METHOD = ("Lines: mean across seeds; bands: the 95% Student-t interval of that mean at each step "
               "(as bnstudy.analysis.statistics.seed_interval), computed on log values, i.e. around the "
               "geometric mean, for quantities drawn on a log axis; no band with one seed.")

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def plot_style() -> Iterator[None]:
    """The study's look (seaborn darkgrid, notebook context), for the ``with`` block only."""
    with sns.axes_style("darkgrid"), sns.plotting_context("notebook"), rc_context({"figure.dpi": 100}):
        yield


def styled(func: Callable[P, R]) -> Callable[P, R]:
    """Run a figure function inside :func:`plot_style`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with plot_style():
            return func(*args, **kwargs)

    return wrapper


def new_figure(rows: int, cols: int, width: float, height: float, **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """A pyplot-free figure and its ``[rows, cols]`` array of axes."""
    figure = Figure(figsize=(width, height), layout=kwargs.pop("layout", "constrained"))
    axes = figure.subplots(rows, cols, squeeze=False, **kwargs)
    return figure, axes


def to_png(figure: Figure, dpi: int = 110) -> bytes:
    """Render ``figure`` to PNG bytes (in the study's style: matplotlib creates some artists,
    e.g. ticks after ``cla()``, only when drawing, from the rcParams of that moment)."""
    buffer = io.BytesIO()
    with plot_style():
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def metric_rows(table: pd.DataFrame, metric: str, **filters: Any) -> pd.DataFrame:
    """Rows of a tidy table with ``metric`` and the given column values."""
    mask = table["metric"] == metric
    for column, value in filters.items():
        mask &= table[column] == value
    return table[mask]


def presets(table: pd.DataFrame) -> list[str]:
    """The measurement protocols of a tidy table, in order of appearance."""
    return [p for p in dict.fromkeys(table["preset"]) if p]


def num_seeds(table: pd.DataFrame) -> int:
    return int(table["seed"].nunique()) if "seed" in table and len(table) else 0


def seed_band(rows: pd.DataFrame, x: str = "step", log: bool = False) -> pd.DataFrame:
    """Per ``x``: mean of ``value`` across seeds and the 95% Student-t interval of that mean.

    The same interval as :func:`bnstudy.analysis.statistics.seed_interval`, vectorized over
    the steps (one scipy call per step would take seconds on a 15,000-step curve). With
    ``log`` the mean and interval are those of ``log(value)``, mapped back (a geometric mean,
    for quantities plotted on a log axis). Columns ``x, mean, low, high, n``; ``low``/``high``
    are NaN where fewer than two seeds measured the step.
    """
    values = rows[["seed", x, "value"]].copy()
    if log:
        values["value"] = np.log(values["value"].where(values["value"] > 0))
    values = values[np.isfinite(values["value"])]
    grouped = values.groupby(x)["value"]
    out = pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.count()})
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, out["n"] - 1) * out["sd"] / np.sqrt(out["n"])
    half = half.where(out["n"] >= 2)
    out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    if log:
        out[["mean", "low", "high"]] = np.exp(out[["mean", "low", "high"]])
    return out.drop(columns="sd").reset_index()


MARKER_LIMIT = 50
"""A curve of fewer measured points than this marks each one: joined by straight lines
alone, two spikes of a 10-point curve would look like features."""
CI_BAND = "band: 95% CI of the seed mean"
RANGE_BAND = "hatched: min to max over s"
"""The legend's names of the two kinds of band (:func:`shared_legend`)."""


def draw_seed_mean(ax: Axes, rows: pd.DataFrame, model: str, *, log: bool = False,
                   label: str | None = None, bounds: tuple[float, float] | None = None,
                   **style: Any) -> None:
    """Seed-mean curve of ``rows`` (one model's ``seed, step, value``) with its 95% band,
    clipped to ``bounds`` (e.g. (0, 1) for an accuracy: an interval of a mean of values in
    [0, 1] lies in [0, 1]); each point marked when there are fewer than
    :data:`MARKER_LIMIT`."""
    band = seed_band(rows, log=log)
    if band.empty:
        return
    color = model_color(model)
    if len(band) < MARKER_LIMIT and "marker" not in style:
        style = {"marker": "o", "markersize": 3, **style}
    ax.plot(band["step"], band["mean"], color=color, label=label or model_label(model),
            **{"linewidth": 1.0, **style})
    if band["low"].notna().any():
        low, high = band["low"], band["high"]
        if bounds is not None:
            low, high = low.clip(*bounds), high.clip(*bounds)
        ax.fill_between(band["step"], low, high, color=color, alpha=0.25, linewidth=0,
                        gid="ci_band")


def draw_range_band(ax: Axes, steps: Any, low: Any, high: Any, model: str) -> None:
    """A min-to-max range over step sizes, hatched and unfilled so that it never reads as
    a confidence band (those are solid, :func:`draw_seed_mean`)."""
    ax.fill_between(steps, low, high, facecolor="none", edgecolor=model_color(model),
                    hatch="////", linewidth=0.6, alpha=0.8, gid="range_band",
                    label=model_label(model))


def shared_legend(figure: Figure, axes: np.ndarray, *, ranges: bool = False) -> None:
    """One legend for the whole figure, under its panels: every model drawn in any panel
    (each once) and what each kind of band means, so every panel is read by it."""
    handles: dict[str, Any] = {}
    for ax in axes.reshape(-1):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, Line2D([], [], color=_handle_color(handle), lw=1.5))
    drawn = [c.get_gid() for ax in axes.reshape(-1) for c in ax.collections]
    if "ci_band" in drawn:
        handles[CI_BAND] = Patch(facecolor="0.5", alpha=0.25, linewidth=0)
    if ranges and "range_band" in drawn:
        handles[RANGE_BAND] = Patch(facecolor="none", edgecolor="0.3", hatch="////")
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                      ncols=min(len(handles), 4), fontsize=9, frameon=False)


def _handle_color(handle: Any) -> Any:
    if isinstance(handle, Container):  # an errorbar: its data line
        handle = handle[0]
    if hasattr(handle, "get_color"):
        color = handle.get_color()
        return color[0] if isinstance(color, np.ndarray) and color.ndim == 2 else color
    return handle.get_edgecolor()[0]


def seed_summary(values: pd.Series) -> tuple[float, float]:
    """Mean across seeds and the half-width of its 95% t interval (0 with one seed)."""
    finite = values[np.isfinite(values)].to_numpy(dtype=float)
    if finite.size < 2:
        return (float(finite.mean()) if finite.size else float("nan")), 0.0
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, finite.size - 1) * finite.std(ddof=1) / np.sqrt(finite.size)
    return float(finite.mean()), float(half)


def hide_unused(axes: np.ndarray, used: int) -> None:
    """Hide the axes of a grid beyond the first ``used``."""
    for ax in axes.reshape(-1)[used:]:
        ax.set_visible(False)


def omitted_panel(ax: Axes, note: str) -> None:
    """A panel left empty on purpose, saying why."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=8, wrap=True, transform=ax.transAxes)


@styled
def note_figure(title: str, note: str) -> Figure:
    """A figure with nothing to draw, saying why (e.g. every seed diverged)."""
    figure, axes = new_figure(1, 1, 6.0, 2.2)
    axes.reshape(-1)[0].set_title(title)
    omitted_panel(axes.reshape(-1)[0], note)
    return figure
