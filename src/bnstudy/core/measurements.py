"""The per-step measurements as pure JAX functions (definitions in docs/measurements.md).

Nothing here knows about training loops: each function maps arrays (or a loss function)
to arrays, so the compiled trainer and the tests call the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bnstudy.core.models import BatchStats, Params, PureModel, cross_entropy, leaf_paths

QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99)
"""Quantiles recorded for every activation snapshot."""


def global_norm(tree: Any) -> jax.Array:
    """L2 norm over all leaves of a pytree."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


# --------------------------------------------------------------------------------------------
# 1. Gradient ICS (Santurkar et al. 2018, Def. 2.1)
# --------------------------------------------------------------------------------------------


# G'_i, layer i's gradient at (W_{t+1} below i, W_t from i on), is built one layer at a time
# by bnstudy.core.step.gradient_ics_by_layers: programs of one layer each compile once and are
# chained on the host (XLA:CPU compiles thirteen whole suffixes far slower). A layer is split
# into its linear map z = A(x) and the rest r(z) (normalization, ReLU, pool); the forward pass
# keeps (x, z) of every layer, so the backward passes recompute only the cheap elementwise rest.


def layer_forward(model: PureModel, params: Params, batch_stats: BatchStats, index: int,
                  x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """Layer ``index`` forward: (z = its linear output, the next layer's input or logits)."""
    z = model.layer_linear(params, batch_stats, index, x)
    return z, model.layer_rest(params, batch_stats, index, z, train=train)[1]


def loss_cotangent(model: PureModel, outputs: jax.Array, y: jax.Array) -> jax.Array:
    """d(loss)/d(outputs) [B, C]: of the mean cross-entropy (VGG) or the l2 loss (DLN)."""
    return jax.grad(model.output_loss)(outputs, y)


def layer_input_cotangent(model: PureModel, params: Params, batch_stats: BatchStats,
                          index: int, x: jax.Array, z: jax.Array, cotangent: jax.Array, *,
                          train: bool) -> jax.Array:
    """Backward through layer ``index``: the loss's cotangent at its input x, given the
    cotangent at its output. The linear map's forward value is unused (XLA removes it)."""
    _, rest_vjp = jax.vjp(
        lambda z: model.layer_rest(params, batch_stats, index, z, train=train)[1], z)
    (cotangent_z,) = rest_vjp(cotangent)
    _, linear_vjp = jax.vjp(lambda x: model.layer_linear(params, batch_stats, index, x), x)
    return linear_vjp(cotangent_z)[0]


def layer_param_gradient(model: PureModel, params: Params, batch_stats: BatchStats,
                         index: int, x: jax.Array, z: jax.Array, cotangent: jax.Array, *,
                         train: bool) -> Params:
    """Gradient of the loss with respect to layer ``index``'s parameters, given its input x,
    its linear output z and the cotangent at its output."""
    name = model.layer_names[index]

    def rest(layer_params, z):
        return model.layer_rest({**params, name: layer_params}, batch_stats, index, z,
                                train=train)[1]

    def linear(layer_params):
        return model.layer_linear({**params, name: layer_params}, batch_stats, index, x)

    _, rest_vjp = jax.vjp(rest, params[name], z)
    grads_rest, cotangent_z = rest_vjp(cotangent)
    _, linear_vjp = jax.vjp(linear, params[name])
    return jax.tree.map(jnp.add, grads_rest, linear_vjp(cotangent_z)[0])


class GradientComparison(NamedTuple):
    """||G - G'|| and cos(G, G') per leaf and per layer."""

    l2_leaf: jax.Array  # [n_leaves], leaves in leaf_paths(params) order
    cosine_leaf: jax.Array  # [n_leaves]
    l2_layer: jax.Array  # [n_layers], layers in model order
    cosine_layer: jax.Array  # [n_layers]


def _safe_cosine(dot, norm_sq_a, norm_sq_b):
    denominator = jnp.sqrt(norm_sq_a * norm_sq_b)
    return jnp.where(denominator > 0, dot / jnp.where(denominator > 0, denominator, 1), jnp.nan)


def compare_gradients(grads: Params, grads_prime: Params,
                      layers: Sequence[str]) -> GradientComparison:
    """Per-leaf and per-layer L2 distance and cosine similarity of two gradient trees.

    A layer's vector is the concatenation of all its leaves. The distance is computed from
    the difference itself, never as ||G||^2 + ||G'||^2 - 2<G, G'> (which cancels).
    """
    names = leaf_paths(grads)
    flat_g = jax.tree.leaves(grads)
    flat_gp = jax.tree.leaves(grads_prime)
    diff_sq = jnp.stack([jnp.sum(jnp.square(a - b)) for a, b in zip(flat_g, flat_gp)])
    dot = jnp.stack([jnp.sum(a * b) for a, b in zip(flat_g, flat_gp)])
    norm_g = jnp.stack([jnp.sum(jnp.square(a)) for a in flat_g])
    norm_gp = jnp.stack([jnp.sum(jnp.square(b)) for b in flat_gp])
    leaf_layer = [name.split("/")[0] for name in names]
    # One-hot [n_layers, n_leaves] sums leaves into layers.
    membership = jnp.array([[float(owner == layer) for owner in leaf_layer] for layer in layers],
                           dtype=diff_sq.dtype)
    return GradientComparison(
        l2_leaf=jnp.sqrt(diff_sq),
        cosine_leaf=_safe_cosine(dot, norm_g, norm_gp),
        l2_layer=jnp.sqrt(membership @ diff_sq),
        cosine_layer=_safe_cosine(membership @ dot, membership @ norm_g, membership @ norm_gp),
    )


# --------------------------------------------------------------------------------------------
# 2-4. Loss landscape, gradient predictiveness, effective beta-smoothness
# --------------------------------------------------------------------------------------------


class ProbeResult(NamedTuple):
    """Measurements along W(s) = W_start - s * lr * g for the probe step sizes s [S]."""

    loss: jax.Array  # [S] L(W(s))
    grad_diff: jax.Array  # [S] ||grad L(W(s)) - g||
    step_norm: jax.Array  # [S] ||W(s) - W_start|| = |s| * lr * ||g||
    beta_smoothness: jax.Array  # [] max_s grad_diff / step_norm


def probe_point(loss_and_grad: Callable[[Any], tuple[jax.Array, Any]], w_start: Any,
                grads: Any, learning_rate: float, s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One probe point W(s) = W_start - s * lr * g: (L(W(s)), ||grad L(W(s)) - g||).

    ``s`` may be a traced scalar, so one compiled program serves every step size.
    """
    w = jax.tree.map(lambda w0, g: w0 - (s * learning_rate) * g, w_start, grads)
    loss, grad_w = loss_and_grad(w)
    return loss, global_norm(jax.tree.map(jnp.subtract, grad_w, grads))


def summarize_probes(loss: jax.Array, grad_diff: jax.Array, grads: Any, learning_rate: float,
                     s_values: jax.Array) -> ProbeResult:
    """:class:`ProbeResult` from the per-point losses and gradient changes [S]."""
    # |s| * (||g|| * lr): the order XLA gave the product when lr was a folded constant (it
    # moves a constant next to the other scalar), so a learning rate leaf rounds the same
    step_norm = jnp.abs(s_values) * (global_norm(grads) * learning_rate)
    return ProbeResult(loss, grad_diff, step_norm, jnp.max(grad_diff / step_norm))


def probe_gradient_direction(loss_and_grad: Callable[[Any], tuple[jax.Array, Any]],
                             w_start: Any, grads: Any, learning_rate: float,
                             s_values: jax.Array, *, vectorize: bool = True) -> ProbeResult:
    """Loss and gradient change at the probe points, all s at once (vmap over s).

    Args:
        loss_and_grad: W -> (L(W), grad L(W)), any pytree W.
        w_start: the probe origin W_start.
        grads: g, the step's gradient (the direction, and the reference gradient).
        learning_rate: eta.
        s_values: [S] step sizes in units of eta * g.
        vectorize: one vmapped pass over all s (best on GPUs) or one unrolled pass per s
            (XLA:CPU lowers a vmapped convolution over different kernels to a slow grouped
            convolution).
    """

    def at(s):
        return probe_point(loss_and_grad, w_start, grads, learning_rate, s)

    if vectorize:
        loss, grad_diff = jax.vmap(at)(s_values)
    else:
        points = [at(s_values[i]) for i in range(s_values.shape[0])]
        loss = jnp.stack([p[0] for p in points])
        grad_diff = jnp.stack([p[1] for p in points])
    return summarize_probes(loss, grad_diff, grads, learning_rate, s_values)


def model_loss_and_grad(model: PureModel, batch_stats: BatchStats, x: jax.Array, y: jax.Array,
                        *, train: bool) -> Callable[[Params], tuple[jax.Array, Params]]:
    """W -> (L(W), grad L(W)) of the network on one batch; ``train``: BN with batch
    statistics (running statistics untouched), else with ``batch_stats``."""

    def loss_and_grad(params):
        return jax.value_and_grad(
            lambda p: model.loss(p, batch_stats, x, y, train=train)[0])(params)

    return loss_and_grad


# --------------------------------------------------------------------------------------------
# 5. Activation statistics, 6. distance from initialization
# --------------------------------------------------------------------------------------------


def histogram_edges(bins: int, value_range: tuple[float, float], dtype=jnp.float32) -> jax.Array:
    """Fixed histogram edges [bins + 1], linspace(low, high, bins + 1)."""
    return jnp.linspace(value_range[0], value_range[1], bins + 1, dtype=dtype)


def activation_statistics(activations: jax.Array, edges: jax.Array) -> dict[str, jax.Array]:
    """Summary of one layer's activations [B, ..., C] (channels last); never the raw tensor.

    Quantiles use linear interpolation (numpy's default). Histogram bins are [e_k, e_k+1),
    the last one closed (numpy's convention); values below e_0 count as underflow, above
    e_bins as overflow.

    Returns:
        mean, std, min, max, frac_positive: []; quantiles [7] at QUANTILE_LEVELS;
        hist_counts [bins] int32; underflow, overflow: [] int32;
        channel_mean, channel_var: [C] over all other axes (biased variance).
    """
    flat = activations.reshape(-1)
    ordered = jnp.sort(flat)
    n = flat.shape[0]
    position = jnp.asarray(QUANTILE_LEVELS, dtype=ordered.dtype) * (n - 1)
    below = jnp.floor(position).astype(jnp.int32)
    above = jnp.minimum(below + 1, n - 1)
    fraction = position - below
    quantiles = ordered[below] + (ordered[above] - ordered[below]) * fraction
    smaller = jnp.searchsorted(ordered, edges, side="left").astype(jnp.int32)  # #(x < e)
    at_most_top = jnp.searchsorted(ordered, edges[-1], side="right").astype(jnp.int32)
    counts = jnp.diff(smaller)
    counts = counts.at[-1].add(at_most_top - smaller[-1])
    channels = activations.reshape(-1, activations.shape[-1])
    return {
        "mean": jnp.mean(flat),
        "std": jnp.std(flat),
        "min": ordered[0],
        "max": ordered[-1],
        "quantiles": quantiles,
        "frac_positive": jnp.mean((flat > 0).astype(flat.dtype)),
        "hist_counts": counts,
        "underflow": smaller[0],
        "overflow": jnp.int32(n) - at_most_top,
        "channel_mean": jnp.mean(channels, axis=0),
        "channel_var": jnp.var(channels, axis=0),
    }


def distance_from_init(params: Params, initial_params: Params,
                       layers: Sequence[str]) -> dict[str, dict[str, jax.Array]]:
    """The geometry of every layer's kernel W against its initialization W_0.

    ``abs`` = ||W - W_0||_F, ``rel`` = ||W - W_0||_F / ||W_0||_F, ``norm`` = ||W||_F and
    ``angle`` = arccos(<W, W_0> / (||W||_F ||W_0||_F)) in radians, computed as
    ``2 arcsin(||u - u_0|| / 2)`` of the unit kernels u = W / ||W||, which is 0 at W = W_0
    up to the rounding of the two norms and stays accurate for small angles (where arccos of a
    rounded cosine is not).
    The three tell a larger distance apart: with ``||W - W_0||^2 = ||W||^2 +
    ||W_0||^2 - 2 ||W|| ||W_0|| cos(angle)``, a kernel can move away by growing in scale at
    a fixed direction, which a BN layer's loss cannot see (Santurkar et al., Thm 4.1).

    Returns:
        {"abs" | "rel" | "norm" | "angle": {layer: []}}.
    """
    geometry = {kind: {} for kind in ("abs", "rel", "norm", "angle")}
    for layer in layers:
        kernel = _kernel(params, layer)
        kernel0 = _kernel(initial_params, layer)
        initial_norm = jnp.sqrt(jnp.sum(jnp.square(kernel0)))
        geometry["abs"][layer] = jnp.sqrt(jnp.sum(jnp.square(kernel - kernel0)))
        geometry["rel"][layer] = geometry["abs"][layer] / initial_norm
        geometry["norm"][layer] = jnp.sqrt(jnp.sum(jnp.square(kernel)))
        chord = jnp.sqrt(jnp.sum(jnp.square(kernel / geometry["norm"][layer]
                                            - kernel0 / initial_norm)))
        geometry["angle"][layer] = 2.0 * jnp.arcsin(jnp.minimum(chord / 2.0, 1.0))
    return geometry


SCALE_KINDS = ("gamma", "sigma", "gamma_over_sigma")
"""The scales of a normalization layer :func:`normalization_scale` summarizes."""


def normalization_scale(scale: jax.Array, divisor: jax.Array) -> dict[str, jax.Array]:
    """A normalization layer's scales, each the mean over its channels: ``gamma`` = |gamma_c|
    (its learned scale), ``sigma`` = sigma_c (what the training mode divides the map's output
    by: :func:`bnstudy.core.normalization.normalization_divisor`) and ``gamma_over_sigma`` =
    |gamma_c| / sigma_c, the factor the layer applies to the centred map output.

    Returns:
        {"gamma" | "sigma" | "gamma_over_sigma": []}.
    """
    magnitude = jnp.abs(scale)
    return {"gamma": jnp.mean(magnitude), "sigma": jnp.mean(divisor),
            "gamma_over_sigma": jnp.mean(magnitude / divisor)}


def _kernel(params: Params, layer: str) -> jax.Array:
    block = params[layer]
    for wrapped in ("conv", "dense"):  # a block's map (VGG convs, DLN layers)
        if wrapped in block:
            return block[wrapped]["kernel"]
    return block["kernel"]


def layer_activation_statistics(pre_activations: dict[str, jax.Array], edges: jax.Array,
                                layers: Sequence[str]) -> dict[str, dict[str, jax.Array]]:
    """:func:`activation_statistics` for every layer."""
    return {layer: activation_statistics(pre_activations[layer], edges) for layer in layers}


__all__ = [
    "QUANTILE_LEVELS", "GradientComparison", "ProbeResult", "activation_statistics",
    "SCALE_KINDS", "compare_gradients", "cross_entropy", "distance_from_init", "global_norm",
    "histogram_edges", "layer_activation_statistics", "layer_forward", "layer_input_cotangent",
    "layer_param_gradient", "loss_cotangent", "model_loss_and_grad", "normalization_scale",
    "probe_gradient_direction",
    "probe_point", "summarize_probes",
]
