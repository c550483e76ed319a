"""Figures a researcher reads at a glance (issue 24, Figures): each test reads the artists of
the figure as saved."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection

from bnstudy.reporting import figures
from bnstudy.reporting.plotting import CI_BAND, MARKER_LIMIT, RANGE_BAND, model_label, to_png

SEEDS = (1337, 1, 2)


def _tidy(metrics, steps, presets=("",), spread=0.6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"model": model, "seed": seed, "step": int(step), "layer": "", "preset": preset,
             "metric": metric, "value": float(np.clip((0.9 if model == "candidate" else 0.5)
                                                      + spread * rng.standard_normal(), 1e-3, 1))}
            for model in ("baseline", "candidate") for seed in SEEDS for step in steps
            for preset in presets for metric in metrics]
    return pd.DataFrame(rows)


def _bands(figure, gid):
    return [c for ax in figure.axes for c in ax.collections
            if isinstance(c, PolyCollection) and c.get_gid() == gid]


def _legend_texts(figure) -> list[str]:
    assert len(figure.legends) == 1, "one figure legend, shared by every panel"
    return [text.get_text() for text in figure.legends[0].get_texts()]


def test_range_bands_and_confidence_bands_look_different_and_are_named():
    table = _tidy(["probe_loss_min", "probe_loss_max", "loss_range"], np.arange(10),
                  presets=("blog", "paper"))
    figure = figures.loss_landscape_figure(table)
    to_png(figure)
    ranges, cis = _bands(figure, "range_band"), _bands(figure, "ci_band")
    assert len(ranges) == 4 and len(cis) == 4  # 2 models x 2 protocols each
    assert all(band.get_hatch() and not band.get_facecolor().any() for band in ranges)
    assert all(not band.get_hatch() and band.get_facecolor()[0, 3] > 0 for band in cis)
    texts = _legend_texts(figure)
    assert RANGE_BAND in texts and CI_BAND in texts
    assert {model_label("baseline"), model_label("candidate")} <= set(texts)
    assert not any(ax.get_legend() for ax in figure.axes)  # no per-panel legend left


def test_fewer_than_the_limit_of_points_are_marked_and_more_are_not():
    few = figures.beta_smoothness_figure(_tidy(["beta_smoothness"], np.arange(10),
                                               presets=("paper",)))
    many = figures.beta_smoothness_figure(_tidy(["beta_smoothness"], np.arange(MARKER_LIMIT + 5),
                                                presets=("paper",)))
    assert {line.get_marker() for line in few.axes[0].get_lines()} == {"o"}
    assert {line.get_marker() for line in many.axes[0].get_lines()} == {"None"}


def test_accuracy_bands_stay_within_zero_and_one():
    """Seeds near 1 with a large spread: the t interval of the mean runs above 1 unclipped."""
    table = _tidy(["train_loss", "train_accuracy", "test_accuracy"], np.arange(12), spread=0.4)
    figure = figures.training_curves_figure(table)
    accuracy_panels = figure.axes[1:3]
    for ax in accuracy_panels:
        bands = [c for c in ax.collections if c.get_gid() == "ci_band"]
        assert bands
        for band in bands:
            y = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
            assert y.min() >= 0.0 and y.max() <= 1.0
    # the loss panel is not clipped to [0, 1] (a loss is not a fraction)
    texts = _legend_texts(figure)
    assert model_label("baseline") in texts and CI_BAND in texts


def test_every_model_of_the_shipped_roster_has_its_own_colour_and_words():
    """One fixed colour per model name in every figure (and in MLflow), distinct across the
    roster, and a legend label that says what the model is."""
    import yaml

    from bnstudy.reporting.plotting import VARIANT_COLORS, VARIANT_LABELS, model_color
    from tests.conftest import PROJECT_ROOT

    roster = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_roster.yml").read_text())
    models = list(roster["models"])
    assert set(models) <= set(VARIANT_COLORS) and set(models) <= set(VARIANT_LABELS)
    from bnstudy.analysis.study import MODEL_WORDS

    assert set(models) <= set(MODEL_WORDS)  # sentences name each by what it is, not its identifier
    colors = [model_color(model) for model in models]
    assert len(set(colors)) == len(colors)


def _histograms(scale: float, sweep: bool = False) -> dict:
    edges = np.linspace(-10, 10, 101)
    rng = np.random.default_rng(int(scale * 10))
    one = {"steps": np.arange(4) * 5, "hist_edges": edges,
           "layers": {layer: {"hist_counts": np.stack([np.histogram(
               rng.normal(0, scale * (1 + k), 2000), edges)[0] for k in range(4)])}
               for layer in ("conv_0", "conv_1")}}
    return {f"seed_{seed}": ({"lr_0.1": one, "lr_0.01": one} if sweep else one) for seed in SEEDS}


def test_histogram_figures_draw_every_model_of_the_roster_in_its_colour():
    """Not just baseline and candidate: a third model, and a learning-rate sweep's histograms
    (one entry per rate inside each seed), are drawn too."""
    from bnstudy.reporting import histograms as hist
    from bnstudy.reporting.plotting import model_color

    per_model = {"baseline": _histograms(0.5), "candidate": _histograms(1.0),
                 "my_model": _histograms(2.0, sweep=True)}
    figure = hist.activation_histograms_figure(per_model, ["conv_0", "conv_1"], 4)
    to_png(figure)
    first = figure.axes[0]
    colors = {tuple(np.round(patch.get_facecolor()[:3], 3)) for patch in first.patches}
    from matplotlib.colors import to_rgb
    assert colors == {tuple(np.round(to_rgb(model_color(m)), 3)) for m in per_model}
    assert len(figure.axes) == 2 * 4
