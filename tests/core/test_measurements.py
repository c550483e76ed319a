"""Closed-form checks of the measurement maths, independent of any network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnstudy.core import (
    QUANTILE_LEVELS,
    activation_statistics,
    compare_gradients,
    probe_gradient_direction,
)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _quadratic(seed=0):
    """L(w) = 1/2 (w - c)^T A (w - c) over a two-leaf pytree w = {a: [3], b: [2]}."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    eigenvalues = np.array([0.1, 0.5, 1.0, 3.0, 7.0])
    matrix = q @ np.diag(eigenvalues) @ q.T
    center = rng.normal(size=5)

    def flat(w):
        return jnp.concatenate([w["a"], w["b"]])

    def loss(w):
        d = flat(w) - center
        return 0.5 * d @ matrix @ d

    w0 = {"a": jnp.asarray(rng.normal(size=3)), "b": jnp.asarray(rng.normal(size=2))}
    return loss, matrix, center, eigenvalues, w0, flat


def test_probes_on_a_quadratic_match_the_closed_form():
    loss, matrix, center, eigenvalues, w0, flat = _quadratic()
    g = jax.grad(loss)(w0)
    lr, s = 0.1, jnp.arange(0.5, 4.2, 0.3)
    result = probe_gradient_direction(jax.value_and_grad(loss), w0, g, lr, s)
    d, gv = np.asarray(flat(w0)) - center, np.asarray(flat(g))
    np.testing.assert_allclose(gv, matrix @ d, rtol=1e-12)
    s = np.asarray(s)
    # L(w0 - s lr g) = 1/2 (d - s lr g)^T A (d - s lr g); grad changes by -s lr A g.
    expected_loss = [0.5 * (d - k * lr * gv) @ matrix @ (d - k * lr * gv) for k in s]
    ag = np.linalg.norm(matrix @ gv)
    np.testing.assert_allclose(result.loss, expected_loss, rtol=1e-12)
    np.testing.assert_allclose(result.grad_diff, s * lr * ag, rtol=1e-12)
    np.testing.assert_allclose(result.step_norm, s * lr * np.linalg.norm(gv), rtol=1e-12)
    # Effective beta-smoothness along g is ||A g|| / ||g||, between the extreme curvatures.
    beta = float(result.beta_smoothness)
    np.testing.assert_allclose(beta, ag / np.linalg.norm(gv), rtol=1e-12)
    assert eigenvalues.min() <= beta <= eigenvalues.max()


def test_probe_along_an_eigenvector_recovers_its_eigenvalue():
    _, matrix, _, eigenvalues, _, _ = _quadratic()
    vectors = np.linalg.eigh(matrix)[1]
    w0 = {"a": jnp.asarray(vectors[:3, -1]), "b": jnp.asarray(vectors[3:, -1])}

    def loss(w):  # minimum at 0: the gradient at an eigenvector is lambda * w
        flat = jnp.concatenate([w["a"], w["b"]])
        return 0.5 * flat @ matrix @ flat

    g = jax.grad(loss)(w0)
    result = probe_gradient_direction(jax.value_and_grad(loss), w0, g, 0.05,
                                      jnp.arange(0.5, 20, 2.0))
    np.testing.assert_allclose(result.beta_smoothness, eigenvalues[-1], rtol=1e-12)
    # Steps beyond 2 / (lr lambda) overshoot: the loss rises again along the ray.
    assert np.argmin(result.loss) not in (0, len(result.loss) - 1)


def test_compare_gradients_per_leaf_and_per_layer():
    g = {"l1": {"kernel": jnp.array([3.0, 0.0]), "bias": jnp.array([0.0])},
         "l2": {"kernel": jnp.array([1.0, 1.0])}}
    gp = {"l1": {"kernel": jnp.array([0.0, 4.0]), "bias": jnp.array([0.0])},
          "l2": {"kernel": jnp.array([2.0, 2.0])}}
    result = compare_gradients(g, gp, ["l1", "l2"])
    # leaves in flatten order: l1/bias, l1/kernel, l2/kernel
    np.testing.assert_allclose(result.l2_leaf, [0.0, 5.0, np.sqrt(2)])
    np.testing.assert_allclose(result.cosine_leaf[1:], [0.0, 1.0])
    assert np.isnan(result.cosine_leaf[0])  # a zero vector has no direction
    np.testing.assert_allclose(result.l2_layer, [5.0, np.sqrt(2)])
    np.testing.assert_allclose(result.cosine_layer, [0.0, 1.0])


def test_activation_statistics_against_numpy_with_values_on_edges():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=2.0, size=(6, 4, 4, 3))
    x[0, 0, 0] = [-3.0, 3.0, 0.0]  # both outer edges and an inner edge exactly
    x[0, 0, 1] = [-7.0, 9.0, 1.5]  # underflow, overflow, inner edge
    edges = jnp.linspace(-3.0, 3.0, 5)
    stats = jax.tree.map(np.asarray, activation_statistics(jnp.asarray(x), edges))
    flat = x.ravel()
    counts, _ = np.histogram(flat, bins=np.asarray(edges))
    np.testing.assert_array_equal(stats["hist_counts"], counts)
    assert stats["underflow"] == np.sum(flat < -3) and stats["overflow"] == np.sum(flat > 3)
    assert stats["hist_counts"].sum() + stats["underflow"] + stats["overflow"] == flat.size
    np.testing.assert_allclose(stats["quantiles"], np.quantile(flat, QUANTILE_LEVELS), rtol=1e-12)
    np.testing.assert_allclose(stats["channel_var"], x.reshape(-1, 3).var(0), rtol=1e-12)
    np.testing.assert_allclose([stats["mean"], stats["std"], stats["min"], stats["max"]],
                               [flat.mean(), flat.std(), flat.min(), flat.max()], rtol=1e-12)
    np.testing.assert_allclose(stats["frac_positive"], np.mean(flat > 0), rtol=1e-12)
