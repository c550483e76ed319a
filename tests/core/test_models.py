from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnstudy.core import TINY_MODEL_CONFIG, ModelConfig, PureModel, count_parameters, layer_names


def test_paper_sizes_are_exact():
    candidate = count_parameters(ModelConfig(normalization="batch"))
    baseline = count_parameters(ModelConfig(normalization="none"))
    assert candidate["trainable"] == 9_470_410
    assert baseline["trainable"] == 9_464_522
    assert candidate["total"] == 9_476_298  # BN running mean and variance included
    assert baseline["total"] == baseline["trainable"]


def test_paper_layer_names():
    assert layer_names(ModelConfig()) == [*(f"conv_{i}" for i in range(10)), "fc1", "fc2", "out"]


@pytest.fixture(scope="module")
def tiny_pair():
    """Candidate and baseline initialized from one key (params, stats) each."""
    key = jax.random.key(1337)
    candidate = PureModel(TINY_MODEL_CONFIG).init(key)
    baseline = PureModel(dataclasses.replace(TINY_MODEL_CONFIG, normalization="none")).init(key)
    return candidate, baseline


def test_shared_weights_are_identical_from_one_key(tiny_pair):
    (candidate, _), (baseline, baseline_stats) = tiny_pair
    assert baseline_stats == {}
    for layer, block in baseline.items():
        shared = candidate[layer] if "conv" not in block else {"conv": candidate[layer]["conv"]}
        jax.tree.map(np.testing.assert_array_equal, block, shared)
    assert set(candidate["conv_0"]["bn"]) == {"scale", "bias"}
    # Layers draw from their own keys: two kernels of equal shape differ.
    assert not np.array_equal(candidate["conv_1"]["conv"]["kernel"],
                              candidate["conv_2"]["conv"]["kernel"])


def test_init_follows_the_paper(tiny_pair):
    (params, stats), _ = tiny_pair
    kernel = np.asarray(params["conv_2"]["conv"]["kernel"])  # 3x3x8x8: 576 draws
    fan_in, fan_out = 9 * 8, 9 * 8
    assert abs(kernel.std() / np.sqrt(2 / (fan_in + fan_out)) - 1) < 0.12  # Glorot normal
    assert not np.any(params["conv_2"]["conv"]["bias"]) and not np.any(params["fc1"]["bias"])
    np.testing.assert_array_equal(stats["conv_0"]["bn"]["var"], 1.0)


def test_batch_of_one_and_running_statistics_momentum(tiny_pair):
    model = PureModel(TINY_MODEL_CONFIG)
    (params, stats), _ = tiny_pair
    x = jax.random.normal(jax.random.key(1), (5, 8, 8, 3))
    assert model.apply(params, stats, x[:1], train=False).logits.shape == (1, 10)
    forward = jax.jit(lambda p, s, x: model.apply(p, s, x, train=True))(params, stats, x)
    conv = jax.lax.conv_general_dilated(
        x, params["conv_0"]["conv"]["kernel"], (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["conv_0"]["conv"]["bias"]
    batch_mean, batch_var = conv.mean((0, 1, 2)), conv.var((0, 1, 2))
    new = forward.batch_stats["conv_0"]["bn"]
    np.testing.assert_allclose(new["mean"], 0.1 * batch_mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * batch_var, rtol=1e-5)
    normalized = forward.pre_activations["conv_0"]
    np.testing.assert_allclose(normalized, (conv - batch_mean) / jnp.sqrt(batch_var + 1e-5),
                               rtol=1e-4, atol=1e-5)


def test_eval_mode_differs_only_with_batchnorm(tiny_pair):
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    for (params, stats), normalization, differs in zip(tiny_pair, ("batch", "none"), (True, False)):
        model = PureModel(dataclasses.replace(TINY_MODEL_CONFIG, normalization=normalization))
        apply = jax.jit(model.apply, static_argnames="train")
        train = apply(params, stats, x, train=True).logits
        evaluation = apply(params, stats, x, train=False).logits
        assert (not np.allclose(train, evaluation)) == differs


def test_max_pool_matches_flax_values_and_gradient():
    """The reshape-and-max pool equals nnx.max_pool, forward and backward (no ties in random
    data; a tie of zeros after a ReLU gets no gradient in either)."""
    from flax import nnx

    from bnstudy.core.models import max_pool_2x2

    x = jax.random.normal(jax.random.key(0), (3, 8, 6, 5))
    weights = jax.random.normal(jax.random.key(1), (3, 4, 3, 5))

    def flax_pool(v):
        return nnx.max_pool(v, window_shape=(2, 2), strides=(2, 2))

    np.testing.assert_array_equal(max_pool_2x2(x), flax_pool(x))
    for pool in (max_pool_2x2, flax_pool):
        assert pool(x).shape == (3, 4, 3, 5)
    ours = jax.grad(lambda v: jnp.sum(weights * max_pool_2x2(jax.nn.relu(v))))(x)
    theirs = jax.grad(lambda v: jnp.sum(weights * flax_pool(jax.nn.relu(v))))(x)
    np.testing.assert_array_equal(ours, theirs)
    assert np.count_nonzero(ours) == np.count_nonzero(np.asarray(max_pool_2x2(x)) > 0)
