"""The report's histogram grid is cut to what can be read (issue 24, Figures): 4 layers x 4
snapshots evenly spaced in steps, chosen in config; the full grid is a figure of its own."""

from __future__ import annotations

import numpy as np
import pytest

from bnstudy.reporting.histograms import activation_histograms_figure, grid_layers, snapshot_picks


def test_snapshots_are_picked_evenly_in_steps_not_in_index():
    # every 200th step and the last (1,091): the nearest to 0, 364, 727 and 1,091
    steps = np.array([0, 200, 400, 600, 800, 1000, 1091])
    assert snapshot_picks(steps, 4).tolist() == [0, 2, 4, 6]  # steps 0, 400, 800, 1091
    uneven = np.array([0, 10, 20, 30, 1000])
    # evenly in index would give steps 0, 20, 1000; evenly in steps the nearest to 0, 500, 1000
    assert steps_of(uneven, snapshot_picks(uneven, 3)) == [0, 30, 1000]
    assert snapshot_picks(np.array([0, 5]), 4).tolist() == [0, 1]  # never more than there are


def steps_of(steps, picks):
    return [int(steps[i]) for i in picks]


def test_grid_layers_are_the_chosen_ones_or_four_evenly_spaced():
    layers = [f"conv_{i}" for i in range(10)] + ["fc1", "fc2"]
    assert grid_layers(layers, None) == ["conv_0", "conv_4", "conv_7", "fc2"]
    assert grid_layers(layers, ["conv_1", "fc1"]) == ["conv_1", "fc1"]
    assert grid_layers(["a", "b"], None) == ["a", "b"]


def _histograms(layers, steps, bins=8):
    rng = np.random.default_rng(0)
    one = {"steps": np.asarray(steps), "hist_edges": np.linspace(-3, 3, bins + 1),
           "layers": {layer: {"hist_counts": rng.integers(0, 50, (len(steps), bins))} for layer in layers}}
    return {"baseline": {"seed_0": one}, "candidate": {"seed_0": one}}


def test_the_report_grid_has_four_by_four_panels_and_the_full_grid_every_layer():
    pytest.importorskip("matplotlib")
    layers = [f"conv_{i}" for i in range(10)] + ["fc1", "fc2"]
    steps = [0, 200, 400, 600, 800, 1000, 1091]
    histograms = _histograms(layers, steps)
    figure = activation_histograms_figure(histograms, grid_layers(layers, None), 4)
    assert len(figure.axes) == 16
    assert [ax.get_title() for ax in figure.axes[:4]] == ["step 0", "step 400", "step 800", "step 1091"]
    full = activation_histograms_figure(histograms, layers, 6)
    assert len(full.axes) == 12 * 6
