"""A faithful seed-style measured training loop, the way the blog's notebook did it.

Eager Python around a stateful Flax NNX module and ``nnx.Optimizer`` (today's API:
``nnx.Optimizer(model, tx, wrt=nnx.Param)``, ``optimizer.update(model, grads)``):

* a deep copy of the model *and the optimizer* before every step;
* gradient ICS with one separately jitted call per layer (and mode), each computing the
  *full* gradient of a deep-copied model whose lower layers were overwritten with W_{t+1},
  and keeping only that layer's part;
* one jitted call per probe point s on a fresh deep copy of the start model;
* norms and cosines in numpy on the host (a device-to-host round trip per number).

It computes the same measurements as :mod:`bnstudy.core` (docs/measurements.md) and shares
with it only the module definition and the data order, so the benchmark can check that both
agree and time the difference. Not part of the library: a yardstick.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bnstudy.core import VGG, MeasurementConfig, ModelConfig, TrainConfig, epoch_permutations, layer_names


def _loss(module, x, y, train):
    logits, _, _ = module(x, train=train)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@nnx.jit
def _train_step(module, optimizer, x, y):
    loss, grads = nnx.value_and_grad(_loss)(module, x, y, True)
    optimizer.update(module, grads)
    return loss, grads


@nnx.jit(static_argnames="train")
def _probe_loss_and_grad(module, x, y, train):
    return nnx.value_and_grad(_loss)(module, x, y, train)


@functools.cache  # one compiled function per layer and mode for the whole process
def _make_layer_ics_fn(layer: str, train: bool):
    """One separately jitted function per layer and mode: the full gradient, one layer kept."""

    @nnx.jit
    def layer_gradient(module, x, y):
        grads = nnx.grad(_loss)(module, x, y, train)
        return nnx.to_pure_dict(grads)[layer]

    return layer_gradient


def _params(module) -> dict:
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def _set_params(module, pure: dict) -> None:
    state = nnx.state(module, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(module, state)


def _vector(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(tree)])


class SeedStyleLoop:
    """Trains step by step and measures every preset on every step, seed style.

    Same initial weights (``fold_in(key(seed), 0)``) and batch order (``fold_in(key(seed), 1)``
    permutations) as :func:`bnstudy.core.train`.
    """

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig,
                 x_train: np.ndarray, y_train: np.ndarray):
        key = jax.random.key(train_config.seed)
        self.model = VGG(model_config, key=jax.random.fold_in(key, 0))
        self.optimizer = nnx.Optimizer(
            self.model, optax.sgd(train_config.learning_rate, momentum=train_config.momentum,
                                  nesterov=train_config.nesterov), wrt=nnx.Param)
        self.config = train_config
        self.layers = layer_names(model_config)
        self.x_train, self.y_train = x_train, y_train
        self.steps_per_epoch = train_config.steps_per_epoch(x_train.shape[0])
        total = train_config.total_steps(x_train.shape[0])
        epochs = -(-total // self.steps_per_epoch)
        self.permutations = np.asarray(epoch_permutations(jax.random.fold_in(key, 1), epochs,
                                                          x_train.shape[0]))
        self.step_index = 0

    def _batch(self, step: int):
        epoch, position = divmod(step, self.steps_per_epoch)
        size = self.config.batch_size
        indices = self.permutations[epoch, position * size:(position + 1) * size]
        return jnp.asarray(self.x_train[indices]), jnp.asarray(self.y_train[indices])

    def step(self, presets: Sequence[MeasurementConfig]) -> dict:
        """One training step with every preset measured. Returns {"train_loss": float,
        preset name: {ics_l2 [L], ics_cosine [L], probe_loss [S], grad_diff [S],
        beta_smoothness}} as numpy values."""
        x, y = self._batch(self.step_index)
        self.step_index += 1
        before = copy.deepcopy(self.model)  # W_t, S_t
        _ = copy.deepcopy(self.optimizer)  # the notebook's per-step optimizer copy
        loss, grads = _train_step(self.model, self.optimizer, x, y)
        after = copy.deepcopy(self.model)  # W_{t+1}, S_{t+1}
        g = nnx.to_pure_dict(grads)
        record = {"train_loss": float(loss)}
        for preset in presets:
            record[preset.name] = {**self._ics(preset, before, after, g, x, y),
                                   **self._probes(preset, before, after, g, x, y)}
        return record

    def _ics(self, preset, before, after, g, x, y) -> dict:
        train = preset.ics_mode == "train"
        new_params = _params(after)
        l2, cosine = [], []
        for index, layer in enumerate(self.layers):
            mixed = copy.deepcopy(before)
            mixed_params = _params(mixed)
            for lower in self.layers[:index]:
                mixed_params[lower] = new_params[lower]
            _set_params(mixed, mixed_params)
            a, b = _vector(g[layer]), _vector(_make_layer_ics_fn(layer, train)(mixed, x, y))
            l2.append(np.linalg.norm(a - b))
            cosine.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        return {"ics_l2": np.array(l2), "ics_cosine": np.array(cosine)}

    def _probes(self, preset, before, after, g, x, y) -> dict:
        start = before if preset.probe_start == "pre_step" else after
        w_start = _params(start)
        g_vector = _vector(g)
        lr = self.config.learning_rate
        losses, diffs, ratios = [], [], []
        for s in preset.probe_s:
            probe = copy.deepcopy(start)
            w_s = jax.tree.map(lambda w, gg, s=s: w - s * lr * gg, w_start, g)
            _set_params(probe, w_s)
            loss, g_s = _probe_loss_and_grad(probe, x, y, preset.probe_mode == "train")
            diff = np.linalg.norm(_vector(nnx.to_pure_dict(g_s)) - g_vector)
            distance = np.linalg.norm(_vector(w_s) - _vector(w_start))
            losses.append(float(loss))
            diffs.append(diff)
            ratios.append(diff / distance)
        return {"probe_loss": np.array(losses), "grad_diff": np.array(diffs),
                "beta_smoothness": max(ratios)}
