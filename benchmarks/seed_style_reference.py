"""A faithful seed-style measured training loop, the way the blog's notebook did it.

Eager Python around stateful Flax NNX modules and ``nnx.Optimizer``, written against today's
API (``nnx.Optimizer(model, tx, wrt=nnx.Param)``, ``optimizer.update(model, grads)``), and
following the notebook's code cell by cell (../shared/seed/how-batchnorm-works-part-2.txt):

* the blog's own network: ``VGGBlock`` (``nnx.Conv`` + ``nnx.BatchNorm(momentum=0.9)``, the
  BN replaced by the identity for the baseline) and ``VGGNet`` with ``nnx.max_pool``, put in
  train or eval mode with ``model.train()`` / ``model.eval()``;
* before every step a deep copy of the optimizer (and, as today's optimizer no longer holds
  the model, of the model);
* ``step_fn``: one ``nnx.jit`` call that computes the loss and gradients and updates;
* ``accuracy``: the batch accuracy in eval mode after the step, its own jitted call;
* ``santurkar_ics_step``: the optimizer copy takes the real update; then, for each layer,
  a deep copy of the pre-step model whose lower layers are overwritten with W_{t+1} and one
  separately jitted call computing the *full* gradient, of which that layer's part is kept;
* ``loss_landscape_step`` and ``grad_landscape_step``: two separate sweeps over the probe
  points, each point a fresh deep copy and one jitted call (the loss; the gradient);
* norms and cosines in numpy on the host (a device-to-host round trip per number).

Where the notebook is silent (the deepkit library is not public) the loop takes the lean
choice: the optimizer copy is updated once per ICS call, not once per layer.

It runs in float32, as the notebook did; ``ModelConfig.param_dtype="float64"`` (under
``jax.enable_x64``) is only for the benchmark's agreement check, which compares the two
loops without float32 rounding.

It computes the same measurements as :mod:`bnstudy.core` (docs/measurements.md) but shares
with it only the initial weights (copied in, so that both start identical) and the data
order, so the benchmark can check that both agree and time the difference. Not part of the
library: a yardstick.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from xla_cost import compiled_flops  # benchmarks/, beside this file

from bnstudy.core import (
    VGG,
    MeasurementConfig,
    ModelConfig,
    TrainConfig,
    epoch_permutations,
    layer_names,
)

kernel_init = nnx.initializers.glorot_normal()


def identity(x):
    """The baseline's stand-in for BatchNorm (the notebook sets ``vgg.bn = lambda x: x``)."""
    return x


class VGGBlock(nnx.Module):
    """The notebook's block: 3x3 SAME conv, BatchNorm, ReLU; returns (out, pre-activation)."""

    def __init__(self, in_features: int, out_features: int, config: ModelConfig,
                 rngs: nnx.Rngs):
        dtype = jnp.dtype(config.param_dtype)
        self.conv = nnx.Conv(in_features=in_features, out_features=out_features,
                             kernel_size=(3, 3), kernel_init=kernel_init, padding="SAME",
                             param_dtype=dtype, rngs=rngs)
        bn = identity
        if config.normalization == "batch":
            bn = nnx.BatchNorm(num_features=out_features, momentum=config.bn_momentum,
                               epsilon=config.bn_epsilon, param_dtype=dtype, rngs=rngs)
            # Flax keeps the running statistics in float32 whatever param_dtype says.
            bn.mean = nnx.BatchStat(jnp.zeros((out_features,), dtype))
            bn.var = nnx.BatchStat(jnp.ones((out_features,), dtype))
        self.bn = bn

    def __call__(self, x):
        x = self.conv(x)
        x = self.bn(x)
        conv_activation = x
        x = nnx.relu(x)
        return x, conv_activation


class VGGNet(nnx.Module):
    """The notebook's ``VGGNet``, with the widths, pools and head of a ModelConfig."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        widths = [config.in_channels, *config.conv_widths]
        self.convs = nnx.List([VGGBlock(widths[i], widths[i + 1], config, rngs)
                               for i in range(len(config.conv_widths))])
        self.max_pool_after = tuple(config.pool_after)
        self.dense_names = tuple(layer_names(config)[len(config.conv_widths):])
        features = [config.flat_features, *config.dense_widths, config.num_classes]
        for index, name in enumerate(self.dense_names):
            setattr(self, name, nnx.Linear(in_features=features[index],
                                           out_features=features[index + 1],
                                           kernel_init=kernel_init,
                                           param_dtype=jnp.dtype(config.param_dtype),
                                           rngs=rngs))

    def __call__(self, x):
        activations = {}
        for conv_idx in range(len(self.convs)):
            x, act = self.convs[conv_idx](x)
            activations[f"conv_{conv_idx}"] = act
            if conv_idx in self.max_pool_after:
                x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)  # the notebook squeezes its [B, 1, 1, C]
        for name in self.dense_names:
            x = getattr(self, name)(x)
            activations[name] = x
            if name != self.dense_names[-1]:
                x = nnx.relu(x)
        return x, activations


def loss_fn(model, batch, targets):
    logits, activations = model(batch)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    return loss, activations


@nnx.jit
def step_fn(model, optimizer, batch, labels):
    (loss, activations), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch, labels)
    optimizer.update(model, grads)
    return loss, activations, grads


@nnx.jit
def accuracy(model, batch, labels):
    logits, _ = model(batch)
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


@nnx.jit
def landscape_loss(model, batch, labels):
    return loss_fn(model, batch, labels)[0]


@nnx.jit
def landscape_grad(model, batch, labels):
    return nnx.grad(lambda m: loss_fn(m, batch, labels)[0])(model)


_LAYER_GRADIENT_FNS: dict[str, Callable] = {}


def layer_gradient_fn(layer: str) -> Callable:
    """One separately jitted function per layer: the full gradient, that layer's part kept."""
    if layer not in _LAYER_GRADIENT_FNS:
        @nnx.jit
        def layer_gradient(model, batch, labels):
            grads = nnx.grad(lambda m: loss_fn(m, batch, labels)[0])(model)
            return layer_part(nnx.to_pure_dict(grads), layer)

        _LAYER_GRADIENT_FNS[layer] = layer_gradient
    return _LAYER_GRADIENT_FNS[layer]


def _location(pure: dict, layer: str) -> tuple[dict, int | str]:
    """(container, key) of layer ``layer`` (core naming: conv_i, fc1, ..., out) in a VGGNet
    pure dict: the convs sit in ``pure["convs"][i]``, the dense layers at the top."""
    if layer.startswith("conv_"):
        return pure["convs"], int(layer.removeprefix("conv_"))
    return pure, layer


def layer_part(pure: dict, layer: str) -> dict:
    """Layer ``layer``'s parameters in a VGGNet pure dict."""
    container, key = _location(pure, layer)
    return container[key]


def set_layer_part(pure: dict, layer: str, value: dict) -> None:
    """Replace layer ``layer``'s parameters in a VGGNet pure dict, in place."""
    container, key = _location(pure, layer)
    container[key] = value


def _params(module) -> dict:
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def _set_params(module, pure: dict) -> None:
    state = nnx.state(module, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(module, state)


def _vector(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(tree)])


def _set_mode(module, train: bool):
    if train:
        module.train()
    else:
        module.eval()
    return module


def blog_params_from_core(core_params: dict, layers: Sequence[str]) -> dict:
    """Map the core VGG's pure params {conv_i: {conv, bn}, fc1, ...} onto VGGNet's layout."""
    pure: dict = {"convs": {}}
    for layer in layers:
        set_layer_part(pure, layer, core_params[layer])
    return pure


class SeedStyleLoop:
    """Trains step by step and measures every preset on every step, seed style.

    Same initial weights (the core VGG's, from ``fold_in(key(seed), 0)``, copied in) and
    batch order (``fold_in(key(seed), 1)`` permutations) as :func:`bnstudy.core.train`.
    """

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig,
                 x_train: np.ndarray, y_train: np.ndarray):
        if model_config.param_dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError("a float64 seed-style loop needs jax.enable_x64 (the benchmark's "
                             "agreement check); the timed loop runs in float32")
        key = jax.random.key(train_config.seed)
        self.layers = layer_names(model_config)
        self.model = VGGNet(model_config, rngs=nnx.Rngs(0))
        core = VGG(model_config, key=jax.random.fold_in(key, 0))
        _set_params(self.model, blog_params_from_core(_params(core), self.layers))
        self.optimizer = nnx.Optimizer(
            self.model, optax.sgd(learning_rate=train_config.learning_rate,
                                  momentum=train_config.momentum,
                                  nesterov=train_config.nesterov), wrt=nnx.Param)
        self.config = train_config
        self.x_train, self.y_train = x_train, y_train
        self.steps_per_epoch = train_config.steps_per_epoch(x_train.shape[0])
        total = train_config.total_steps(x_train.shape[0])
        epochs = -(-total // self.steps_per_epoch)
        self.permutations = np.asarray(epoch_permutations(jax.random.fold_in(key, 1), epochs,
                                                          x_train.shape[0]))
        self.step_index = 0
        # While counting FLOPs: XLA's count per distinct compiled call, and the step's sum.
        self._flop_cache: dict | None = None
        self._step_flops = 0.0

    def _batch(self, step: int):
        epoch, position = divmod(step, self.steps_per_epoch)
        size = self.config.batch_size
        indices = self.permutations[epoch, position * size:(position + 1) * size]
        return jnp.asarray(self.x_train[indices]), jnp.asarray(self.y_train[indices])

    def _call(self, fn: Callable, cache_key: tuple, *args):
        """Call a jitted function; while counting, add XLA's FLOP count of that call."""
        if self._flop_cache is not None:
            if cache_key not in self._flop_cache:
                self._flop_cache[cache_key] = compiled_flops(fn, *args)
            self._step_flops += self._flop_cache[cache_key]
        return fn(*args)

    def step(self, presets: Sequence[MeasurementConfig]) -> dict:
        """One training step with every preset measured. Returns {"train_loss",
        "train_accuracy", preset name: {ics_l2 [L], ics_cosine [L], probe_loss [S],
        grad_diff [S], beta_smoothness}} as numpy values."""
        x, y = self._batch(self.step_index)
        self.step_index += 1
        model_copy, optimizer_copy = copy.deepcopy((self.model, self.optimizer))  # W_t, S_t
        self.model.train()
        loss, _activations, grads = self._call(step_fn, ("step",), self.model, self.optimizer,
                                               x, y)
        record = {"train_loss": float(loss)}
        for preset in presets:
            record[preset.name] = {
                **self.santurkar_ics_step(preset, model_copy, optimizer_copy, grads, x, y),
                **self.landscape_steps(preset, model_copy, grads, x, y)}
        self.model.eval()
        record["train_accuracy"] = float(self._call(accuracy, ("accuracy",), self.model, x, y))
        return record

    def count_step_flops(self, presets: Sequence[MeasurementConfig]) -> tuple[float, dict]:
        """Run one step and return (XLA FLOPs summed over its jitted calls, its record)."""
        self._flop_cache, self._step_flops = {}, 0.0
        try:
            record = self.step(presets)
            return self._step_flops, record
        finally:
            self._flop_cache = None

    def santurkar_ics_step(self, preset, model_copy, optimizer_copy, grads, x, y) -> dict:
        train = preset.ics_mode == "train"
        model_next, optimizer_next = copy.deepcopy((model_copy, optimizer_copy))
        optimizer_next.update(model_next, grads)  # the real update: W_{t+1}
        new_params, g = _params(model_next), nnx.to_pure_dict(grads)
        l2, cosine = [], []
        for index, layer in enumerate(self.layers):
            mixed = _set_mode(copy.deepcopy(model_copy), train)
            mixed_params = _params(mixed)
            for lower in self.layers[:index]:
                set_layer_part(mixed_params, lower, layer_part(new_params, lower))
            _set_params(mixed, mixed_params)
            g_prime = self._call(layer_gradient_fn(layer), ("ics", layer, train), mixed, x, y)
            a, b = _vector(layer_part(g, layer)), _vector(g_prime)
            l2.append(np.linalg.norm(a - b))
            cosine.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        return {"ics_l2": np.array(l2), "ics_cosine": np.array(cosine)}

    def _probe_model(self, start, w_start, g, s, train):
        probe = _set_mode(copy.deepcopy(start), train)
        w_s = jax.tree.map(lambda w, gg: w - s * self.config.learning_rate * gg, w_start, g)
        _set_params(probe, w_s)
        return probe, w_s

    def landscape_steps(self, preset, model_copy, grads, x, y) -> dict:
        """The notebook's loss_landscape_step, then its grad_landscape_step."""
        start = model_copy if preset.probe_start == "pre_step" else self.model
        train = preset.probe_mode == "train"
        w_start, g = _params(start), nnx.to_pure_dict(grads)
        losses = []
        for s in preset.probe_s:
            probe, _ = self._probe_model(start, w_start, g, s, train)
            losses.append(float(self._call(landscape_loss, ("loss", train), probe, x, y)))
        g_vector, diffs, ratios = _vector(g), [], []
        for s in preset.probe_s:
            probe, w_s = self._probe_model(start, w_start, g, s, train)
            g_s = self._call(landscape_grad, ("grad", train), probe, x, y)
            diff = np.linalg.norm(_vector(nnx.to_pure_dict(g_s)) - g_vector)
            distance = np.linalg.norm(_vector(w_s) - _vector(w_start))
            diffs.append(diff)
            ratios.append(diff / distance)
        return {"probe_loss": np.array(losses), "grad_diff": np.array(diffs),
                "beta_smoothness": max(ratios)}
