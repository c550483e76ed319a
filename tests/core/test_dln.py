"""The deep linear network (Santurkar et al. 2018, Appendix A.1) against closed forms and
naive references, in float64: its forward pass is a matrix product, its l2 gradient the
closed form, its per-layer ICS a naive per-layer loop, its BatchNorm one over the full
batch, its top Hessian eigenvalue the dense Hessian's, and a seed of a stacked run the
single run."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bnstudy.core import PRESETS, ModelConfig, PureModel, count_parameters, layer_names
from bnstudy.core.config import TrainConfig
from bnstudy.core.curvature import hessian_vector_product, power_iteration, top_eigenvalue
from bnstudy.core.measurements import leaf_paths
from bnstudy.core.state import init_states, run_slice
from bnstudy.core.step import (
    OPS,
    Spec,
    gradient_ics_by_layers,
    gradient_ics_vectorized,
    update,
)
from bnstudy.core.training import train, train_seeds
from bnstudy.data.synthetic import linear_regression


def dln(depth: int, normalization: str = "none", width: int = 10) -> ModelConfig:
    return ModelConfig(family="dln", depth=depth, width=width, normalization=normalization,
                       param_dtype="float64")


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def kernels(params, depth: int) -> list[np.ndarray]:
    return [np.asarray(params[f"linear_{i}"]["dense"]["kernel"]) for i in range(depth)]


def test_the_paper_network_has_25_layers_of_10_by_10_without_bias():
    config = ModelConfig(family="dln", normalization="none")
    assert layer_names(config) == [f"linear_{i}" for i in range(25)]
    assert count_parameters(config) == {"trainable": 2500, "batch_stats": 0, "total": 2500}
    # BatchNorm after every layer but the last: 24 (scale, bias) and (mean, var) of 10
    assert count_parameters(dataclasses.replace(config, normalization="batch")) == {
        "trainable": 2500 + 24 * 20, "batch_stats": 24 * 20, "total": 2500 + 48 * 20}
    params, stats = PureModel(dataclasses.replace(config, normalization="batch")).init(
        jax.random.key(0))
    assert "bn" not in params["linear_24"] and "bn" in params["linear_23"]
    assert set(stats) == {f"linear_{i}" for i in range(24)}


def test_forward_pass_is_the_product_of_the_matrices():
    """x W_0 W_1 ... W_24 (row vectors) to 1e-12, relative, for the 25-layer network."""
    model = PureModel(dln(25))
    params, stats = model.init(jax.random.key(1))
    x = np.asarray(jax.random.normal(jax.random.key(2), (50, 10), jnp.float64))
    product = functools.reduce(np.matmul, kernels(params, 25))
    outputs = np.asarray(model.apply(params, stats, jnp.asarray(x), train=True).logits)
    np.testing.assert_allclose(outputs, x @ product, rtol=1e-12,
                               atol=1e-12 * np.abs(x @ product).max())
    # Glorot normal (fan_in = fan_out = 10): std sqrt(2 / 20) over the 2,500 draws
    draws = np.concatenate([k.ravel() for k in kernels(params, 25)])
    assert abs(draws.std() / np.sqrt(0.1) - 1) < 0.05


def test_l2_loss_and_gradient_equal_their_closed_form_for_three_layers():
    """L = (1/B) sum_b ||x_b W_0 W_1 W_2 - y_b||^2; with R = X W_0 W_1 W_2 - Y:
    dL/dW_0 = (2/B) X^T R (W_1 W_2)^T, dL/dW_1 = (2/B) (X W_0)^T R W_2^T,
    dL/dW_2 = (2/B) (X W_0 W_1)^T R."""
    model = PureModel(dln(3, width=4))
    params, stats = model.init(jax.random.key(3))
    data = linear_regression(seed=4, num_train=30, num_test=0, dimension=4, dtype=np.float64)
    x, y = data.x_train, data.y_train
    w0, w1, w2 = kernels(params, 3)
    residual = x @ w0 @ w1 @ w2 - y
    batch = x.shape[0]
    (loss, _), grads = jax.value_and_grad(
        lambda p: model.loss(p, stats, jnp.asarray(x), jnp.asarray(y), train=True),
        has_aux=True)(params)
    np.testing.assert_allclose(loss, np.sum(residual**2) / batch, rtol=1e-13)
    expected = [2 / batch * x.T @ residual @ (w1 @ w2).T,
                2 / batch * (x @ w0).T @ residual @ w2.T,
                2 / batch * (x @ w0 @ w1).T @ residual]
    for got, want in zip(kernels(grads, 3), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14 * np.abs(want).max())


def test_the_targets_are_a_matrix_applied_to_gaussian_samples():
    data = linear_regression(seed=7, num_train=1000, num_test=200, dimension=10,
                             dtype=np.float64)
    assert data.x_train.shape == data.y_train.shape == (1000, 10)
    assert data.x_test.shape == (200, 10) and data.matrix.shape == (10, 10)
    np.testing.assert_allclose(data.y_train, data.x_train @ data.matrix.T, rtol=1e-12)
    # A x: y_b = A x_b for each sample
    np.testing.assert_allclose(data.y_test[3], data.matrix @ data.x_test[3], rtol=1e-12)
    assert abs(data.x_train.mean()) < 0.05 and abs(data.x_train.std() - 1) < 0.05
    again = linear_regression(seed=7, num_train=1000, num_test=5, dimension=10,
                              dtype=np.float64)
    np.testing.assert_array_equal(again.x_train, data.x_train)  # not moved by the test size
    assert not np.array_equal(linear_regression(seed=8, num_train=1000).matrix,
                              linear_regression(seed=7, num_train=1000).matrix)
    with pytest.raises(ValueError, match="num_train must be an integer >= 1"):
        linear_regression(seed=0, num_train=0)


def test_batch_norm_normalizes_each_feature_over_the_full_batch():
    """In training mode the layer's output is (z - mean) / sqrt(var + eps) with the mean and
    variance of every row of the batch (1,000 samples): each feature has mean 0 and variance
    1 over all of them, and one sample's output moves when another sample changes."""
    config = dln(3, "batch")
    model = PureModel(config)
    params, stats = model.init(jax.random.key(5))
    x = linear_regression(seed=6, num_train=1000, num_test=0, dtype=np.float64).x_train
    forward = model.apply(params, stats, jnp.asarray(x), train=True)
    z = x @ kernels(params, 3)[0]
    expected = (z - z.mean(0)) / np.sqrt(z.var(0) + config.bn_epsilon)
    out = np.asarray(forward.pre_activations["linear_0"])
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(0), 1, rtol=1e-4)  # eps = 1e-5 of a variance near 1
    moved = x.copy()
    moved[999] *= 3.0
    other = np.asarray(model.apply(params, stats, jnp.asarray(moved), train=True)
                       .pre_activations["linear_0"])
    assert np.abs(other[0] - out[0]).max() > 1e-3
    # running statistics: momentum 0.9 towards the full-batch mean and (biased) variance
    np.testing.assert_allclose(forward.batch_stats["linear_0"]["bn"]["mean"],
                               0.1 * z.mean(0), rtol=1e-12)
    np.testing.assert_allclose(forward.batch_stats["linear_0"]["bn"]["var"],
                               0.9 + 0.1 * z.var(0), rtol=1e-12)
    # the last layer has no normalization: its pre-activation is its linear output
    last_input = np.asarray(forward.layer_inputs["linear_2"])
    np.testing.assert_allclose(forward.logits, last_input @ kernels(params, 3)[2], rtol=1e-12)


def naive_ics(model: PureModel, params_t, params_t1, batch_stats, grads, x, y, *, train):
    """||G_i - G'_i|| per layer by a plain loop: G'_i is the full model's gradient with
    respect to layer i at (W_{t+1} below layer i, W_t from layer i on), every layer in the
    given mode, running statistics S_t in eval mode."""
    names = model.layer_names
    norms = []
    for i, name in enumerate(names):
        mixed = {layer: (params_t1 if j < i else params_t)[layer]
                 for j, layer in enumerate(names)}

        def loss(layer_params, mixed=mixed, name=name):
            return model.loss({**mixed, name: layer_params}, batch_stats, x, y,
                              train=train)[0]

        g_prime = jax.grad(loss)(params_t[name])
        flat_g, flat_gp = ravel_pytree(grads[name])[0], ravel_pytree(g_prime)[0]
        norms.append(float(jnp.linalg.norm(flat_g - flat_gp)))
    return np.asarray(norms)


@pytest.mark.parametrize("normalization", ["none", "batch"])
def test_ics_per_layer_equals_a_naive_loop_on_four_layers(normalization):
    config = dln(4, normalization, width=5)
    train_config = TrainConfig(batch_size=40, learning_rate=0.05, momentum=0.0,
                               steps_per_chunk=1, eval_every=1)
    spec = Spec.of(config, train_config)
    model = PureModel(config)
    state = run_slice(init_states(model, train_config, train_config.runs), 0)
    data = linear_regression(seed=9, num_train=40, num_test=0, dimension=5, dtype=np.float64)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    # one step first, so the running statistics S_t differ from their initial values
    state = update(spec, state, x, y)[0]
    new_state, _, grads, _ = update(spec, state, x, y)
    ops = {name: functools.partial(op, spec) for name, op in OPS.items()}
    for mode in ("train", "eval"):
        measured = gradient_ics_by_layers(ops, spec, state.params, new_state.params,
                                          state.batch_stats, grads, x, y,
                                          train=mode == "train")
        expected = naive_ics(model, state.params, new_state.params, state.batch_stats, grads,
                             x, y, train=mode == "train")
        assert np.all(expected[1:] > 0)
        np.testing.assert_allclose(measured["l2_layer"][1:], expected[1:], rtol=1e-9)
        # the scan loop's form (one vmap over the layers) is the same computation
        vectorized = gradient_ics_vectorized(spec, state.params, new_state.params,
                                             state.batch_stats, grads, x, y,
                                             train=mode == "train")
        np.testing.assert_allclose(vectorized["l2_layer"][1:], expected[1:], rtol=1e-9)
        np.testing.assert_allclose(vectorized["cosine_leaf"], measured["cosine_leaf"],
                                   rtol=1e-9)
        if mode == "train":
            # G'_0 is G_0 itself: no layer below the first (zero up to float64 rounding of
            # the two programs' sums: 1e-13 of the gradient, where the other layers' are
            # 1e-3 and more of it)
            g0 = float(jnp.linalg.norm(ravel_pytree(grads["linear_0"])[0]))
            assert measured["l2_layer"][0] <= 1e-13 * g0 and expected[0] <= 1e-13 * g0
            assert vectorized["l2_layer"][0] == 0.0  # the scan loop's: G'_0 is G_0 itself
            assert np.all(measured["l2_layer"][1:] > 1e-6 * g0)
        elif normalization == "batch":
            # eval mode: G' uses S_t, G the batch statistics, at every layer, the first too
            np.testing.assert_allclose(measured["l2_layer"][0], expected[0], rtol=1e-9)
            assert expected[0] > 0
    # the ICS leaves of a layer are its kernel (and BN's scale and bias)
    assert [n for n in leaf_paths(grads) if n.startswith("linear_3/")] == ["linear_3/kernel"]


def test_top_hessian_eigenvalue_of_a_two_layer_network_equals_the_dense_hessians():
    """The top eigenvalue by power iteration on HVPs of the l2 loss at a known point (W_0 = diag(1..3) + 0.1,
    W_1 = I + 0.2 J) against the largest eigenvalue of the dense 18 x 18 Hessian, 1e-6."""
    model = PureModel(dln(2, width=3))
    params, stats = model.init(jax.random.key(0))
    params = {"linear_0": {"dense": {"kernel": jnp.diag(jnp.arange(1.0, 4.0)) + 0.1}},
              "linear_1": {"dense": {"kernel": jnp.eye(3) + 0.2 * jnp.ones((3, 3))}}}
    data = linear_regression(seed=11, num_train=20, num_test=0, dimension=3, dtype=np.float64)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def loss(p):
        return model.loss(p, stats, x, y, train=True)[0]

    flat, unravel = ravel_pytree(params)
    dense = np.asarray(jax.hessian(lambda w: loss(unravel(w)))(flat))
    top = np.linalg.eigvalsh(dense)[-1]
    result = top_eigenvalue(lambda v: hessian_vector_product(loss, params, v),
                            jax.tree.map(jnp.ones_like, params), rtol=1e-12, max_iters=5000)
    assert result.converged
    np.testing.assert_allclose(result.eigenvalue, top, rtol=1e-6)


@pytest.mark.slow  # 12 s: two whole trainings compile the scan loop (CI runs the slow tests too)
def test_seed_k_of_five_seeds_equals_the_single_run():
    config = dln(4, "batch", width=5)
    train_config = TrainConfig(seeds=(3, 1, 4, 15, 9), batch_size=40, epochs=6,
                               learning_rate=0.01, momentum=0.0, eval_every=3,
                               steps_per_chunk=3, snapshot_every=2, step_loop="scan")
    data = linear_regression(seed=2, num_train=40, num_test=10, dimension=5, dtype=np.float64)
    arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
    presets = [PRESETS["paper"]]
    stacked = train_seeds(config, train_config, presets, *arrays)
    single = train(config, dataclasses.replace(train_config, seeds=(), seed=15), presets,
                   *arrays)
    fourth = stacked[3]
    assert fourth.seed == single.seed == 15
    np.testing.assert_allclose(fourth.train_loss, single.train_loss, rtol=1e-12)
    np.testing.assert_allclose(fourth.test_loss, single.test_loss, rtol=1e-12)
    assert np.all(np.isnan(single.test_accuracy)) and np.all(np.isnan(single.train_accuracy))
    for name in ("ics_l2", "probe_loss", "beta_smoothness"):
        want = single.measurements["paper"][name]
        # the first layer's train-mode ICS is rounding (1e-15) in both: an absolute bound
        np.testing.assert_allclose(fourth.measurements["paper"][name], want, rtol=1e-10,
                                   atol=1e-12 * np.abs(want).max())
    # (a BN bias before the next BN has a zero gradient: its values are rounding, 1e-17)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15),
                 fourth.final_params, single.final_params)
    assert not np.allclose(stacked[0].train_loss, single.train_loss)
    # full-batch gradient descent: every step sees all 40 samples, so the loss falls
    assert single.train_loss[-1] < single.train_loss[0]


def test_the_shifts_the_next_batch_norm_removes_are_the_undefined_ics_leaves():
    """A BN shift followed (through a linear map) by another BN has no effect on the loss:
    its gradient is rounding; the last BN's shift, which reaches the output, has one."""
    from bnstudy.core.results import undefined_ics_leaves

    config = dln(4, "batch", width=5)
    model = PureModel(config)
    params, stats = model.init(jax.random.key(12))
    data = linear_regression(seed=13, num_train=40, num_test=0, dimension=5, dtype=np.float64)
    grads = jax.grad(lambda p: model.loss(p, stats, jnp.asarray(data.x_train),
                                          jnp.asarray(data.y_train), train=True)[0])(params)
    norm = float(jnp.linalg.norm(ravel_pytree(grads)[0]))
    assert undefined_ics_leaves(config) == {"linear_0/bn_bias", "linear_1/bn_bias"}
    for i in (0, 1):
        assert float(jnp.abs(grads[f"linear_{i}"]["bn"]["bias"]).max()) <= 1e-13 * norm
    assert float(jnp.abs(grads["linear_2"]["bn"]["bias"]).max()) > 1e-6 * norm
    assert undefined_ics_leaves(dataclasses.replace(config, normalization="none")) == set()


def test_the_top_eigenvalue_is_the_largest_not_the_dominant_one():
    """A saddle: eigenvalues -5, 1, 2. Power iteration alone finds -5 (the dominant one);
    the curvature measurement reports the top one, 2, by a shifted second iteration."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    matrix = jnp.asarray(q @ np.diag([-5.0, 1.0, 2.0]) @ q.T)
    dominant = power_iteration(lambda v: matrix @ v, jnp.ones(3), rtol=1e-12, max_iters=2000)
    np.testing.assert_allclose(dominant.eigenvalue, -5.0, rtol=1e-9)
    top = top_eigenvalue(lambda v: matrix @ v, jnp.ones(3), rtol=1e-13, max_iters=5000)
    assert top.converged and top.iterations > dominant.iterations
    np.testing.assert_allclose(top.eigenvalue, 2.0, rtol=1e-8)
    positive = top_eigenvalue(lambda v: -matrix @ v, jnp.ones(3), rtol=1e-12, max_iters=2000)
    np.testing.assert_allclose(positive.eigenvalue, 5.0, rtol=1e-9)  # dominant and top agree
