"""Curvature of the training loss from Hessian-vector products (HVPs).

Two quantities, set against the stability thresholds of SGD with momentum by the analysis
(:func:`bnstudy.analysis.beyond.thresholds`, docs/measurements.md):

- ``lambda_max``: the top eigenvalue of the Hessian of the training loss on a fixed probe set,
  by power iteration on HVPs. The probe loss is the mean train-mode loss of the probe set's
  batches of ``batch_size`` (BatchNorm normalizes each batch by its own statistics, as in
  training), so it is the loss that SGD descends, averaged over a fixed set of batches.
- ``batch_sharpness``: ``g^T H_B g / ||g||^2`` on the step's own mini-batch B, with g its
  gradient (Andreyev & Beneventano, 2024): one HVP.
- ``hessian_trace`` (when ``curvature_trace_samples`` > 0): the trace of the same probe-set
  Hessian by Hutchinson's estimator, the mean of ``v^T H v`` over Rademacher vectors v, with
  its standard error ``hessian_trace_se``: one HVP per sample.

An HVP is forward-over-reverse, ``jax.jvp(jax.grad(loss), (W,), (v,))``; the power
iteration runs on the host, one compiled HVP program per group of probe batches, so it needs
no ``while`` loop inside a program (XLA:CPU runs convolutions in loops slowly) and stops at
a stated relative tolerance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu

from bnstudy.core.config import TrainConfig
from bnstudy.core.programs import call
from bnstudy.core.state import TrainState, run_slice
from bnstudy.core.step import Spec, batch_of, model_of

PROBE_SET_KEY = 0x5EED
"""The probe set is the first ``curvature_probe_size`` examples of
``permutation(key(PROBE_SET_KEY), N)``: the same examples for every seed and model."""

CURVATURE_FIELDS = ("lambda_max", "power_iterations", "converged", "probe_loss",
                    "batch_sharpness", "batch_loss", "batch_grad_norm", "hessian_trace",
                    "hessian_trace_se")
"""The values of one curvature measurement of one seed."""

TRACE_KEY_TAG = 1
"""Hutchinson's vectors at step t come from ``fold_in(fold_in(data_key, t), TRACE_KEY_TAG)``;
the power iteration starts from ``fold_in(data_key, t)``: independent draws."""


def hessian_vector_product(loss: Callable[[Any], jax.Array], params, vector):
    """H v for the Hessian H of ``loss`` at ``params`` (forward-over-reverse)."""
    return jax.jvp(jax.grad(loss), (params,), (vector,))[1]


@dataclasses.dataclass(frozen=True)
class PowerIteration:
    """Result of :func:`power_iteration`.

    Attributes:
        eigenvalue: the last Rayleigh quotient v^T A v (||v|| = 1).
        vector: the last unit vector v (a pytree like the start vector).
        iterations: matrix-vector products used.
        converged: whether two successive Rayleigh quotients agreed to ``rtol``.
    """

    eigenvalue: float
    vector: Any
    iterations: int
    converged: bool


def power_iteration(matvec: Callable[[Any], Any], start, *, rtol: float,
                    max_iters: int) -> PowerIteration:
    """The dominant eigenvalue of a symmetric linear map given as ``matvec`` on pytrees.

    Iterates ``v <- A v / ||A v||`` from ``start`` and stops when two successive Rayleigh
    quotients ``v^T A v`` differ by at most ``rtol`` times the latest, or after
    ``max_iters`` products. The dominant eigenvalue is the one of largest magnitude: for a
    Hessian during training that is the top (positive) one; a negative result is returned
    as it is. Convergence is geometric in |lambda_2 / lambda_1|.
    """
    vector = otu.tree_scale(1.0 / otu.tree_norm(start), start)
    previous = None
    eigenvalue = float("nan")
    for iteration in range(1, max_iters + 1):
        product = matvec(vector)
        eigenvalue = float(otu.tree_vdot(vector, product))
        norm = float(otu.tree_norm(product))
        if not (np.isfinite(eigenvalue) and np.isfinite(norm)) or norm == 0.0:
            return PowerIteration(eigenvalue, vector, iteration, norm == 0.0)
        vector = otu.tree_scale(1.0 / norm, product)
        if previous is not None and abs(eigenvalue - previous) <= rtol * abs(eigenvalue):
            return PowerIteration(eigenvalue, vector, iteration, True)
        previous = eigenvalue
    return PowerIteration(eigenvalue, vector, max_iters, False)


def top_eigenvalue(matvec: Callable[[Any], Any], start, *, rtol: float,
                   max_iters: int) -> PowerIteration:
    """The largest (not the largest in magnitude) eigenvalue of a symmetric linear map.

    :func:`power_iteration` finds the dominant eigenvalue. When that is negative (a saddle:
    the deep linear network's loss has them near its initialization), the top eigenvalue is
    that of the shifted map ``v -> A v + |lambda_dom| v``, whose spectrum lies in
    [0, lambda_max + |lambda_dom|], less the shift: a second power iteration from the same
    start. ``iterations`` counts both; ``converged`` is the second's (its ``rtol`` is
    relative to the shifted eigenvalue).
    """
    dominant = power_iteration(matvec, start, rtol=rtol, max_iters=max_iters)
    if not (np.isfinite(dominant.eigenvalue) and dominant.eigenvalue < 0):
        return dominant
    shift = -dominant.eigenvalue
    shifted = power_iteration(
        lambda v: jax.tree.map(lambda hv, vv: hv + shift * vv, matvec(v), v), start,
        rtol=rtol, max_iters=max_iters)
    return PowerIteration(shifted.eigenvalue - shift, shifted.vector,
                          dominant.iterations + shifted.iterations, shifted.converged)


@dataclasses.dataclass(frozen=True)
class HutchinsonTrace:
    """Result of :func:`hutchinson_trace`.

    Attributes:
        estimate: the mean of ``v^T A v`` over the samples.
        stderr: its standard error, ``std(ddof=1) / sqrt(samples)`` (NaN for one sample).
        samples: Rademacher vectors used.
    """

    estimate: float
    stderr: float
    samples: int


def hutchinson_trace(matvec: Callable[[Any], Any], like, key: jax.Array, *,
                     samples: int) -> HutchinsonTrace:
    """tr(A) of a symmetric linear map given as ``matvec`` on pytrees shaped like ``like``.

    Hutchinson's estimator: for v with independent Rademacher (+-1) entries, E[v^T A v] =
    tr(A) and Var[v^T A v] = 2 sum_{i != j} A_ij^2 (exact for a diagonal A). The mean over
    ``samples`` draws from ``key`` is returned with its standard error.
    """
    if samples < 1:
        raise ValueError(f"hutchinson_trace needs at least one sample, got {samples}")
    leaves, treedef = jax.tree.flatten(like)
    quadratic = []
    for sample_key in jax.random.split(key, samples):
        keys = jax.random.split(sample_key, len(leaves))
        vector = jax.tree.unflatten(treedef, [
            jax.random.rademacher(k, leaf.shape, leaf.dtype)
            for k, leaf in zip(keys, leaves, strict=True)])
        quadratic.append(float(otu.tree_vdot(vector, matvec(vector))))
    values = np.asarray(quadratic)
    stderr = float(values.std(ddof=1) / np.sqrt(samples)) if samples > 1 else float("nan")
    return HutchinsonTrace(float(values.mean()), stderr, samples)


def probe_group_hvp(spec: Spec, params, batch_stats, vector, x_group: jax.Array,
                    y_group: jax.Array):
    """(sum of the losses, sum of the HVPs) over a group of probe batches.

    x_group [G, B, H, W, C], y_group [G, B]: each batch's loss is train-mode (its own batch
    statistics; the running statistics are not changed).
    """
    model = model_of(spec.model_config)

    def group_loss(p):
        losses = jax.vmap(lambda x, y: model.loss(p, batch_stats, x, y, train=True)[0])(
            x_group, y_group)
        return losses.sum()

    (loss, _), (_, product) = jax.jvp(jax.value_and_grad(group_loss), (params,), (vector,))
    return loss, product


def batch_sharpness(spec: Spec, params, batch_stats, x: jax.Array, y: jax.Array):
    """(g^T H_B g / ||g||^2, loss, ||g||) of one train-mode batch at ``params``."""
    model = model_of(spec.model_config)

    def loss(p):
        return model.loss(p, batch_stats, x, y, train=True)[0]

    value, grads = jax.value_and_grad(loss)(params)
    curvature = otu.tree_vdot(grads, hessian_vector_product(loss, params, grads))
    norm_sq = otu.tree_vdot(grads, grads)
    return curvature / norm_sq, value, jnp.sqrt(norm_sq)


def probe_set(train_config: TrainConfig, x_train: jax.Array, y_train: jax.Array) -> tuple[jax.Array,
                                                                             jax.Array]:
    """The fixed probe set as groups of batches: x [n_groups, G, B, ...], y [n_groups, G, B].

    G is the largest divisor of the number of probe batches that is at most
    ``curvature_group``, so every batch is in exactly one group.
    """
    size, batch = train_config.curvature_probe_size, train_config.batch_size
    if size > x_train.shape[0]:
        raise ValueError(
            f"TrainConfig.curvature_probe_size ({size}) is larger than the training set "
            f"({x_train.shape[0]} examples); lower it to at most "
            f"{x_train.shape[0] // batch * batch}")
    order = jax.random.permutation(jax.random.key(PROBE_SET_KEY), x_train.shape[0])[:size]
    batches = size // batch
    group = max(g for g in range(1, min(train_config.curvature_group, batches) + 1)
                if batches % g == 0)
    rows = order.reshape(batches // group, group, batch)
    return x_train[rows], y_train[rows]


def probe_matvec(spec: Spec, state: TrainState, x_groups, y_groups):
    """v -> H v on the probe set; the probe loss (the same at every call) is appended to
    the returned list on each call."""
    batches = x_groups.shape[0] * x_groups.shape[1]
    losses = []

    def matvec(vector):
        total_loss, total = 0.0, None
        for index in range(x_groups.shape[0]):
            loss, product = call("probe_group_hvp", probe_group_hvp, spec, state.params,
                                 state.batch_stats, vector, x_groups[index], y_groups[index])
            total_loss = total_loss + loss
            total = product if total is None else otu.tree_add(total, product)
        losses.append(float(total_loss) / batches)
        return otu.tree_scale(1.0 / batches, total)

    return matvec, losses


def measure_curvature(spec: Spec, config: TrainConfig, states: TrainState,
                      data: dict[str, Any], probe, step: int,
                      diverged_at: np.ndarray) -> list[dict[str, float]]:
    """Curvature of every run at W_step (before step ``step``): a dict per run with
    :data:`CURVATURE_FIELDS`; NaN for a run that diverged before ``step``.

    ``config`` is the run's own TrainConfig (the spec holds no curvature settings);
    ``probe`` is :func:`probe_set`'s output; ``data`` holds the training arrays and the
    runs' epoch orders (the batch sharpness uses the batch that step ``step`` trains on).
    """
    x_groups, y_groups = probe
    results = []
    for index in range(states.step.shape[0]):
        if 0 <= diverged_at[index] < step:
            results.append(dict.fromkeys(CURVATURE_FIELDS, float("nan")))
            continue
        state = run_slice(states, index)
        matvec, losses = probe_matvec(spec, state, x_groups, y_groups)
        start_key = jax.random.fold_in(jax.random.wrap_key_data(state.data_key), step)
        start = _normal_like(start_key, state.params)
        top = top_eigenvalue(matvec, start, rtol=config.curvature_rtol,
                             max_iters=config.curvature_max_iters)
        trace = (hutchinson_trace(matvec, state.params, jax.random.fold_in(start_key, TRACE_KEY_TAG),
                                  samples=config.curvature_trace_samples)
                 if config.curvature_trace_samples else HutchinsonTrace(float("nan"), float("nan"), 0))
        x, y = batch_of(spec, data["x"], data["y"], data["orders"][index], jnp.int32(step))
        sharpness, loss, grad_norm = call("batch_sharpness", batch_sharpness, spec,
                                          state.params, state.batch_stats, x, y)
        results.append({"lambda_max": top.eigenvalue, "power_iterations": top.iterations,
                        "converged": float(top.converged), "probe_loss": losses[0],
                        "batch_sharpness": float(sharpness), "batch_loss": float(loss),
                        "batch_grad_norm": float(grad_norm), "hessian_trace": trace.estimate,
                        "hessian_trace_se": trace.stderr})
    return results


def _normal_like(key: jax.Array, tree):
    """A standard normal pytree shaped like ``tree`` (the power iteration's start)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, leaf.shape, leaf.dtype)
                                        for k, leaf in zip(keys, leaves, strict=True)])
