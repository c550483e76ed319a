"""The pure step: ``train_step(state, batch) -> (state, metrics)``, and the measurements
of a step composed from per-layer and per-point operations.

Every function here is pure and takes a :class:`Spec` (the hashable configuration) first.
The measurements of a step are written once, over an ``ops`` table of primitive operations
(:data:`OPS`): the scan executor calls them directly inside one traced program, the host
executor binds the same table to small compiled programs (:mod:`bnstudy.core.programs`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bnstudy.core.config import ModelConfig, ProgramConfig, TrainConfig
from bnstudy.core.measurements import (
    SCALE_KINDS,
    compare_gradients,
    distance_from_init,
    histogram_edges,
    layer_activation_statistics,
    layer_forward,
    layer_input_cotangent,
    layer_param_gradient,
    loss_cotangent,
    model_loss_and_grad,
    normalization_scale,
    probe_point,
    summarize_probes,
)
from bnstudy.core.models import PureModel
from bnstudy.core.normalization import WITHOUT_LAYER, normalization_divisor
from bnstudy.core.plan import Computation
from bnstudy.core.state import TrainState, learning_rate_of, make_optimizer


@dataclasses.dataclass(frozen=True)
class Spec:
    """What shapes the compiled programs, and so their cache key (with the input shapes):
    the model and the :class:`ProgramConfig` part of the training configuration. Runs that
    differ only in seed, learning rate, momentum, length or cadence share programs."""

    model_config: ModelConfig
    program: ProgramConfig

    @classmethod
    def of(cls, model_config: ModelConfig, train_config: TrainConfig) -> Spec:
        """The spec of a configuration (:attr:`TrainConfig.program`)."""
        return cls(model_config, train_config.program)


@functools.lru_cache(maxsize=64)
def model_of(config: ModelConfig) -> PureModel:
    """The pure model of a config (a graphdef only; cached by value)."""
    return PureModel(config)


def batch_of(spec: Spec, x_all: jax.Array, y_all: jax.Array, order: jax.Array,
             step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The batch of step t: rows of epoch t // steps_per_epoch's order [E, N']."""
    batch_size = spec.program.batch_size
    steps_per_epoch = order.shape[1] // batch_size
    epoch, position = step // steps_per_epoch, step % steps_per_epoch
    indices = jax.lax.dynamic_slice_in_dim(order[epoch], position * batch_size, batch_size)
    return x_all[indices], y_all[indices]


def update(spec: Spec, state: TrainState, x: jax.Array, y: jax.Array):
    """One SGD step on (x, y): (new state, train-mode loss at W_t, gradient g_t, forward).

    A step whose loss, gradient or updated state is not finite is not applied (see
    :func:`guard_divergence`); the step counter advances either way.
    """
    model = model_of(spec.model_config)
    (loss, forward), grads = jax.value_and_grad(
        lambda p: model.loss(p, state.batch_stats, x, y, train=True), has_aux=True)(state.params)
    # the learning rate and the momentum come from the state (make_optimizer)
    updates, opt_state = make_optimizer(spec.program.nesterov).update(
        grads, state.opt_state, state.params)
    stepped = state.replace(step=state.step + 1, params=optax.apply_updates(state.params,
                                                                            updates),
                            opt_state=opt_state, batch_stats=forward.batch_stats)
    return guard_divergence(state, stepped, loss, grads), loss, grads, forward


def all_finite(tree) -> jax.Array:
    """[] bool: every element of every floating leaf of ``tree`` is finite."""
    checks = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)
              if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


def guard_divergence(state: TrainState, stepped: TrainState, loss: jax.Array,
                     grads) -> TrainState:
    """``stepped`` if the step was finite and the state healthy, else the old weights.

    The first step t with a non-finite loss, gradient or updated (params, batch_stats,
    opt_state) sets ``diverged_at = t``; from then on params, batch_stats and opt_state stay
    those of W_t (the last finite state), so NaN never enters the state and one seed of a
    stacked (vmapped) run cannot disturb the others. A ``where`` on a true condition
    returns its first operand exactly: a healthy run is bit-for-bit unchanged.
    """
    healthy = state.diverged_at < 0
    finite = all_finite((loss, grads, stepped.params, stepped.batch_stats, stepped.opt_state))
    keep = healthy & finite
    kept = jax.tree.map(lambda new, old: jnp.where(keep, new, old),
                        (stepped.params, stepped.batch_stats, stepped.opt_state),
                        (state.params, state.batch_stats, state.opt_state))
    return stepped.replace(params=kept[0], batch_stats=kept[1], opt_state=kept[2],
                           diverged_at=jnp.where(healthy & ~finite, state.step,
                                                 state.diverged_at))


def step_metrics(spec: Spec, new_state: TrainState, loss: jax.Array, x: jax.Array,
                 y: jax.Array) -> dict[str, jax.Array]:
    """train_loss (at W_t) and the eval-mode accuracy at (W_{t+1}, S_{t+1}) on the batch
    (NaN for a model without classes, which skips the forward pass)."""
    model = model_of(spec.model_config)
    logits = (model.apply(new_state.params, new_state.batch_stats, x, train=False).logits
              if model.classifies else None)
    return {"train_loss": loss, "train_accuracy": model.accuracy(logits, y, loss.dtype)}


def train_step(spec: Spec, state: TrainState,
               batch: tuple[jax.Array, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
    """The pure training step: (state, (x, y)) -> (state', {train_loss, train_accuracy})."""
    x, y = batch
    new_state, loss, _, _ = update(spec, state, x, y)
    return new_state, step_metrics(spec, new_state, loss, x, y)


def snapshot(spec: Spec, params, batch_stats, initial_params, x: jax.Array) -> dict[str, Any]:
    """Activation statistics of the train-mode forward pass at W_t; every kernel's geometry
    against W_0 (:func:`distance_from_init`) and every normalization layer's scales on the
    batch (:func:`normalization_scales`), under ``init_distance``."""
    config, model = spec.program, model_of(spec.model_config)
    forward = model.apply(params, batch_stats, x, train=True)
    edges = histogram_edges(config.histogram_bins, config.histogram_range,
                            dtype=forward.logits.dtype)
    return {"activations": layer_activation_statistics(forward.pre_activations, edges,
                                                       model.layer_names),
            "init_distance": {
                **distance_from_init(params, initial_params, model.layer_names),
                **normalization_scales(model, params, batch_stats, forward.layer_inputs)}}


def normalization_scales(model: PureModel, params, batch_stats,
                         layer_inputs: Mapping[str, jax.Array]) -> dict[str, dict[str, jax.Array]]:
    """:func:`normalization_scale` of every layer with a normalization layer after its map,
    its map's output recomputed from the layer's input in the forward pass; NaN for a layer
    without one (the dense head, the DLN's last layer, ``none`` and ``noisy``).

    Returns:
        {"gamma" | "sigma" | "gamma_over_sigma": {layer: []}}.
    """
    kind, dtype = model.config.normalization, jnp.dtype(model.config.param_dtype)
    scales: dict[str, dict[str, jax.Array]] = {name: {} for name in SCALE_KINDS}
    for index, layer in enumerate(model.layer_names):
        if model.normalized(index) and kind not in WITHOUT_LAYER:
            z = model.layer_linear(params, batch_stats, index, layer_inputs[layer])
            divisor = normalization_divisor(kind, z, model.config.bn_epsilon)
            values = normalization_scale(params[layer]["bn"]["scale"], divisor)
        else:
            values = {name: jnp.full((), jnp.nan, dtype) for name in SCALE_KINDS}
        for name in SCALE_KINDS:
            scales[name][layer] = values[name]
    return scales


def evaluate(spec: Spec, params, batch_stats, x_batches: jax.Array, y_batches: jax.Array,
             mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eval-mode mean loss and accuracy over padded test batches (sums, then divide); the
    accuracy is NaN for a model without classes."""
    model = model_of(spec.model_config)

    def body(totals, batch):
        x, y, valid = batch
        logits = model.apply(params, batch_stats, x, train=False).logits
        losses = model.example_losses(logits, y)
        correct = (model.correct(logits, y) & valid if model.classifies
                   else jnp.zeros_like(valid))
        return (totals[0] + jnp.sum(jnp.where(valid, losses, 0.0)),
                totals[1] + jnp.sum(correct, dtype=jnp.int32)), None

    zero = jnp.zeros((), x_batches.dtype)
    (loss_sum, correct), _ = jax.lax.scan(body, (zero, jnp.int32(0)),
                                          (x_batches, y_batches, mask))
    count = jnp.sum(mask, dtype=jnp.int32)
    if not model.classifies:
        return loss_sum / count, jnp.full((), jnp.nan, loss_sum.dtype)
    return loss_sum / count, correct / count


# -- primitive operations of the measurements (each a pure function of arrays) ------------


def op_probe_point(spec: Spec, w_start, batch_stats, grads, x, y, s, learning_rate, *,
                   train: bool):
    """(L(W(s)), ||grad L(W(s)) - g||) at W(s) = W_start - s * lr * g (lr: the run's
    learning rate leaf)."""
    loss_and_grad = model_loss_and_grad(model_of(spec.model_config), batch_stats, x, y,
                                        train=train)
    return probe_point(loss_and_grad, w_start, grads, learning_rate, s)


def op_probe_summary(spec: Spec, losses, grad_diffs, grads, s_values, learning_rate):
    """The probe result of a computation from its points."""
    del spec
    return summarize_probes(jnp.stack(losses), jnp.stack(grad_diffs), grads, learning_rate,
                            s_values)._asdict()


def op_layer_forward(spec: Spec, params, batch_stats, x, *, index: int, train: bool):
    """(z, output) of one layer."""
    return layer_forward(model_of(spec.model_config), params, batch_stats, index, x,
                         train=train)


def op_layer_input_cotangent(spec: Spec, params, batch_stats, x, z, cotangent, *,
                             index: int, train: bool):
    """The loss cotangent at a layer's input."""
    return layer_input_cotangent(model_of(spec.model_config), params, batch_stats, index, x,
                                 z, cotangent, train=train)


def op_layer_param_gradient(spec: Spec, params, batch_stats, x, z, cotangent, *, index: int,
                            train: bool):
    """A layer's parameter gradient from its input, linear output and output cotangent."""
    return layer_param_gradient(model_of(spec.model_config), params, batch_stats, index, x,
                                z, cotangent, train=train)


def op_loss_cotangent(spec: Spec, logits, y):
    """d(loss)/d(outputs) of the model's loss."""
    return loss_cotangent(model_of(spec.model_config), logits, y)


def op_ics_compare(spec: Spec, grads, grads_prime):
    """||G_i - G'_i|| and cos(G_i, G'_i) per leaf and per layer."""
    return compare_gradients(grads, grads_prime,
                             model_of(spec.model_config).layer_names)._asdict()


OPS: dict[str, Callable] = {
    "probe_point": op_probe_point, "probe_summary": op_probe_summary,
    "layer_forward": op_layer_forward, "layer_input_cotangent": op_layer_input_cotangent,
    "layer_param_gradient": op_layer_param_gradient, "loss_cotangent": op_loss_cotangent,
    "ics_compare": op_ics_compare, "snapshot": snapshot,
}
"""The primitive operations, by name; an executor binds each to a callable (the snapshot is
one program of its own: a forward pass and the statistics of every layer)."""

Ops = Mapping[str, Callable]


def gradient_ics_by_layers(ops: Ops, spec: Spec, params_t, params_t1, batch_stats, grads,
                           x, y, *, train: bool) -> dict[str, Any]:
    """Gradient ICS of every layer, chained from one-layer operations.

    A forward pass at W_{t+1} gives every layer's input; G'_i is then the forward pass of
    layers i.. at W_t from that input and the backward pass down to layer i only.
    """
    model = model_of(spec.model_config)
    layers = model.layer_names
    # Train mode where it changes a layer: its BN statistics or noise (`noisy` included).
    modes = [train and model.normalized(i) for i in range(len(layers))]
    last = len(layers) - 1
    layer_inputs, h = [x], x
    for index in range(last):
        h = ops["layer_forward"](params_t1, batch_stats, h, index=index, train=modes[index])[1]
        layer_inputs.append(h)
    grads_prime = {}
    for i, name in enumerate(layers):
        inputs, outputs, h = [], [], layer_inputs[i]
        for index in range(i, last + 1):
            inputs.append(h)
            z, h = ops["layer_forward"](params_t, batch_stats, h, index=index,
                                        train=modes[index])
            outputs.append(z)
        cotangent = ops["loss_cotangent"](h, y)
        for index in range(last, i, -1):
            cotangent = ops["layer_input_cotangent"](
                params_t, batch_stats, inputs[index - i], outputs[index - i], cotangent,
                index=index, train=modes[index])
        grads_prime[name] = ops["layer_param_gradient"](
            params_t, batch_stats, inputs[0], outputs[0], cotangent, index=i, train=modes[i])
    return ops["ics_compare"](grads, grads_prime)


def gradient_ics_vectorized(spec: Spec, params_t, params_t1, batch_stats, grads, x, y, *,
                            train: bool) -> dict[str, Any]:
    """Gradient ICS of every layer as one vmapped computation, for models whose layers are
    small dense maps (the DLN; :attr:`PureModel.vectorizes_measurements`).

    Lane i of the vmap is the whole network at (W_{t+1} below layer i, W_t from layer i on):
    its gradient with respect to layer i is G'_i, the definition itself. It does about twice
    the arithmetic of :func:`gradient_ics_by_layers` (every lane runs every layer) in one
    program a fraction of its size, which XLA compiles and runs far faster for layers of
    10 x 10. Train mode where it changes a layer, as there: BN's batch statistics and noise;
    in train mode the first layer's G' is the step's G (the definition: its ICS is 0).
    """
    model = model_of(spec.model_config)
    layers = model.layer_names
    count = len(layers)
    # [L, ...] per leaf: lane i holds W_{t+1} for the layers below i, W_t from i on
    mixed = {name: jax.tree.map(
        lambda new, old, j=j: jnp.where((jnp.arange(count) > j).reshape(
            (count,) + (1,) * old.ndim), new[None], old[None]),
        params_t1[name], params_t[name]) for j, name in enumerate(layers)}

    def lane(params, index):
        grads_prime = jax.grad(lambda p: model.loss(p, batch_stats, x, y, train=train)[0])(
            params)
        # zero but layer ``index``'s own gradient; the lanes are summed below
        return {name: jax.tree.map(lambda leaf, j=j: jnp.where(index == j, leaf, 0.0),
                                   grads_prime[name]) for j, name in enumerate(layers)}

    per_lane = jax.vmap(lane)(mixed, jnp.arange(count))
    grads_prime = jax.tree.map(lambda leaf: jnp.sum(leaf, axis=0), per_lane)
    if train:
        # In train mode nothing precedes the first layer: G'_0 is G_0 by definition (lane 0
        # is the step's own computation at W_t), so its ICS is exactly 0, not the rounding
        # difference of two programs.
        grads_prime = {**grads_prime, layers[0]: grads[layers[0]]}
    return compare_gradients(grads, grads_prime, layers)._asdict()


def vectorized_points(spec: Spec, probes, points_of, ics: int) -> dict[str, Callable]:
    """A dispatch (:data:`bnstudy.core.executor.Dispatch`) that evaluates all the points of
    a probe computation as one vmap over its step sizes s (for
    :attr:`PureModel.vectorizes_measurements`)."""
    del ics

    def evaluate(computation):
        points = points_of(computation)
        (w_start, batch_stats, grads, x, y, _, learning_rate), kwargs = points[0]
        s_values = jnp.stack([args[5] for args, _ in points])
        losses, diffs = jax.vmap(lambda s: op_probe_point(
            spec, w_start, batch_stats, grads, x, y, s, learning_rate, **kwargs))(s_values)
        return [(losses[i], diffs[i]) for i in range(len(points))]

    return {c.name: functools.partial(evaluate, c) for c in probes}


def probe_points(computation: Computation, state: TrainState, new_state: TrainState,
                 grads, x, y, dtype) -> list[tuple]:
    """The arguments of each probe point of a computation: [(args, kwargs)]."""
    origin = state if computation.probe_start == "pre_step" else new_state
    return [((origin.params, origin.batch_stats, grads, x, y, jnp.asarray(s, dtype),
              learning_rate_of(state)), {"train": computation.train})
            for s in computation.probe_s]


def probe_computation(ops: Ops, computation: Computation, points: list, grads,
                      learning_rate, dtype) -> dict[str, Any]:
    """Summary of a probe computation from its evaluated points [(loss, grad_diff)]."""
    return ops["probe_summary"](tuple(p[0] for p in points), tuple(p[1] for p in points),
                                grads, np.asarray(computation.probe_s, dtype), learning_rate)


@functools.lru_cache(maxsize=256)
def computation_shapes(spec: Spec, computation: Computation) -> dict[str, tuple]:
    """Output shapes of a computation (for NaN placeholders where it is not due)."""
    if computation.kind == "probe":
        points = (len(computation.probe_s),)
        return {"loss": points, "grad_diff": points, "step_norm": points,
                "beta_smoothness": ()}
    model = model_of(spec.model_config)
    leaves = len(jax.tree.leaves(jax.eval_shape(model.init, jax.random.key(0))[0]))
    layers = (len(model.layer_names),)
    return {"l2_leaf": (leaves,), "cosine_leaf": (leaves,), "l2_layer": layers,
            "cosine_layer": layers}
