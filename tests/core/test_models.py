from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnstudy.core import (
    TINY_MODEL_CONFIG,
    ModelConfig,
    PureModel,
    count_parameters,
    layer_names,
    leaf_paths,
)


def test_paper_sizes_are_exact():
    candidate = count_parameters(ModelConfig(normalization="batch"))
    baseline = count_parameters(ModelConfig(normalization="none"))
    assert candidate["trainable"] == 9_470_410
    assert baseline["trainable"] == 9_464_522
    assert candidate["total"] == 9_476_298  # BN running mean and variance included
    assert baseline["total"] == baseline["trainable"]


def test_noisy_has_the_baselines_parameters_and_a_noise_key_that_is_no_statistic():
    """``noisy`` (Algorithm 1's noise without BN) keeps every conv bias and adds no layer: the
    paper network's sizes are the baseline's, leaf for leaf; its only state is the noise key."""
    noisy, baseline = (ModelConfig(normalization=kind) for kind in ("noisy", "none"))
    assert count_parameters(noisy) == count_parameters(baseline)
    tiny = dataclasses.replace(TINY_MODEL_CONFIG, normalization="noisy")
    params, stats = PureModel(tiny).init(jax.random.key(0))
    plain = PureModel(dataclasses.replace(tiny, normalization="none")).init(jax.random.key(0))[0]
    assert leaf_paths(params) == leaf_paths(plain)
    assert "conv_0/bias" in leaf_paths(params) and "conv_0/bn_bias" not in leaf_paths(params)
    assert set(stats) == {"noise_key"} and stats["noise_key"].dtype == jnp.uint32


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


# 2 (4 pixels) and 3 (9 pixels) sit either side of IM2COL_MAX_PIXELS; the rest runs with the
# slow tests (each side compiles its own programs).
@pytest.mark.parametrize("side", [pytest.param(1, marks=pytest.mark.slow), 2,
                                  pytest.param(3, marks=pytest.mark.slow),
                                  pytest.param(4, marks=pytest.mark.slow),
                                  pytest.param(8, marks=pytest.mark.slow)])
def test_conv3x3_same_matches_nnx_conv_values_and_gradients(side):
    """conv3x3_same (im2col up to IM2COL_MAX_PIXELS pixels, XLA's convolution above) is
    nnx.Conv(3x3, SAME, bias): values and the gradients of x, kernel and bias, in float64
    to 1e-12 (the two differ only in the order of the sums)."""
    from flax import nnx

    from bnstudy.core.models import IM2COL_MAX_PIXELS, conv3x3_same

    assert IM2COL_MAX_PIXELS == 4  # sides 1 and 2 take the im2col path, 3+ the convolution
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(side), 3)
        x = jax.random.normal(keys[0], (3, side, side, 5), jnp.float64)

        def reference(x, kernel, bias):
            conv = nnx.Conv(5, 7, kernel_size=(3, 3), padding="SAME", use_bias=True,
                            param_dtype=jnp.float64, rngs=nnx.Rngs(0))
            conv.kernel[...], conv.bias[...] = kernel, bias
            return conv(x)

        kernel = jax.random.normal(keys[1], (3, 3, 5, 7), jnp.float64)
        bias = jax.random.normal(keys[2], (7,), jnp.float64)
        weights = jax.random.normal(keys[0], (3, side, side, 7), jnp.float64) ** 2

        ours = conv3x3_same(x, kernel, bias)
        assert ours.shape == (3, side, side, 7)
        np.testing.assert_allclose(ours, reference(x, kernel, bias), rtol=1e-12, atol=1e-12)
        grads = [jax.grad(lambda *a, f=f: jnp.sum(weights * f(*a)), argnums=(0, 1, 2))(
            x, kernel, bias) for f in (conv3x3_same, reference)]
        for ours_grad, reference_grad in zip(*grads):
            np.testing.assert_allclose(ours_grad, reference_grad, rtol=1e-12, atol=1e-12)


def _flax_batch_norm(features, dtype, scale, bias):
    from flax import nnx

    bn = nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, param_dtype=dtype,
                       rngs=nnx.Rngs(0))
    bn.scale[...], bn.bias[...] = scale, bias
    # flax creates the running statistics in float32 whatever param_dtype says
    bn.mean = nnx.BatchStat(jnp.linspace(-1.0, 1.0, features, dtype=dtype))
    bn.var = nnx.BatchStat(jnp.linspace(0.5, 2.0, features, dtype=dtype))
    return bn


@pytest.mark.parametrize("constant_channel", [False, True])
def test_batch_norm_train_matches_nnx_batchnorm(constant_channel):
    """batch_norm_train with its written-out backward pass against nnx.BatchNorm in train
    mode, differentiated by JAX: output, running statistics, and the gradients of x, scale
    and bias for a loss that also reads the batch mean and variance, in float64 to 1e-10.
    A constant channel (E[x^2] - mean^2 = 0 exactly, at the clip) must come out finite and
    equal too."""
    from flax import nnx

    from bnstudy.core.normalization import apply_normalization as _apply_batch_norm
    from bnstudy.core.normalization import batch_norm_train

    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(7), 5)
        dtype = jnp.float64
        x = 3.0 + 2.0 * jax.random.normal(keys[0], (4, 5, 3, 6), dtype)
        if constant_channel:
            x = x.at[..., 2].set(0.5)  # E[x^2] - mean^2 is exactly 0
        scale = jax.random.normal(keys[1], (6,), dtype)
        bias = jax.random.normal(keys[2], (6,), dtype)
        w_y = jax.random.normal(keys[3], x.shape, dtype)
        w_stats = jax.random.normal(keys[4], (2, 6), dtype)

        def objective(y, mean, var):
            return jnp.sum(w_y * jnp.tanh(y)) + jnp.sum(w_stats[0] * mean + w_stats[1] * var)

        def ours(x, scale, bias):
            return objective(*batch_norm_train(x, scale, bias, 1e-5))

        def reference(x, scale, bias):
            y = _flax_batch_norm(6, dtype, scale, bias)(x, use_running_average=False)
            # the batch statistics by their definition (flax stops their gradient)
            mean = x.mean((0, 1, 2))
            var = jnp.maximum(0.0, jnp.mean(x * x, (0, 1, 2)) - mean**2)
            return objective(y, mean, var)

        np.testing.assert_allclose(ours(x, scale, bias), reference(x, scale, bias), rtol=1e-10)
        ours_grads = jax.grad(ours, argnums=(0, 1, 2))(x, scale, bias)
        reference_grads = jax.grad(reference, argnums=(0, 1, 2))(x, scale, bias)
        for a, b in zip(ours_grads, reference_grads):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
        if constant_channel:
            _, _, var = batch_norm_train(x, scale, bias, 1e-5)
            assert float(var[2]) == 0.0

        # The module path: same output and running statistics as nnx.BatchNorm itself.
        ours_bn = _flax_batch_norm(6, dtype, scale, bias)
        flax_bn = _flax_batch_norm(6, dtype, scale, bias)
        np.testing.assert_allclose(_apply_batch_norm(ours_bn, x, train=True),
                                   flax_bn(x, use_running_average=False), rtol=1e-12,
                                   atol=1e-12)
        for leaf in ("mean", "var"):
            np.testing.assert_allclose(getattr(ours_bn, leaf)[...],
                                       getattr(flax_bn, leaf)[...], rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(_apply_batch_norm(ours_bn, x, train=False),
                                      flax_bn(x, use_running_average=True))
        assert isinstance(ours_bn, nnx.BatchNorm)
