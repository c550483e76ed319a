"""The moment set (bnstudy.core.moments) in float64: it has the batch's mean and covariance,
and on it the deep linear network's loss, gradient, Hessian, ICS and whole training are those
on the samples, for the normalizations it admits; the ones it refuses are not."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bnstudy.core import PRESETS, ModelConfig, PureModel
from bnstudy.core.config import TrainConfig
from bnstudy.core.curvature import hessian_vector_product
from bnstudy.core.moments import MOMENT_NORMALIZATIONS, moment_set, moment_set_problem
from bnstudy.core.state import init_states, run_slice
from bnstudy.core.step import Spec, gradient_ics_vectorized, update
from bnstudy.core.training import train_seeds
from bnstudy.data.synthetic import linear_regression


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def dln(depth: int, normalization: str, width: int = 5) -> ModelConfig:
    return ModelConfig(family="dln", depth=depth, width=width, normalization=normalization,
                       param_dtype="float64")


def samples(n: int = 200, width: int = 5, seed: int = 3):
    data = linear_regression(seed=seed, num_train=n, num_test=0, dimension=width,
                             dtype=np.float64)
    return data.x_train, data.y_train


def test_the_moment_set_has_the_batchs_mean_and_covariance():
    x, y = samples()
    xm, ym = moment_set(x, y)
    # y = A x: the joint (x, y) spans 5 directions, so 2 x 5 points stand for 200
    assert xm.shape == (10, 5) and ym.shape == (10, 5) and xm.dtype == np.float64
    z, zm = np.concatenate([x, y], 1), np.concatenate([xm, ym], 1)
    np.testing.assert_allclose(zm.mean(0), z.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.cov(zm.T, bias=True), np.cov(z.T, bias=True), rtol=0,
                               atol=1e-12 * np.abs(np.cov(z.T)).max())
    np.testing.assert_allclose(ym, xm @ np.linalg.lstsq(x, y, rcond=None)[0], atol=1e-12)
    # targets that are not a function of x: every direction of the joint, 2 x 10 points
    noisy = y + np.random.default_rng(0).normal(size=y.shape)
    xn, yn = moment_set(x, noisy)
    assert xn.shape == (20, 5)
    np.testing.assert_allclose(np.cov(np.concatenate([xn, yn], 1).T, bias=True),
                               np.cov(np.concatenate([x, noisy], 1).T, bias=True), atol=1e-12)
    with pytest.raises(ValueError, match=r"x \[n, d\] and y \[n, k\]"):
        moment_set(x, y[:10])


def _objective(model, params, stats, x, y, *, train):
    return model.loss(params, stats, x, y, train=train)[0]


@pytest.mark.parametrize("normalization", MOMENT_NORMALIZATIONS)
def test_loss_gradient_hessian_and_ics_on_the_moment_set_are_those_on_the_samples(normalization):
    """At a point after one step (running statistics moved), in train and eval mode: the loss
    and its gradient to 1e-10, a Hessian-vector product to 1e-9, every layer's ICS to 1e-8."""
    config = dln(4, normalization)
    x, y = samples()
    xm, ym = moment_set(x, y)
    model = PureModel(config)
    train = TrainConfig(batch_size=len(x), learning_rate=0.05, momentum=0.0)
    spec = Spec.of(config, train)
    state = run_slice(init_states(model, train, train.runs), 0)
    state = update(spec, state, jnp.asarray(x), jnp.asarray(y))[0]
    params, stats = state.params, state.batch_stats
    for mode in (True, False):
        on_samples = functools.partial(_objective, model, stats=stats, x=x, y=y, train=mode)
        on_points = functools.partial(_objective, model, stats=stats, x=xm, y=ym, train=mode)
        np.testing.assert_allclose(on_points(params=params), on_samples(params=params),
                                   rtol=1e-10)
        g, gm = (ravel_pytree(jax.grad(lambda p, f=f: f(params=p))(params))[0]
                 for f in (on_samples, on_points))
        np.testing.assert_allclose(gm, g, rtol=0, atol=1e-10 * np.abs(g).max())
        v = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape),
                         params)
        hv, hvm = (ravel_pytree(hessian_vector_product(lambda p, f=f: f(params=p), params, v))[0]
                   for f in (on_samples, on_points))
        np.testing.assert_allclose(hvm, hv, rtol=0, atol=1e-9 * np.abs(hv).max())
    # the ICS of every layer: G at W_t, G' after the layers below have moved
    new_state, _, grads, _ = update(spec, state, jnp.asarray(x), jnp.asarray(y))
    new_points, _, grads_m, _ = update(Spec.of(config, dataclasses.replace(
        train, batch_size=len(xm))), state, jnp.asarray(xm), jnp.asarray(ym))
    for mode in (True, False):
        ics = gradient_ics_vectorized(spec, params, new_state.params, stats, grads, x, y,
                                      train=mode)["l2_layer"]
        ics_m = gradient_ics_vectorized(spec, params, new_points.params, stats, grads_m, xm, ym,
                                        train=mode)["l2_layer"]
        assert np.all(np.asarray(ics)[1:] > 0)
        np.testing.assert_allclose(ics_m, ics, rtol=1e-8, atol=1e-12 * np.abs(ics).max())


@pytest.mark.parametrize("normalization", ["l1", "linf", "batch_noisy", "noisy"])
def test_the_normalizations_it_refuses_are_not_functions_of_the_moments(normalization):
    problem = moment_set_problem("dln", normalization, 200, 200, None)
    assert problem is not None and "not a function of the batch's mean and covariance" in problem
    if normalization in ("l1", "linf"):  # (the noisy kinds draw noise per sample: no point set)
        x, y = samples()
        xm, ym = moment_set(x, y)
        model = PureModel(dln(4, normalization))
        params, stats = model.init(jax.random.key(0))
        loss = _objective(model, params, stats, x, y, train=True)
        assert abs(_objective(model, params, stats, xm, ym, train=True) / loss - 1) > 1e-3


def test_what_is_not_exact_is_refused_with_what_to_change():
    assert moment_set_problem("dln", "batch", 200, 200, 200) is None
    assert moment_set_problem("dln", "none", 200, 200, None) is None
    assert "not 'vgg'" in moment_set_problem("vgg", "batch", 128, 128, None)
    assert "set batch_size to 200" in moment_set_problem("dln", "batch", 50, 200, None)
    assert "set it to 200" in moment_set_problem("dln", "batch", 200, 200, 100)
    x, y = samples(40)
    config = TrainConfig(batch_size=20, moment_set=True, momentum=0.0, epochs=1,
                         steps_per_chunk=1, eval_every=1)
    with pytest.raises(ValueError, match=r"TrainConfig\.moment_set cannot be used here: it "
                                         r"needs full-batch training, but batch_size is 20 of 40"):
        train_seeds(dln(3, "batch"), config, [PRESETS["paper"]], x, y, x, y)


@pytest.mark.slow  # 25 s: two trainings compile the scan loop (CI runs the slow tests too)
def test_training_on_the_moment_set_equals_training_on_the_samples():
    """Full-batch GD of a 4-layer BN network, 3 seeds x 2 rates, every step measured, curvature
    and snapshots on: the traces of a run on the moment set are those on the 60 samples (the
    losses to 1e-9, the measurements to 1e-7, lambda_max to the power iteration's 1e-6), and
    its activation snapshots are of the 60 samples (the same histogram counts)."""
    config = dln(4, "batch")
    train = TrainConfig(seeds=(0, 1, 2), learning_rates=(0.02, 0.005), batch_size=60,
                        epochs=6, momentum=0.0, eval_every=3, steps_per_chunk=3,
                        snapshot_every=2, step_loop="scan", curvature_every=3,
                        curvature_probe_size=60, curvature_trace_samples=0,
                        curvature_rtol=1e-9, curvature_max_iters=2000)
    data = linear_regression(seed=5, num_train=60, num_test=20, dimension=5, dtype=np.float64)
    arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
    presets = [PRESETS["paper"]]
    on_samples = train_seeds(config, train, presets, *arrays)
    on_points = train_seeds(config, dataclasses.replace(train, moment_set=True), presets,
                            *arrays)
    for a, b in zip(on_samples, on_points, strict=True):
        assert b.train_config["moment_set"] and b.train_config["batch_size"] == 60
        np.testing.assert_allclose(b.train_loss, a.train_loss, rtol=1e-9)
        np.testing.assert_allclose(b.test_loss, a.test_loss, rtol=1e-9)
        for name in ("ics_l2", "probe_loss", "beta_smoothness", "grad_diff"):
            want = a.measurements["paper"][name]
            np.testing.assert_allclose(b.measurements["paper"][name], want, rtol=1e-7,
                                       atol=1e-10 * np.nanmax(np.abs(want)))
        np.testing.assert_allclose(b.curvature["lambda_max"], a.curvature["lambda_max"],
                                   rtol=1e-6)
        for layer, stats in a.activation_stats["layers"].items():
            np.testing.assert_array_equal(b.activation_stats["layers"][layer]["hist_counts"],
                                          stats["hist_counts"])
            # every value of the 60 samples x 5 features is counted (in a bin or outside)
            np.testing.assert_array_equal(
                stats["hist_counts"].sum(axis=-1) + stats["underflow"] + stats["overflow"], 300)
            np.testing.assert_allclose(b.activation_stats["layers"][layer]["mean"],
                                       stats["mean"], rtol=1e-8, atol=1e-12)
        jax.tree.map(lambda u, w: np.testing.assert_allclose(u, w, rtol=1e-9, atol=1e-13),
                     b.final_params, a.final_params)
    assert on_points[0].train_loss[-1] < on_points[0].train_loss[0]
