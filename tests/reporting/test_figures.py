"""Every figure on small synthetic tables: labelled axes, PNG bytes, seed bands, data ranges."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from bnstudy.analysis.statistics import seed_interval
from bnstudy.reporting import figures, histograms
from bnstudy.reporting.plotting import seed_band, to_png

SEEDS = (1337, 1, 2)
STEPS = np.arange(12)
LAYERS = ("conv_0", "conv_1", "fc1")


def _tidy(metrics, layers=("",), presets=("",), seeds=SEEDS, steps=STEPS) -> pd.DataFrame:
    """A tidy table with positive values; the candidate's are half the baseline's."""
    rng = np.random.default_rng(0)
    rows = [{"model": model, "seed": seed, "step": int(step), "layer": layer, "preset": preset, "metric": metric,
             "value": (0.5 if model == "candidate" else 1.0) * (1 + rng.random())}
            for model in ("baseline", "candidate") for seed in seeds for step in steps
            for layer in layers for preset in presets for metric in metrics]
    return pd.DataFrame(rows)


def _ics_table() -> pd.DataFrame:
    table = _tidy(["ics_l2", "ics_cosine"], layers=LAYERS, presets=("blog", "paper"))
    zero = (table["layer"] == "conv_0") & (table["preset"] == "paper") & (table["metric"] == "ics_l2")
    table.loc[zero, "value"] = 1e-7  # rounding noise where the value is zero by definition
    return table


RECORDS = {m: {"layers": list(LAYERS), "model_config": {"normalization": n},
               "measurement_configs": [{"name": "blog", "ics_mode": "eval"}, {"name": "paper", "ics_mode": "train"}]}
           for m, n in (("baseline", "none"), ("candidate", "batch"))}


def _histograms(scale: float, seeds=SEEDS, snapshots: int = 4) -> dict:
    """Per seed: counts of N(0, scale^2 * (1 + k)) samples over fixed edges [-20, 20]."""
    edges = np.linspace(-20, 20, 201)
    out = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        counts = np.stack([[np.histogram(rng.normal(0, scale * (1 + k), 4000), edges)[0] for k in range(snapshots)]
                           for _ in LAYERS])
        out[f"seed_{seed}"] = {"steps": np.arange(snapshots) * 5, "hist_edges": edges,
                               "layers": {layer: {"hist_counts": counts[i]} for i, layer in enumerate(LAYERS)}}
    return out


HISTOGRAMS = {"baseline": _histograms(0.5), "candidate": _histograms(1.0)}
STATS = {m: pd.DataFrame([{"seed": s, "step": step, "layer": layer, "mean": 0.0, "std": 1.0}
                          for s in SEEDS for step in (0, 5, 10, 15) for layer in LAYERS]) for m in HISTOGRAMS}

FIGURES = {
    "training_curves": lambda: figures.training_curves_figure(
        _tidy(["train_loss", "train_accuracy", "test_accuracy"])),
    "loss_landscape": lambda: figures.loss_landscape_figure(
        _tidy(["probe_loss_min", "probe_loss_max", "loss_range"], presets=("blog", "paper"))),
    "gradient_predictiveness": lambda: figures.gradient_predictiveness_figure(
        _tidy(["grad_diff_min", "grad_diff_max"], presets=("blog", "paper"))),
    "beta_smoothness": lambda: figures.beta_smoothness_figure(_tidy(["beta_smoothness"], presets=("blog", "paper"))),
    "gradient_ics": lambda: figures.gradient_ics_figure(_ics_table(), LAYERS, figures.zero_by_definition(RECORDS)),
    "init_distance": lambda: figures.init_distance_figure(_tidy(
        ["abs", "rel", "angle", "norm_growth", "effective_lr", "gamma_over_sigma"], layers=LAYERS)),
    "activation_shift": lambda: figures.activation_shift_figure(_tidy(["delta_mu", "delta_var"], layers=LAYERS)),
    "activation_histograms": lambda: histograms.activation_histograms_figure(HISTOGRAMS, LAYERS, 3, seeds=SEEDS),
    "activation_final_snapshot": lambda: histograms.activation_final_snapshot_figure(
        HISTOGRAMS, STATS, LAYERS, seeds=SEEDS),
}


def _visible_axes(figure: Figure):
    return [ax for ax in figure.axes if ax.get_visible() and ax.axison]


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_labels_every_axis_and_renders_a_png(name):
    figure = FIGURES[name]()

    axes = _visible_axes(figure)
    assert axes
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: unlabelled axis {ax.get_title()!r}"
    png = to_png(figure)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(io.BytesIO(png)).size[0] > 100


def test_seed_band_is_the_t_interval_of_seed_interval_at_each_step():
    rows = _tidy(["x"]).query("model == 'baseline'")

    band = seed_band(rows).set_index("step")
    log_band = seed_band(rows, log=True).set_index("step")

    for step in (0, 7):
        values = rows.loc[rows["step"] == step, "value"]
        expected = seed_interval(values)
        assert band.loc[step, ["mean", "low", "high"]].tolist() == pytest.approx(
            [expected.mean, expected.low, expected.high], rel=1e-12)
        logs = seed_interval(np.log(values))
        assert log_band.loc[step, ["mean", "low", "high"]].tolist() == pytest.approx(
            np.exp([logs.mean, logs.low, logs.high]).tolist(), rel=1e-12)


def test_one_seed_draws_a_line_without_a_band():
    rows = _tidy(["x"], seeds=(1337,)).query("model == 'baseline'")
    band = seed_band(rows)
    assert band["mean"].notna().all() and band["low"].isna().all()


def test_ics_values_zero_by_definition_are_not_drawn_and_the_panel_says_so():
    zero = figures.zero_by_definition(RECORDS)
    assert zero == {"baseline": {("blog", "conv_0"), ("paper", "conv_0")}, "candidate": {("paper", "conv_0")}}

    figure = figures.gradient_ics_figure(_ics_table(), LAYERS, zero)

    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert sum("conv_0, paper: ICS zero by definition" in t for t in texts) == 2  # its L2 and cosine panels
    assert sum("Without BatchNorm: zero by definition, not drawn" in t for t in texts) == 2  # blog conv_0
    drawn = [ax.get_title() for ax in figure.axes if ax.axison]
    assert "conv_0: ICS L2 distance (paper)" not in drawn and "conv_0: ICS L2 distance (blog)" in drawn


def test_robust_range_keeps_the_central_mass_not_the_fixed_edges():
    edges = np.linspace(-20, 20, 201)
    counts = np.histogram(np.random.default_rng(0).normal(0, 1, 100_000), edges)[0]

    low, high = histograms.robust_range(counts, edges)

    assert -3.6 < low < -2.4 and 2.4 < high < 3.6  # about +-2.6 sigma, padded by 5%
    assert histograms.robust_range(np.zeros(200), edges) == (-20.0, 20.0)


def test_histogram_panels_share_each_layers_data_range():
    figure = FIGURES["activation_histograms"]()
    limits = {ax.get_xlim() for ax in _visible_axes(figure)}
    assert len(limits) == len(LAYERS)  # one range per layer, the same in each of its panels
    assert all(-20 < low < -1 and 1 < high < 20 for low, high in limits)
    assert "seed 1337" in figure.get_suptitle()


def test_animation_frames_keep_fixed_axis_limits():
    per_model = {m: histograms.pick_seed(HISTOGRAMS[m], SEEDS)[1] for m in HISTOGRAMS}
    limits = histograms.layer_limits(per_model, LAYERS)
    figure, axes = histograms._grid(len(LAYERS))
    seen = []
    for frame in range(4):
        histograms._draw_snapshot(axes, per_model, STATS, 1337, LAYERS, limits, frame)
        seen.append([(ax.get_xlim(), ax.get_ylim()) for ax in axes[: len(LAYERS)]])
    assert all(frame == seen[0] for frame in seen)

    gif = histograms.activation_animation_gif(HISTOGRAMS, STATS, LAYERS[:2], fps=4, seeds=SEEDS)
    image = Image.open(io.BytesIO(gif))
    assert gif[:4] == b"GIF8" and image.n_frames == 4


def test_the_first_seed_of_the_run_is_the_one_shown():
    assert histograms.pick_seed(HISTOGRAMS["baseline"], [2, 1337])[0] == 2
    assert histograms.pick_seed(HISTOGRAMS["baseline"])[0] == 1337  # the first stored
    single = HISTOGRAMS["baseline"]["seed_1"]
    assert histograms.pick_seed(single) == (None, single)


def test_importing_the_figure_modules_changes_no_matplotlib_state():
    code = ("import matplotlib; before = (matplotlib.get_backend(), dict(matplotlib.rcParams)); "
            "import bnstudy.reporting.figures, bnstudy.reporting.histograms; "
            "assert (matplotlib.get_backend(), dict(matplotlib.rcParams)) == before")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                            env={"MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu", "PATH": ""})
    assert result.returncode == 0, result.stderr
