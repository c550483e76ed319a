"""The scale-invariant measurements (issue 21, point 4): a kernel's norm, its angle to W_0, the
effective learning rate lr / ||W||^2 and a BN layer's |gamma| / sigma, against numpy on a tiny
network, and the scale invariance that makes them the right reading of a BN network's distance
from initialization (Santurkar et al. 2018, Thm 4.1)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnstudy.analysis.traces import effective_learning_rate
from bnstudy.core import TINY_MODEL_CONFIG
from bnstudy.core.measurements import distance_from_init
from bnstudy.core.models import PureModel
from bnstudy.core.step import normalization_scales

# BatchNorm's epsilon is the only thing that breaks the invariance (var(cz) + eps is not
# c^2 (var(z) + eps)): with eps = 1e-12 against variances of order 1, the loss of a scaled
# kernel agrees to ~1e-12 relative in float64.
CONFIG = dataclasses.replace(TINY_MODEL_CONFIG, param_dtype="float64", bn_epsilon=1e-12)


@pytest.fixture(scope="module")
def tiny():
    with jax.enable_x64(True):
        model = PureModel(CONFIG)
        params, stats = model.init(jax.random.key(3))
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(16, 8, 8, 3)))
        y = jnp.asarray(rng.integers(0, 10, size=16), jnp.int32)
        yield model, params, stats, x, y


def _scaled(params, layer: str, c: float):
    scaled = jax.tree.map(lambda v: v, params)
    scaled[layer] = {**params[layer], "conv": {**params[layer]["conv"],
                                               "kernel": c * params[layer]["conv"]["kernel"]}}
    return scaled


def test_norm_and_angle_equal_numpy(tiny):
    model, params, _, _, _ = tiny
    with jax.enable_x64(True):
        other, _ = model.init(jax.random.key(4))
        got = distance_from_init(other, params, model.layer_names)
    for layer in model.layer_names:
        block, block0 = other[layer], params[layer]
        w = np.asarray(block["conv"]["kernel"] if "conv" in block else block["kernel"])
        w0 = np.asarray(block0["conv"]["kernel"] if "conv" in block0 else block0["kernel"])
        assert float(got["norm"][layer]) == pytest.approx(np.sqrt((w ** 2).sum()), rel=1e-12)
        cosine = (w * w0).sum() / (np.linalg.norm(w) * np.linalg.norm(w0))
        assert float(got["angle"][layer]) == pytest.approx(np.arccos(cosine), rel=1e-10)
        assert float(got["abs"][layer]) == pytest.approx(np.linalg.norm(w - w0), rel=1e-12)


def test_the_angle_of_a_rescaled_kernel_is_zero_and_its_norm_scales(tiny):
    """A kernel scaled by c has turned through no angle: its whole distance c - 1 is scale."""
    model, params, _, _, _ = tiny
    with jax.enable_x64(True):
        got = distance_from_init(_scaled(params, "conv_1", 3.0), params, model.layer_names)
    kernel = np.asarray(params["conv_1"]["conv"]["kernel"])
    assert float(got["angle"]["conv_1"]) == pytest.approx(0.0, abs=1e-7)
    assert float(got["norm"]["conv_1"]) == pytest.approx(3 * np.linalg.norm(kernel), rel=1e-12)
    assert float(got["rel"]["conv_1"]) == pytest.approx(2.0, rel=1e-12)
    assert float(got["abs"]["conv_0"]) == 0.0 and float(got["angle"]["conv_0"]) == 0.0


@pytest.mark.parametrize("c", [0.25, 3.0])
def test_scaling_a_bn_layers_kernel_leaves_the_loss_and_divides_the_effective_lr_by_c_squared(tiny, c):
    model, params, stats, x, y = tiny
    with jax.enable_x64(True):
        scaled = _scaled(params, "conv_1", c)
        loss = float(model.loss(params, stats, x, y, train=True)[0])
        loss_scaled = float(model.loss(scaled, stats, x, y, train=True)[0])
        norm = distance_from_init(params, params, model.layer_names)["norm"]["conv_1"]
        norm_scaled = distance_from_init(scaled, params, model.layer_names)["norm"]["conv_1"]
        grad = jax.grad(lambda p: model.loss(p, stats, x, y, train=True)[0])
        g, g_scaled = grad(params), grad(scaled)
    assert loss_scaled == pytest.approx(loss, rel=1e-10)
    ratio = effective_learning_rate(0.1, float(norm_scaled)) / effective_learning_rate(0.1, float(norm))
    assert ratio == pytest.approx(1 / c ** 2, rel=1e-12)
    # why it is the effective rate: the gradient of a scale-invariant kernel shrinks by 1/c
    np.testing.assert_allclose(np.asarray(g_scaled["conv_1"]["conv"]["kernel"]),
                               np.asarray(g["conv_1"]["conv"]["kernel"]) / c, rtol=1e-7, atol=1e-14)
    # a dense layer (no BN) is not invariant: scaling it changes the loss
    with jax.enable_x64(True):
        dense = jax.tree.map(lambda v: v, params)
        dense["fc1"] = {**params["fc1"], "kernel": c * params["fc1"]["kernel"]}
        assert abs(float(model.loss(dense, stats, x, y, train=True)[0]) - loss) > 1e-6


def test_gamma_over_sigma_equals_numpy_and_is_nan_without_bn(tiny):
    model, params, stats, x, _ = tiny
    with jax.enable_x64(True):
        forward = model.apply(params, stats, x, train=True)
        scales = normalization_scales(model, params, stats, forward.layer_inputs)
        z = np.asarray(model.layer_linear(params, stats, 1, forward.layer_inputs["conv_1"]))
    sigma = np.sqrt(z.reshape(-1, z.shape[-1]).var(0) + CONFIG.bn_epsilon)
    gamma = np.abs(np.asarray(params["conv_1"]["bn"]["scale"]))
    assert float(scales["sigma"]["conv_1"]) == pytest.approx(sigma.mean(), rel=1e-10)
    assert float(scales["gamma"]["conv_1"]) == pytest.approx(gamma.mean(), rel=1e-12)
    assert float(scales["gamma_over_sigma"]["conv_1"]) == pytest.approx((gamma / sigma).mean(), rel=1e-10)
    assert np.isnan(float(scales["sigma"]["fc1"])) and np.isnan(float(scales["gamma"]["out"]))


def test_without_a_normalization_every_scale_is_nan():
    model = PureModel(dataclasses.replace(TINY_MODEL_CONFIG, normalization="none"))
    params, stats = model.init(jax.random.key(0))
    x = jnp.zeros((4, 8, 8, 3), jnp.float32)
    forward = model.apply(params, stats, x, train=True)
    scales = normalization_scales(model, params, stats, forward.layer_inputs)
    assert all(np.isnan(float(v)) for kind in scales.values() for v in kind.values())


def test_the_momentum_preset_probes_four_momentum_steps():
    """The paper's protocol over the distance SGD with momentum 0.9 moves: s up to about
    4 / (1 - beta) = 40 (x lr g), evenly spaced, its own protocol name."""
    from bnstudy.core import PRESETS

    preset = PRESETS["paper_momentum"]
    assert (preset.ics_mode, preset.probe_start, preset.probe_mode) == ("train", "pre_step", "train")
    s = np.asarray(preset.probe_s)
    assert s[0] == 0.5 and 4 / (1 - 0.9) - 1 <= s[-1] <= 4 / (1 - 0.9)
    np.testing.assert_allclose(np.diff(s), 3.0)
    assert preset.name == "paper_momentum" and s[-1] > 2 * max(PRESETS["blog"].probe_s)
