"""The compiled path against the naive reference (tests/core/naive_reference.py), both presets,
in float64 to rtol 1e-8 and in float32 to rtol 1e-4."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
import pytest

from bnstudy.core import PRESETS, TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, train
from bnstudy.core.results import undefined_ics_leaves
from tests.core.conftest import tiny_data
from tests.core.naive_reference import NaiveRun

MEASURED = (0, 1, 5, 9)  # first step, second, first of epoch 2, last step (partial chunk)
SNAPSHOTS = (0, 3, 6, 9)  # t % snapshot_every (3) == 0
TOLERANCE = {"float64": 1e-8, "float32": 1e-4}
# conv_0's ICS in train mode is 0 up to rounding: relative to ||G_0||, at most this.
ZERO_ICS = {"float64": 1e-12, "float32": 1e-5}
LOOPS = ("scan", "host")


@functools.cache
def _engine(dtype: str, loop: str):
    """The engine in one step loop (``scan``: one vmapped lax.scan program per chunk; ``host``:
    the host executor of one-layer programs used on CPUs), through ``train`` (one seed).
    Cached: each (dtype, loop) trains once per session."""
    model_config = dataclasses.replace(TINY_MODEL_CONFIG, param_dtype=dtype)
    x, y, xt, yt = tiny_data(np.dtype(dtype))
    with jax.enable_x64(dtype == "float64"):
        return train(model_config, dataclasses.replace(TINY_TRAIN_CONFIG, step_loop=loop),
                     [PRESETS["blog"], PRESETS["paper"]], x, y, xt, yt)


@functools.cache
def _reference(dtype: str):
    """The naive reference on the same data (the histogram edges follow from the config)."""
    model_config = dataclasses.replace(TINY_MODEL_CONFIG, param_dtype=dtype)
    x, y, _, _ = tiny_data(np.dtype(dtype))
    edges = _engine(dtype, "host").activation_stats["hist_edges"]
    with jax.enable_x64(dtype == "float64"):
        return NaiveRun(model_config, TINY_TRAIN_CONFIG, x, y).run(
            [PRESETS["blog"], PRESETS["paper"]], set(MEASURED), set(SNAPSHOTS), edges)


# The fast suite keeps the strictest case, the host loop in float64 (rtol 1e-8). The scan
# loop compiles its measured chunk as one program (about two minutes per dtype on two cores)
# and float32 compiles every program again (about a minute): those run with the slow tests,
# which CI runs too.
CASES = [pytest.param((dtype, loop), id=f"{dtype}-{loop}",
                      marks=[] if (dtype, loop) == ("float64", "host") else [pytest.mark.slow])
         for dtype in ("float64", "float32") for loop in LOOPS]


@pytest.fixture(params=CASES)
def runs(request):
    dtype, loop = request.param
    return dtype, _engine(dtype, loop), _reference(dtype)


def test_dtype_is_what_the_test_claims(runs):
    dtype, result, _ = runs
    assert result.final_params["conv_0"]["conv"]["kernel"].dtype == np.dtype(dtype)
    assert result.measurements["paper"]["ics_l2"].dtype == np.dtype(dtype)


def test_trajectory_matches_stateful_nnx_optimizer(runs):
    dtype, result, reference = runs
    rtol = TOLERANCE[dtype]
    np.testing.assert_allclose(result.train_loss, reference["train_loss"], rtol=rtol)
    np.testing.assert_array_equal(result.train_accuracy, reference["train_accuracy"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-3),
                 result.final_params, reference["final_params"])


def _measured_rows(runs, preset):
    """(the compiled run's measurements, row of a MEASURED step, the naive loop's values)."""
    _, result, reference = runs
    measured = result.measurements[preset]
    for step in MEASURED:
        row = int(np.flatnonzero(measured["measured_steps"] == step)[0])
        yield measured, row, reference["measurements"][step][preset]


@pytest.mark.parametrize("preset", ["blog", "paper"])
def test_ics_matches_per_layer_loop(runs, preset):
    dtype = runs[0]
    rtol = TOLERANCE[dtype]
    for measured, row, naive in _measured_rows(runs, preset):
        expected = naive
        l2, cosine = measured["ics_l2"][row], measured["ics_cosine"][row]
        if preset == "paper":  # train mode: conv_0's G' is G itself
            assert l2[0] <= ZERO_ICS[dtype] * expected["g0_norm"]
            assert expected["ics_l2"][0] <= ZERO_ICS[dtype] * expected["g0_norm"]
            l2, cosine = l2[1:], cosine[1:]
            expected = {**naive, "ics_l2": naive["ics_l2"][1:],
                        "ics_cosine": naive["ics_cosine"][1:],
                        "ics_l2_leaf": {k: v for k, v in naive["ics_l2_leaf"].items()
                                        if not k.startswith("conv_0/")}}
        np.testing.assert_allclose(l2, expected["ics_l2"], rtol=rtol)
        # A cosine is bounded: near orthogonality its precision is absolute, not relative.
        np.testing.assert_allclose(cosine, expected["ics_cosine"], rtol=rtol, atol=rtol / 10)
        undefined = undefined_ics_leaves(TINY_MODEL_CONFIG)  # the conv biases before BN
        assert set(expected["ics_l2_leaf"]) - set(measured["ics_l2_leaf"]) <= undefined
        for leaf, value in expected["ics_l2_leaf"].items():
            if leaf in undefined:  # dropped: its gradient is rounding noise (0 in theory)
                assert leaf not in measured["ics_l2_leaf"], leaf
                continue
            # A leaf whose ICS is rounding only: relative to the layer's gradient norm.
            floor = ZERO_ICS[dtype] * expected["g_norm"][leaf.split("/")[0]]
            np.testing.assert_allclose(measured["ics_l2_leaf"][leaf][row], value, rtol=rtol,
                                       atol=floor, err_msg=leaf)


@pytest.mark.parametrize("preset", ["blog", "paper"])
def test_probes_match_one_point_at_a_time(runs, preset):
    rtol = TOLERANCE[runs[0]]
    for measured, row, expected in _measured_rows(runs, preset):
        np.testing.assert_allclose(measured["probe_loss"][row], expected["probe_loss"], rtol=rtol)
        np.testing.assert_allclose(measured["grad_diff"][row], expected["grad_diff"], rtol=rtol)
        np.testing.assert_allclose(measured["beta_smoothness"][row],
                                   expected["beta_smoothness"], rtol=rtol)
        assert measured["probe_loss_max"][row] == measured["probe_loss"][row].max()
        assert measured["grad_diff_min"][row] == measured["grad_diff"][row].min()


def test_activation_statistics_match_numpy(runs):
    dtype, result, reference = runs
    rtol = TOLERANCE[dtype]
    stats = result.activation_stats
    np.testing.assert_array_equal(stats["steps"], SNAPSHOTS)
    for row, step in enumerate(SNAPSHOTS):
        for layer in result.layers:
            expected = reference["activations"][step][layer]
            got = {k: v[row] for k, v in stats["layers"][layer].items()}
            for name in ("mean", "std", "min", "max", "quantiles", "channel_mean", "channel_var"):
                np.testing.assert_allclose(got[name], expected[name], rtol=rtol,
                                           atol=rtol * 1e-2, err_msg=f"{layer} {name}")
            # Counts: exact in float64; in float32 a value may sit on a bin edge.
            slack = 0 if dtype == "float64" else 2
            counts = np.append(got["hist_counts"], [got["underflow"], got["overflow"]])
            expected_counts = np.append(expected["hist_counts"],
                                        [expected["underflow"], expected["overflow"]])
            assert np.abs(counts - expected_counts).sum() <= slack, layer
            assert counts.sum() == expected_counts.sum()
            assert abs(got["frac_positive"] - expected["frac_positive"]) <= (slack + 1e-6) / counts.sum()


def test_init_distance_matches_numpy(runs):
    dtype, result, reference = runs
    rtol = TOLERANCE[dtype]
    distance = result.init_distance
    np.testing.assert_array_equal(distance["steps"], [*SNAPSHOTS, 10])
    for layer in result.layers:
        for kind in ("abs", "rel", "norm"):
            expected = [reference["init_distance"][s][kind][layer] for s in SNAPSHOTS]
            expected.append(reference["final_init_distance"][kind][layer])
            np.testing.assert_allclose(distance[kind][layer], expected, rtol=rtol, atol=1e-30,
                                       err_msg=f"{layer} {kind}")
        assert distance["abs"][layer][0] == 0.0
        # the angle: 0 at W_0 up to the rounding of ||W|| against ||W_0|| (two reductions
        # a fused program may order differently: 2e-8 in float32, 5e-17 in float64 seen on
        # the scan loop); after it, the reference's arccos within the rounding of a cosine
        # near 1 (arccos(1 - e) ~ sqrt(2 e): float32's e ~ 1e-7)
        assert distance["angle"][layer][0] <= (1e-12 if dtype == "float64" else 1e-6)
        expected = [reference["init_distance"][s]["angle"][layer] for s in SNAPSHOTS[1:]]
        expected.append(reference["final_init_distance"]["angle"][layer])
        np.testing.assert_allclose(distance["angle"][layer][1:], expected, rtol=rtol * 10,
                                   atol=1e-7 if dtype == "float64" else 1e-3, err_msg=layer)


def test_normalization_scales_match_numpy(runs):
    """gamma, the batch sigma and gamma / sigma of every BN layer at each snapshot (NaN for
    the dense layers, and at the end of training, which has no batch)."""
    dtype, result, reference = runs
    distance = result.init_distance
    for layer in result.layers:
        for kind in ("gamma", "sigma", "gamma_over_sigma"):
            expected = [reference["init_distance"][s][kind][layer] for s in SNAPSHOTS]
            np.testing.assert_allclose(distance[kind][layer][:-1], expected,
                                       rtol=TOLERANCE[dtype], err_msg=f"{layer} {kind}")
            assert np.isnan(distance[kind][layer][-1])
    assert np.isfinite(distance["sigma"]["conv_0"]).sum() == len(SNAPSHOTS)
    assert np.isnan(distance["sigma"]["fc1"]).all()
