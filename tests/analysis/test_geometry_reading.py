"""The distance from initialization in its absolute, relative and angular forms (issue 21,
point 4): the comparisons across seeds, and the report's sentence on which form carries the
absolute distance's ratio, on synthetic traces whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis.fidelity import geometry_measures
from bnstudy.reporting.conclusions import init_distance_reading

SEEDS = (0, 1, 2, 3, 4)
LAYERS = ("conv_0", "conv_1")


def _trace(growth: float, angle: float, seed_noise: float) -> pd.DataFrame:
    """Kernels of initial norm 2 that end at ``growth`` times it, ``angle`` radians away:
    ``||W - W_0||`` then follows from the law of cosines."""
    rng = np.random.default_rng(int(growth * 100 + angle * 10))
    rows = []
    for seed in SEEDS:
        for layer in LAYERS:
            g = growth * np.exp(rng.normal(0, seed_noise))
            a = angle * np.exp(rng.normal(0, seed_noise))
            n0, n = 2.0, 2.0 * g
            distance = np.sqrt(n ** 2 + n0 ** 2 - 2 * n * n0 * np.cos(a))
            rows += [{"seed": seed, "step": 0, "layer": layer, "abs": 0.0, "rel": 0.0, "norm": n0,
                      "angle": 0.0},
                     {"seed": seed, "step": 100, "layer": layer, "abs": distance,
                      "rel": distance / n0, "norm": n, "angle": a}]
    return pd.DataFrame(rows)


def _measures(candidate: pd.DataFrame, baseline: pd.DataFrame) -> dict:
    traces = {"baseline": baseline, "candidate": candidate}
    measures = geometry_measures(traces, "conv kernels", ("lower for BN", "higher for BN"))
    # the absolute distance, as compare_models makes it (the same final_values)
    from bnstudy.analysis import comparisons as cmp
    measures["init_distance"] = {"label": "distance", **cmp.final_values(traces, "abs")}
    return measures


def test_the_norm_growth_and_angle_comparisons_recover_the_constructed_ratios():
    measures = _measures(_trace(3.0, 0.3, 0.02), _trace(1.2, 0.3, 0.02))
    growth = measures["init_norm_growth"]["overall"]
    assert growth["estimate"] == pytest.approx(3.0 / 1.2, rel=0.05) and growth["significant"]
    angle = measures["init_angle"]["overall"]
    assert angle["estimate"] == pytest.approx(1.0, rel=0.05)
    assert measures["init_distance_rel"]["overall"]["estimate"] == pytest.approx(
        measures["init_distance"]["overall"]["estimate"], rel=1e-12)  # the same W_0 in both


def test_a_distance_made_of_scale_is_read_as_growth_of_scale():
    measures = _measures(_trace(3.0, 0.3, 0.02), _trace(1.2, 0.3, 0.02))
    reading = init_distance_reading(measures, ("BN", "no BN"))
    assert "BN's kernels end further from their initialization" in reading
    assert "the growth of the kernels' norm carries it, not their direction" in reading


def test_a_distance_made_of_a_turn_is_read_as_the_angle():
    measures = _measures(_trace(1.2, 0.9, 0.02), _trace(1.2, 0.3, 0.02))
    reading = init_distance_reading(measures, ("BN", "no BN"))
    assert "the angle they turn through carries it, not the growth of the norm" in reading


def test_both_forms_and_no_difference_are_named():
    both = init_distance_reading(_measures(_trace(3.0, 0.9, 0.02), _trace(1.2, 0.3, 0.02)))
    assert "both the growth of the kernels' norm and the angle they turn through carry it" in both
    same = init_distance_reading(_measures(_trace(1.2, 0.3, 0.3), _trace(1.2, 0.3, 0.3)))
    assert "does not differ significantly" in same


def test_traces_without_the_geometry_get_no_reading():
    old = {m: _trace(1.0, 0.1, 0.0).drop(columns=["norm", "angle"]) for m in ("baseline", "candidate")}
    assert geometry_measures(old, "conv kernels", ("lower", "higher")) == {}
    assert init_distance_reading({}) is None
