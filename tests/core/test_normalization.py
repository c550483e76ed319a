"""The normalization variants beyond BatchNorm: noisy BatchNorm (Santurkar et al.,
Algorithm 1), the same noise without BN (``noisy``, the paper's control) and the mean-centred
Lp normalizations (their section 3.3)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import stats

from bnstudy.core import (
    PRESETS,
    TINY_MODEL_CONFIG,
    TINY_TRAIN_CONFIG,
    MeasurementPlan,
    PureModel,
    Spec,
    train_seeds,
    train_step,
)
from bnstudy.core.config import ConfigError, ModelConfig
from bnstudy.core.normalization import (
    NOISE_KEY_TAG,
    LpNorm,
    apply_batch_noise,
    batch_noise,
    lp_statistics,
)
from bnstudy.core.results import undefined_ics_leaves
from bnstudy.core.state import init_state
from bnstudy.core.step import model_of

# KS tests at this level fail a correct implementation once in 10,000 runs per test.
KS_P_MIN = 1e-4


def test_noise_draws_follow_algorithm_1():
    """Over 4,000 draws of 16 channels x 8 examples: mu ~ U(-0.5, 0.5), sigma ~ U(1, 1.25)
    per channel; m - mu ~ U(-0.1, 0.1) and s - sigma ~ N(0, 0.1^2) per example (KS tests),
    and mu, sigma constant across the examples of one draw."""
    config = ModelConfig()
    keys = jax.random.split(jax.random.key(3), 4000)
    s, m = jax.vmap(lambda k: batch_noise(k, 8, 16, config, jnp.float32))(keys)
    # recover the per-channel draws from the same keys (the function's own split)
    parts = jax.vmap(lambda k: jax.random.split(k, 4))(keys)
    mu = jax.vmap(lambda k: jax.random.uniform(k, (16,), jnp.float32, -0.5, 0.5))(parts[:, 0])
    sigma = jax.vmap(lambda k: jax.random.uniform(k, (16,), jnp.float32, 1.0, 1.25))(parts[:, 1])
    mu, sigma, s, m = map(np.asarray, (mu, sigma, s, m))
    assert stats.kstest(mu.ravel(), stats.uniform(-0.5, 1.0).cdf).pvalue > KS_P_MIN
    assert stats.kstest(sigma.ravel(), stats.uniform(1.0, 0.25).cdf).pvalue > KS_P_MIN
    m_offset = (m - mu[:, None, :]).ravel()
    s_offset = (s - sigma[:, None, :]).ravel()
    assert stats.kstest(m_offset, stats.uniform(-0.1, 0.2).cdf).pvalue > KS_P_MIN
    assert stats.kstest(s_offset, stats.norm(0.0, 0.1).cdf).pvalue > KS_P_MIN
    assert np.all(np.abs(m_offset) <= 0.1 + 1e-12)
    # moments of the marginals: E[m] = 0, Var[m] = 1/12 + 0.2^2/12; E[s] = 1.125,
    # Var[s] = 0.25^2/12 + 0.01 (standard errors over 512,000 values are ~4e-4)
    np.testing.assert_allclose(m.mean(), 0.0, atol=3e-3)
    np.testing.assert_allclose(m.var(), 1 / 12 + 0.04 / 12, rtol=1e-2)
    np.testing.assert_allclose(s.mean(), 1.125, atol=2e-3)
    np.testing.assert_allclose(s.var(), 0.0625 / 12 + 0.01, rtol=2e-2)


def test_noise_is_applied_per_example_and_channel_over_all_pixels():
    a = jnp.arange(2 * 3 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 3, 4)
    s = jnp.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]])
    m = jnp.array([[0.0, 1.0, 0.0, -1.0], [10.0, 0.0, 0.0, 0.0]])
    out = np.asarray(apply_batch_noise(a, s, m))
    for b in range(2):
        for c in range(4):
            np.testing.assert_array_equal(out[b, :, :, c], np.asarray(a[b, :, :, c]) * s[b, c]
                                          + m[b, c])


def _noisy_config(**noise):
    return dataclasses.replace(TINY_MODEL_CONFIG, normalization="batch_noisy", **noise)


def test_noisy_model_is_batchnorm_then_the_noise_of_the_step_key():
    """A train-mode forward pass of the noisy model gives, at each BN layer, the BN output
    of the clean model times s plus m, with (s, m) drawn from fold_in(step key, layer)."""
    key = jax.random.key(5)
    clean, noisy = PureModel(TINY_MODEL_CONFIG), PureModel(_noisy_config())
    params, clean_stats = clean.init(key)
    noisy_params, noisy_stats = noisy.init(key)
    jax.tree.map(np.testing.assert_array_equal, params, noisy_params)  # same init
    x = jax.random.normal(jax.random.key(6), (8, 8, 8, 3))
    step_key = jax.random.wrap_key_data(noisy_stats["noise_key"])
    # the layer-by-layer reference: clean BN output, then the noise, from the same input
    @jax.jit
    def layer_pairs(x):
        pairs, h = [], x
        for index in range(len(TINY_MODEL_CONFIG.conv_features)):
            z = clean.layer_linear(params, clean_stats, index, h)
            bn_out, _ = clean.layer_rest(params, clean_stats, index, z, train=True)
            s, m = batch_noise(jax.random.fold_in(step_key, index), 8, z.shape[-1],
                               _noisy_config(), z.dtype)
            noisy_pre, h = noisy.layer_rest(params, noisy_stats, index, z, train=True)
            pairs.append((noisy_pre, apply_batch_noise(bn_out, s, m)))
        return pairs

    for got, want in layer_pairs(x):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    forward = noisy.apply(params, noisy_stats, x, train=True)
    assert not np.array_equal(forward.batch_stats["noise_key"], noisy_stats["noise_key"])
    # eval mode: no noise, the key is left as it is, the output equals the clean model's
    clean_eval = clean.apply(params, clean_stats, x, train=False).logits
    noisy_eval = noisy.apply(params, noisy_stats, x, train=False)
    np.testing.assert_array_equal(noisy_eval.logits, clean_eval)
    np.testing.assert_array_equal(noisy_eval.batch_stats["noise_key"], noisy_stats["noise_key"])


# -- noisy: Algorithm 1's noise without BN (the paper's control) ------------------------------

NOISY = dataclasses.replace(TINY_MODEL_CONFIG, normalization="noisy")
PLAIN = dataclasses.replace(TINY_MODEL_CONFIG, normalization="none")


def _reference_forward(params, step_key, x, config):
    """The plain network written out op by op: 3x3 SAME conv plus bias; then, unless
    ``step_key`` is None, ``s a + m`` with (s, m) = batch_noise(fold_in(step_key, conv index))
    broadcast by hand; ReLU; nnx's 2x2 max-pool; flatten; the dense layers.

    Returns:
        logits [B, classes], {conv_i: pre-activation [B, H, W, C]}.
    """
    h, pre = x, {}
    for index in range(len(config.conv_features)):
        conv = params[f"conv_{index}"]["conv"]
        a = jax.lax.conv_general_dilated(h, conv["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv["bias"]
        if step_key is not None:
            s, m = batch_noise(jax.random.fold_in(step_key, index), a.shape[0], a.shape[-1],
                               config, a.dtype)
            a = a * s[:, None, None, :] + m[:, None, None, :]
        pre[f"conv_{index}"], h = a, jax.nn.relu(a)
        if index in config.pool_after:
            h = nnx.max_pool(h, (2, 2), strides=(2, 2))
    h = h.reshape(h.shape[0], -1)
    for name in [f"fc{j + 1}" for j in range(len(config.dense_features))]:
        h = jax.nn.relu(h @ params[name]["kernel"] + params[name]["bias"])
    return h @ params["out"]["kernel"] + params["out"]["bias"], pre


def test_noisy_model_is_the_plain_network_with_algorithm_1_noise_after_every_conv():
    """``noisy`` has the parameters of ``none`` (one key) and batch_noisy's noise key; in train
    mode each conv's output a becomes s a + m, (s, m) drawn from fold_in(step key, conv) as
    batch_noisy draws them, and the pass leaves the next step's key; eval mode is ``none``'s
    network bit for bit and leaves the key as it is."""
    key = jax.random.key(5)
    noisy, plain = PureModel(NOISY), PureModel(PLAIN)
    params, noisy_stats = noisy.init(key)
    plain_params, plain_stats = plain.init(key)
    jax.tree.map(np.testing.assert_array_equal, params, plain_params)
    assert plain_stats == {} and set(noisy_stats) == {"noise_key"}
    np.testing.assert_array_equal(noisy_stats["noise_key"],
                                  PureModel(_noisy_config()).init(key)[1]["noise_key"])
    x = jax.random.normal(jax.random.key(6), (8, 8, 8, 3))
    step_key = jax.random.wrap_key_data(noisy_stats["noise_key"])
    forward = jax.jit(noisy.apply, static_argnames="train")(params, noisy_stats, x, train=True)
    want_logits, want_pre = _reference_forward(params, step_key, x, NOISY)
    for layer, want in want_pre.items():
        np.testing.assert_allclose(forward.pre_activations[layer], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(forward.logits, want_logits, rtol=1e-5, atol=1e-5)
    clean_logits, _ = _reference_forward(params, None, x, NOISY)
    assert np.max(np.abs(forward.logits - clean_logits)) > 1e-2  # the noise is there
    np.testing.assert_array_equal(forward.batch_stats["noise_key"], jax.random.key_data(
        jax.random.fold_in(step_key, NOISE_KEY_TAG)))
    noisy_eval = jax.jit(noisy.apply, static_argnames="train")(params, noisy_stats, x,
                                                              train=False)
    plain_eval = jax.jit(plain.apply, static_argnames="train")(params, plain_stats, x,
                                                              train=False)
    np.testing.assert_array_equal(noisy_eval.logits, plain_eval.logits)
    np.testing.assert_array_equal(noisy_eval.batch_stats["noise_key"], noisy_stats["noise_key"])


def test_conv_biases_have_a_defined_ics_exactly_without_a_normalization_layer():
    """Without a layer (``none``, ``noisy``) the conv bias moves the loss and its ICS is kept;
    after BN (noisy or not) or an Lp normalization the batch mean removes it: its gradient is
    rounding noise and its ICS is dropped."""
    biases = {f"conv_{i}/bias" for i in range(len(TINY_MODEL_CONFIG.conv_features))}
    x = jax.random.normal(jax.random.key(7), (8, 8, 8, 3))
    y = jnp.arange(8) % 10
    for kind, defined in [("none", True), ("noisy", True), ("batch", False),
                          ("batch_noisy", False), ("l1", False), ("l2", False), ("linf", False)]:
        config = dataclasses.replace(TINY_MODEL_CONFIG, normalization=kind)
        assert undefined_ics_leaves(config) == (set() if defined else biases), kind
        if kind in ("noisy", "batch_noisy"):
            model = PureModel(config)
            params, batch_stats = model.init(jax.random.key(8))
            grads = jax.jit(jax.grad(lambda p, s=batch_stats, m=model: m.loss(
                p, s, x, y, train=True)[0]))(params)
            bias_grad = np.linalg.norm(grads["conv_0"]["conv"]["bias"])
            assert (bias_grad > 1e-3) if defined else (bias_grad < 1e-5), (kind, bias_grad)


def test_noisy_measures_train_and_eval_mode_apart_as_batchnorm_does():
    """For ``none`` the two modes are one function, computed once; ``noisy``'s eval mode has
    no noise, so the blog (eval) and paper (train) protocols need their own ICS and probes."""
    presets = [PRESETS["paper"], PRESETS["blog"]]

    def modes(kind):
        config = dataclasses.replace(TINY_MODEL_CONFIG, normalization=kind)
        plan = MeasurementPlan.build(config, TINY_TRAIN_CONFIG, presets, 12)
        return sorted((c.kind, c.train) for c in plan.computations)

    assert modes("none") == [("ics", True), ("probe", True), ("probe", True)]
    assert modes("noisy") == modes("batch") == [("ics", False), ("ics", True),
                                                ("probe", False), ("probe", True)]


def test_noisy_trains_on_the_noise_of_each_step_key_and_leaves_the_next():
    """Three steps on one batch: each step's train loss is the reference network's loss at
    W_t under the noise of the state's key, the key then advances by fold_in(key, tag), and
    the weights (conv biases included) move."""
    spec = Spec.of(NOISY, TINY_TRAIN_CONFIG)
    x = jax.random.normal(jax.random.key(9), (8, 8, 8, 3))
    y = jnp.arange(8) % 10
    step = jax.jit(lambda state: train_step(spec, state, (x, y)))
    state = init_state(model_of(NOISY), TINY_TRAIN_CONFIG, 0)
    losses = []
    for _ in range(3):
        key_t = jax.random.wrap_key_data(state.batch_stats["noise_key"])
        logits, _ = _reference_forward(state.params, key_t, x, NOISY)
        new_state, metrics = step(state)
        losses.append(float(metrics["train_loss"]))
        np.testing.assert_allclose(
            metrics["train_loss"],
            optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), rtol=1e-5)
        np.testing.assert_array_equal(new_state.batch_stats["noise_key"], jax.random.key_data(
            jax.random.fold_in(key_t, NOISE_KEY_TAG)))
        assert not np.array_equal(new_state.params["conv_0"]["conv"]["bias"],
                                  state.params["conv_0"]["conv"]["bias"])
        state = new_state
    assert int(state.step) == 3 and int(state.diverged_at) == -1
    assert np.all(np.isfinite(losses))


@pytest.mark.slow  # compiles the noisy model's measurement programs (about a minute on two cores)
def test_noisy_first_layer_ics_is_zero_in_train_mode_only(tiny_data):
    """A measured run of ``noisy``: the paper protocol's (train-mode) ICS of conv_0 is zero by
    definition, G' seeing the step's own noise, while the blog protocol's (eval-mode, no noise)
    is not; the conv biases keep their per-leaf ICS; the final key is the initial one
    advanced once per step."""
    x, y = tiny_data
    (run,) = train_seeds(NOISY, TINY_TRAIN_CONFIG, [PRESETS["paper"], PRESETS["blog"]], x, y,
                         x[:16], y[:16])
    paper, blog = run.measurements["paper"], run.measurements["blog"]
    assert np.all(np.isfinite(run.train_loss)) and run.diverged_at is None
    assert np.max(paper["ics_l2"][:, 0]) < 1e-6 and np.min(blog["ics_l2"][:, 0]) > 1e-2
    assert {"conv_0/bias", "conv_2/bias"} <= set(paper["ics_l2_leaf"]) & set(blog["ics_l2_leaf"])
    key = jax.random.wrap_key_data(run.initial_batch_stats["noise_key"])
    for _ in run.steps:
        key = jax.random.fold_in(key, NOISE_KEY_TAG)
    np.testing.assert_array_equal(run.final_batch_stats["noise_key"], jax.random.key_data(key))


@pytest.fixture(scope="module")
def tiny_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 8, 8, 3)).astype(np.float32)
    return x, rng.integers(0, 10, 48).astype(np.int32)


def test_the_noise_off_is_exactly_the_identity():
    """All noise ranges zero and sigma = 1: Algorithm 1's distributions are point masses, s is
    exactly 1 and m exactly 0, and s a + m is a, bit for bit (forward and gradient), in
    float32 and float64; a point mass at sigma = 2 gives s = 2 everywhere."""
    off = _noisy_config(noise_mean_range=0.0, noise_std_range=(1.0, 1.0),
                        noise_mean_jitter=0.0, noise_std_jitter=0.0)
    for dtype in (jnp.float32, jnp.float64):
        with jax.enable_x64(dtype == jnp.float64):
            s, m = batch_noise(jax.random.key(3), 8, 5, off, dtype)
            np.testing.assert_array_equal(s, np.ones((8, 5)))
            np.testing.assert_array_equal(m, np.zeros((8, 5)))
            a = jax.random.normal(jax.random.key(4), (8, 3, 3, 5), dtype)
            np.testing.assert_array_equal(apply_batch_noise(a, s, m), a)
            grad = jax.grad(lambda x: jnp.sum(jnp.sin(apply_batch_noise(x, s, m))))(a)
            np.testing.assert_array_equal(grad, jnp.cos(a))
    doubled = dataclasses.replace(off, noise_std_range=(2.0, 2.0))
    np.testing.assert_array_equal(batch_noise(jax.random.key(3), 4, 2, doubled, jnp.float32)[0],
                                  np.full((4, 2), 2.0))


@pytest.mark.slow  # three tiny trainings with every measurement program compiled
def test_noisy_variant_with_the_noise_off_equals_the_bn_candidate_bitwise(tiny_data):
    """All noise ranges zero and sigma = 1: s is exactly 1 and m exactly 0 (above), constants
    XLA folds away, so training is bit for bit that of the BatchNorm candidate: losses, ICS,
    probes and weights.

    (When the noise off still drew s and m from zero-width distributions, the two models were
    two programs that compute the same values, and XLA:CPU fused their batch-statistics
    reductions by processor: bitwise on the AMD EPYC VMs, one ulp in loss 7 of 12 on the
    Intel Xeon VM of 2026-12-02. Now the noise off is BatchNorm's program.)"""
    x, y = tiny_data
    off = _noisy_config(noise_mean_range=0.0, noise_std_range=(1.0, 1.0),
                        noise_mean_jitter=0.0, noise_std_jitter=0.0)
    train_config = dataclasses.replace(TINY_TRAIN_CONFIG, seeds=(1, 2))
    runs = [train_seeds(config, train_config, [PRESETS["paper"]], x, y, x[:16], y[:16])
            for config in (TINY_MODEL_CONFIG, off)]
    for clean, noisy in zip(*runs, strict=True):
        np.testing.assert_array_equal(noisy.train_loss, clean.train_loss)
        for name in ("ics_l2", "ics_cosine", "probe_loss", "grad_diff", "beta_smoothness"):
            np.testing.assert_array_equal(noisy.measurements["paper"][name],
                                          clean.measurements["paper"][name], err_msg=name)
        jax.tree.map(np.testing.assert_array_equal, noisy.final_params, clean.final_params)
    # and with the noise on, the same start gives another trajectory
    on = train_seeds(_noisy_config(), train_config, [PRESETS["paper"]], x, y, x[:16], y[:16])
    assert np.max(np.abs(on[0].train_loss[1:] - runs[0][0].train_loss[1:])) > 1e-3


@pytest.mark.parametrize("kind, statistic", [
    ("l1", lambda y: np.abs(y).mean(axis=(0, 1, 2))),
    ("l2", lambda y: np.sqrt(np.square(y).mean(axis=(0, 1, 2)))),
    ("linf", lambda y: np.abs(y).max(axis=(0, 1, 2))),
])
def test_lp_normalized_activations_have_unit_norm(kind, statistic):
    """With scale 1 and bias 0, each channel of the output has mean 0 and Lp statistic
    norm / (norm + eps), i.e. 1 to 1e-4 for channels of norm >= 0.5 (float64)."""
    with jax.enable_x64(True):
        x = 3.0 + jax.random.normal(jax.random.key(2), (6, 5, 5, 7), jnp.float64) * \
            jnp.linspace(0.5, 4.0, 7)
        layer = LpNorm(7, kind, momentum=0.9, epsilon=1e-5, dtype=jnp.float64)
        y = np.asarray(layer(x, train=True))
        np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-12)
        np.testing.assert_allclose(statistic(y), 1.0, rtol=1e-4)
        # the statistic is the named norm of x - mean, computed independently here
        centered = np.asarray(x) - np.asarray(x).mean(axis=(0, 1, 2))
        np.testing.assert_allclose(lp_statistics(x, kind)[1], statistic(centered), rtol=1e-12)
        # running averages move 10% of the way from (0, 1) to the batch statistics
        mean, norm = lp_statistics(x, kind)
        np.testing.assert_allclose(layer.mean[...], 0.1 * mean, rtol=1e-12)
        np.testing.assert_allclose(layer.norm[...], 0.9 + 0.1 * norm, rtol=1e-12)
        # eval mode normalizes by the running averages
        np.testing.assert_allclose(layer(x, train=False),
                                   (x - layer.mean[...]) / (layer.norm[...] + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("kind", ["l1", "l2", "linf"])
def test_lp_models_train_with_finite_gradients_even_on_a_constant_channel(kind):
    config = dataclasses.replace(TINY_MODEL_CONFIG, normalization=kind)
    model = PureModel(config)
    params, batch_stats = model.init(jax.random.key(0))
    assert set(batch_stats["conv_0"]["bn"]) == {"mean", "norm"}
    x = jnp.zeros((4, 8, 8, 3))  # every conv output channel is constant (its bias)
    grads = jax.jit(jax.grad(
        lambda p: model.loss(p, batch_stats, x, jnp.arange(4), train=True)[0]))(params)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(grads))


def test_noise_std_range_must_be_ordered():
    with pytest.raises(ConfigError, match="noise_std_range must be"):
        ModelConfig.from_dict({"noise_std_range": [1.25, 1.0]})
    with pytest.raises(ConfigError, match="must be one of"):
        ModelConfig.from_dict({"normalization": "layer"})
