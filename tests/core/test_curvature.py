"""Curvature: power iteration against closed forms and dense Hessians, batch sharpness
against the dense quadratic form, and the curvature trace of a training run."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bnstudy.analysis import beyond
from bnstudy.core import (
    PRESETS,
    TINY_MODEL_CONFIG,
    TINY_TRAIN_CONFIG,
    MeasurementPlan,
    PureModel,
    train_seeds,
)
from bnstudy.core.config import ConfigError, TrainConfig
from bnstudy.core.curvature import (
    CURVATURE_FIELDS,
    batch_sharpness,
    hessian_vector_product,
    hutchinson_trace,
    power_iteration,
    probe_group_hvp,
    probe_set,
)
from bnstudy.core.programs import call
from bnstudy.core.step import Spec


def test_power_iteration_recovers_the_top_eigenvalue_of_a_known_quadratic():
    """A = Q diag(lambda) Q^T with lambda = 10, 7, 3, 1, ...: the loss 0.5 w^T A w has
    Hessian A, and power iteration on its HVPs finds 10 to 1e-4 (relative)."""
    with jax.enable_x64(True):
        eigenvalues = jnp.array([10.0, 7.0, 3.0, 1.0, 0.5, 0.1, -0.2, 0.0])
        q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (8, 8), jnp.float64))
        matrix = q @ jnp.diag(eigenvalues) @ q.T
        params = {"a": jnp.ones(5, jnp.float64), "b": jnp.ones(3, jnp.float64)}
        flat, unravel = ravel_pytree(params)

        def loss(p):
            w = ravel_pytree(p)[0]
            return 0.5 * w @ matrix @ w

        result = power_iteration(lambda v: hessian_vector_product(loss, params, v),
                                 unravel(jnp.ones_like(flat)), rtol=1e-10, max_iters=500)
        assert result.converged
        np.testing.assert_allclose(result.eigenvalue, 10.0, rtol=1e-4)
        # the vector is the top eigenvector (up to sign)
        top = np.asarray(q[:, 0])
        found = np.asarray(ravel_pytree(result.vector)[0])
        np.testing.assert_allclose(abs(found @ top), 1.0, rtol=1e-4)


def test_power_iteration_stops_at_its_tolerance_and_says_when_it_did_not():
    matrix = np.diag([1.0, 0.99, 0.1])  # a tiny gap: slow convergence
    matvec = lambda v: jnp.asarray(matrix) @ v  # noqa: E731
    short = power_iteration(matvec, jnp.ones(3), rtol=1e-12, max_iters=5)
    assert short.iterations == 5 and not short.converged
    easy = power_iteration(lambda v: jnp.diag(jnp.array([5.0, 1.0])) @ v, jnp.ones(2),
                           rtol=1e-3, max_iters=100)
    assert easy.converged and easy.iterations < 20
    np.testing.assert_allclose(easy.eigenvalue, 5.0, rtol=1e-3)


def test_hutchinson_trace_is_exact_for_a_diagonal_hessian():
    """Rademacher v has v_i^2 = 1, so v^T D v = tr(D) for every draw: one sample is exact
    and the standard error of several is 0."""
    with jax.enable_x64(True):
        diagonal = {"a": jnp.array([3.0, -1.0, 0.5]), "b": jnp.array([[2.0, 7.0]])}
        matvec = lambda v: jax.tree.map(jnp.multiply, diagonal, v)  # noqa: E731
        one = hutchinson_trace(matvec, diagonal, jax.random.key(1), samples=1)
        assert one.estimate == pytest.approx(11.5, abs=1e-12) and np.isnan(one.stderr)
        many = hutchinson_trace(matvec, diagonal, jax.random.key(2), samples=5)
        assert many.estimate == pytest.approx(11.5, abs=1e-12) and many.stderr == 0.0
        with pytest.raises(ValueError, match="at least one sample"):
            hutchinson_trace(matvec, diagonal, jax.random.key(1), samples=0)


def test_hutchinson_trace_of_a_dense_matrix_within_its_closed_form_error():
    """A symmetric 12x12 A: Var[v^T A v] = 2 sum_{i != j} A_ij^2 in closed form. Over 4,000
    draws the estimate is within 4 standard errors of tr(A) (a wrong scaling or a
    non-Rademacher draw is tens of errors off), and its own standard error is that of the
    closed form to 10%."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        half = rng.normal(size=(12, 12))
        matrix = half + half.T + np.diag(np.arange(12.0))
        like = {"w": jnp.zeros(12, jnp.float64)}
        matvec = lambda v: {"w": jnp.asarray(matrix) @ v["w"]}  # noqa: E731
        samples = 4000
        result = hutchinson_trace(matvec, like, jax.random.key(7), samples=samples)
        off_diagonal = matrix - np.diag(np.diag(matrix))
        closed_se = np.sqrt(2.0 * np.sum(off_diagonal**2) / samples)
        assert abs(result.estimate - np.trace(matrix)) <= 4.0 * closed_se
        np.testing.assert_allclose(result.stderr, closed_se, rtol=0.1)
        assert result.samples == samples
        # a different key: a different estimate (the draws are random, not fixed vectors)
        other = hutchinson_trace(matvec, like, jax.random.key(8), samples=samples)
        assert other.estimate != result.estimate


def _tiny_float64(normalization: str):
    model_config = dataclasses.replace(TINY_MODEL_CONFIG, normalization=normalization,
                                       conv_features=(3, 4), pool_after=(0, 1),
                                       dense_features=(5,), image_size=4,
                                       param_dtype="float64")
    train_config = dataclasses.replace(TINY_TRAIN_CONFIG, batch_size=4,
                                       curvature_probe_size=12, curvature_group=2)
    return model_config, train_config


@pytest.mark.slow  # dense float64 Hessians compile for ~30 s (CI runs the slow tests too)
@pytest.mark.parametrize("normalization", ["batch", "none"])
def test_probe_set_power_iteration_matches_the_dense_hessian_on_a_tiny_network(normalization):
    """The probe loss (mean train-mode loss of 3 batches of 4) of a 2-conv network: the
    top eigenvalue by power iteration on grouped HVPs equals the largest eigenvalue of the
    dense jax.hessian to 1e-3 (float64), Hutchinson's trace on them is within 4 standard
    errors of its trace, and the probe loss equals the direct mean."""
    with jax.enable_x64(True):
        model_config, train_config = _tiny_float64(normalization)
        spec = Spec.of(model_config, train_config)
        model = PureModel(model_config)
        params, batch_stats = model.init(jax.random.key(3))
        x = jax.random.normal(jax.random.key(4), (16, 4, 4, 3), jnp.float64)
        y = jnp.arange(16) % 10
        x_groups, y_groups = probe_set(train_config, x, y)
        assert x_groups.shape == (3, 1, 4, 4, 4, 3)  # 3 batches: largest divisor <= 2 is 1
        flat, unravel = ravel_pytree(params)

        def probe_loss(w):
            p = unravel(w)
            return jnp.mean(jnp.stack([model.loss(p, batch_stats, xb, yb, train=True)[0]
                                       for xb, yb in zip(x_groups.reshape(3, 4, 4, 4, 3),
                                                         y_groups.reshape(3, 4))]))

        dense = np.asarray(jax.jit(jax.hessian(probe_loss))(flat))
        np.testing.assert_allclose(dense, dense.T, atol=1e-10)
        spectrum = np.linalg.eigvalsh(dense)
        dominant = spectrum[np.argmax(np.abs(spectrum))]
        assert dominant > 0  # the dominant eigenvalue is the top one here

        def matvec(v):
            total = None
            for index in range(x_groups.shape[0]):
                _, product = call("probe_group_hvp", probe_group_hvp, spec, params,
                                  batch_stats, v, x_groups[index], y_groups[index])
                total = product if total is None else jax.tree.map(jnp.add, total, product)
            return jax.tree.map(lambda leaf: leaf / 3, total)

        result = power_iteration(matvec, unravel(jnp.ones_like(flat)), rtol=1e-9,
                                 max_iters=2000)
        np.testing.assert_allclose(result.eigenvalue, spectrum[-1], rtol=1e-3)
        # Hutchinson's trace on the same grouped HVPs: within 4 closed-form standard errors
        # (sqrt(2 sum_{i != j} H_ij^2 / n)) of the dense trace
        trace = hutchinson_trace(matvec, params, jax.random.key(5), samples=400)
        off_diagonal = dense - np.diag(np.diag(dense))
        closed_se = np.sqrt(2.0 * np.sum(off_diagonal**2) / 400)
        assert abs(trace.estimate - np.trace(dense)) <= 4.0 * closed_se, (trace, np.trace(dense))
        np.testing.assert_allclose(trace.stderr, closed_se, rtol=0.25)
        loss_sum = sum(call("probe_group_hvp", probe_group_hvp, spec, params, batch_stats,
                            params, x_groups[i], y_groups[i])[0] for i in range(3))
        np.testing.assert_allclose(loss_sum / 3, probe_loss(flat), rtol=1e-12)


@pytest.mark.slow  # dense float64 Hessians compile for ~30 s (CI runs the slow tests too)
@pytest.mark.parametrize("normalization", ["batch", "l1", "none"])
def test_batch_sharpness_equals_the_dense_quadratic_form(normalization):
    with jax.enable_x64(True):
        model_config, train_config = _tiny_float64(normalization)
        spec = Spec.of(model_config, train_config)
        model = PureModel(model_config)
        params, batch_stats = model.init(jax.random.key(8))
        x = jax.random.normal(jax.random.key(9), (4, 4, 4, 3), jnp.float64)
        y = jnp.array([0, 3, 3, 7])
        flat, unravel = ravel_pytree(params)

        def loss(w):
            return model.loss(unravel(w), batch_stats, x, y, train=True)[0]

        g = np.asarray(jax.jit(jax.grad(loss))(flat))
        hessian = np.asarray(jax.jit(jax.hessian(loss))(flat))
        expected = g @ hessian @ g / (g @ g)
        sharpness, value, grad_norm = call("batch_sharpness", batch_sharpness, spec, params,
                                           batch_stats, x, y)
        np.testing.assert_allclose(sharpness, expected, rtol=1e-9)
        np.testing.assert_allclose(value, loss(flat), rtol=1e-12)
        np.testing.assert_allclose(grad_norm, np.linalg.norm(g), rtol=1e-12)


def test_stability_thresholds_at_the_blog_optimizer():
    """lr 0.035, momentum 0.9: the blog's optimizer (the study's default), not the paper's."""
    thresholds = beyond.thresholds(0.035, 0.9)
    np.testing.assert_allclose(thresholds["2/eta"], 57.142857, rtol=1e-6)
    np.testing.assert_allclose(thresholds["2(1-beta)/eta"], 5.714286, rtol=1e-6)
    np.testing.assert_allclose(thresholds["2(1+beta)/eta"], 108.571429, rtol=1e-6)


def test_curvature_settings_are_validated():
    tiny = TINY_TRAIN_CONFIG.to_dict()  # every TrainConfig key has a value (none has a default)
    with pytest.raises(ConfigError, match="curvature_every .* multiple of steps_per_chunk"):
        TrainConfig.from_dict({**tiny, "steps_per_chunk": 10, "eval_every": 20,
                               "curvature_every": 15})
    with pytest.raises(ConfigError, match="curvature_probe_size .* multiple of batch_size"):
        TrainConfig.from_dict({**tiny, "batch_size": 100, "curvature_probe_size": 4096,
                               "steps_per_chunk": 10, "eval_every": 10, "curvature_every": 10})
    # with curvature off the probe set does not matter
    TrainConfig.from_dict({**tiny, "batch_size": 100, "curvature_probe_size": 4096})
    with pytest.raises(ValueError, match="larger than the training set"):
        probe_set(dataclasses.replace(TINY_TRAIN_CONFIG, curvature_probe_size=64),
                  jnp.zeros((40, 8, 8, 3)), jnp.zeros(40, jnp.int32))


def test_the_plan_says_which_chunks_the_curvature_is_measured_before():
    """Curvature every 8 steps with chunks of 4 over 18 steps: before the chunks that start
    at 0, 8 and 16 (the end of a chunk, so a resumed run measures the same steps)."""
    config = dataclasses.replace(TINY_TRAIN_CONFIG, curvature_every=8, curvature_probe_size=32)
    assert config.steps_per_chunk == 4
    plan = MeasurementPlan.build(TINY_MODEL_CONFIG, config, [], 18)
    assert plan.chunks() == [(0, 4, True), (4, 8, False), (8, 12, True), (12, 16, False),
                             (16, 18, True)]
    assert plan.chunks(8) == plan.chunks()[2:]
    np.testing.assert_array_equal(plan.curvature_steps(), [0, 8, 16])
    off = MeasurementPlan.build(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, [], 18)
    assert [c.curvature for c in off.chunks()] == [False] * 5
    assert off.curvature_steps().size == 0


@pytest.mark.slow  # a tiny training with curvature, twice
def test_training_records_curvature_every_k_steps_and_seed_k_equals_its_single_run():
    """Curvature at steps 0, 4, 8, 12 of a 2-seed run: finite, converged values and a
    Hutchinson trace; seed 2's record equals that of a single-seed run with seed 2 (rtol
    1e-5: its power-iteration start and trace vectors come from its own key)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 10, 64).astype(np.int32)
    config = dataclasses.replace(TINY_TRAIN_CONFIG, seeds=(1, 2), curvature_every=4,
                                 curvature_probe_size=32, curvature_trace_samples=3)
    both = train_seeds(TINY_MODEL_CONFIG, config, [PRESETS["paper"]], x, y, x[:16], y[:16])
    alone = train_seeds(TINY_MODEL_CONFIG, dataclasses.replace(config, seeds=(2,)),
                        [PRESETS["paper"]], x, y, x[:16], y[:16])[0]
    curvature = both[1].curvature
    np.testing.assert_array_equal(curvature["steps"], [0, 4, 8, 12])
    assert set(curvature) == {"steps", *CURVATURE_FIELDS}
    assert np.all(curvature["converged"] == 1.0)
    assert np.all(curvature["lambda_max"] > 0) and np.all(np.isfinite(curvature["batch_sharpness"]))
    # 3 Rademacher draws per measurement: a finite estimate and standard error
    assert np.all(np.isfinite(curvature["hessian_trace"])) and np.all(curvature["hessian_trace_se"] >= 0)
    for field in CURVATURE_FIELDS:
        np.testing.assert_allclose(curvature[field], alone.curvature[field], rtol=1e-5)
    # the probe loss at step 0 is the loss of the initial weights on the probe set: equal
    # for both seeds' models only if their weights are; they are not
    assert both[0].curvature["probe_loss"][0] != curvature["probe_loss"][0]
