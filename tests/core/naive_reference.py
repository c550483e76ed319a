"""An independent, deliberately naive implementation of training and every measurement.

Written the way the blog's notebook did it, against today's Flax API: a stateful NNX module
and ``nnx.Optimizer``, deep copies of the model per measurement, one full-model gradient per
ICS layer (no suffix trick), one probe point at a time, numpy for the statistics. It shares
with the core only the module definition (the thing being measured) and the data order.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bnstudy.core import QUANTILE_LEVELS, VGG, epoch_permutations, layer_names, leaf_paths


def _loss(module, x, y, train):
    logits, _, _ = module(x, train=train)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@nnx.jit(static_argnames="train")
def _loss_and_grad(module, x, y, train):
    return nnx.value_and_grad(_loss)(module, x, y, train)


# The other module calls and the optimizer update are jitted as well (the notebook jitted its
# step): the same operations, one compile each instead of one per op and shape when eager.
@nnx.jit(static_argnames="train")
def _forward(module, x, train):
    return module(x, train=train)


@nnx.jit
def _sgd_update(optimizer, module, grads):
    optimizer.update(module, grads)


@jax.jit
def _probe_params(w_start, g, step):
    """W(s) = W_start - (s * lr) * g, leaf by leaf (``step`` = s * lr)."""
    return jax.tree.map(lambda w, gg: w - step * gg, w_start, g)


def _pure_params(module):
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def _as_numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _vector(tree):
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def _set_params(module, pure):
    state = nnx.state(module, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(module, state)


class NaiveRun:
    """Trains with the stateful API and records naive measurements at chosen steps."""

    def __init__(self, model_config, train_config, x_train, y_train):
        key = jax.random.key(train_config.seed)
        self.model = VGG(model_config, key=jax.random.fold_in(key, 0))
        self.optimizer = nnx.Optimizer(
            self.model, optax.sgd(train_config.learning_rate, momentum=train_config.momentum),
            wrt=nnx.Param)
        self.config = train_config
        self.layers = layer_names(model_config)
        self.initial_params = _as_numpy(_pure_params(self.model))
        num = x_train.shape[0]
        steps_per_epoch = num // train_config.batch_size
        self.total = train_config.total_steps(num)
        epochs = -(-self.total // steps_per_epoch)
        permutations = np.asarray(jax.jit(epoch_permutations, static_argnums=(1, 2))(
            jax.random.fold_in(key, 1), epochs, num))
        batch = train_config.batch_size
        self.batches = [
            permutations[t // steps_per_epoch, (t % steps_per_epoch) * batch:
                          (t % steps_per_epoch + 1) * batch] for t in range(self.total)]
        self.x_train, self.y_train = x_train, y_train

    def run(self, presets, measure_steps, snapshot_steps, histogram_edges):
        records = {"train_loss": [], "train_accuracy": [], "measurements": {},
                   "activations": {}, "init_distance": {}}
        for step in range(self.total):
            x = jnp.asarray(self.x_train[self.batches[step]])
            y = jnp.asarray(self.y_train[self.batches[step]])
            before = copy.deepcopy(self.model)  # W_t, S_t
            if step in snapshot_steps:
                records["activations"][step] = self.activation_stats(before, x, histogram_edges)
                records["init_distance"][step] = {**self.init_distance(before),
                                                  **self.scales(before, x)}
            loss, grads = _loss_and_grad(self.model, x, y, True)  # updates S in place
            _sgd_update(self.optimizer, self.model, grads)
            records["train_loss"].append(float(loss))
            logits, _, _ = _forward(self.model, x, False)
            records["train_accuracy"].append(float(np.mean(np.argmax(logits, -1) == y)))
            if step in measure_steps:
                after = copy.deepcopy(self.model)  # W_{t+1}, S_{t+1}
                g = nnx.to_pure_dict(grads)
                records["measurements"][step] = {
                    preset.name: self.measure(preset, before, after, g, x, y) for preset in presets}
        records["final_params"] = _as_numpy(_pure_params(self.model))
        records["final_init_distance"] = self.init_distance(self.model)
        return records

    def measure(self, preset, before, after, g, x, y):
        result = {}
        # ICS: one full gradient per layer at a copied, mixed parameter tree.
        train = preset.ics_mode == "train"
        g_np = _as_numpy(g)
        new_params = _pure_params(after)
        ics_l2, ics_cos, g_norm = [], [], {}
        leaf_l2 = {}
        for index, layer in enumerate(self.layers):
            mixed = copy.deepcopy(before)
            mixed_params = _pure_params(mixed)
            for lower in self.layers[:index]:
                mixed_params[lower] = new_params[lower]
            _set_params(mixed, mixed_params)
            _, g_mixed = _loss_and_grad(mixed, x, y, train)
            g_prime = _as_numpy(nnx.to_pure_dict(g_mixed))[layer]
            a, b = _vector(g_np[layer]), _vector(g_prime)
            ics_l2.append(np.linalg.norm(a - b))
            ics_cos.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            g_norm[layer] = np.linalg.norm(a)
            for name, la, lb in zip(leaf_paths({layer: g_np[layer]}),
                                    jax.tree.leaves(g_np[layer]), jax.tree.leaves(g_prime)):
                leaf_l2[name] = np.linalg.norm(np.ravel(la) - np.ravel(lb))
        result.update(ics_l2=np.array(ics_l2), ics_cosine=np.array(ics_cos), g0_norm=g_norm[self.layers[0]], g_norm=g_norm,
                      ics_l2_leaf=leaf_l2)
        # Probes: one point at a time on a fresh copy of the start model.
        start = before if preset.probe_start == "pre_step" else after
        w_start = _pure_params(start)
        losses, diffs, ratios = [], [], []
        lr = self.config.learning_rate
        for s in preset.probe_s:
            probe = copy.deepcopy(start)
            w_s = _probe_params(w_start, g, s * lr)
            _set_params(probe, w_s)
            loss, g_s = _loss_and_grad(probe, x, y, preset.probe_mode == "train")
            diff = np.linalg.norm(_vector(_as_numpy(nnx.to_pure_dict(g_s))) - _vector(g_np))
            distance = np.linalg.norm(_vector(_as_numpy(w_s)) - _vector(_as_numpy(w_start)))
            losses.append(float(loss))
            diffs.append(diff)
            ratios.append(diff / distance)
        result.update(probe_loss=np.array(losses), grad_diff=np.array(diffs),
                      beta_smoothness=max(ratios))
        return result

    def activation_stats(self, module, x, edges):
        probe = copy.deepcopy(module)
        _, pre_activations, _ = _forward(probe, x, True)
        stats = {}
        for layer in self.layers:
            a = np.asarray(pre_activations[layer], np.float64)
            flat = a.ravel()
            counts, _ = np.histogram(flat, bins=np.asarray(edges, np.float64))
            stats[layer] = {
                "mean": flat.mean(), "std": flat.std(), "min": flat.min(), "max": flat.max(),
                "quantiles": np.quantile(flat, QUANTILE_LEVELS),
                "frac_positive": np.mean(flat > 0), "hist_counts": counts,
                "underflow": np.sum(flat < edges[0]), "overflow": np.sum(flat > edges[-1]),
                "channel_mean": a.reshape(-1, a.shape[-1]).mean(0),
                "channel_var": a.reshape(-1, a.shape[-1]).var(0),
            }
        return stats

    def init_distance(self, module):
        """abs, rel, norm and angle (arccos of the cosine, in float64) of every kernel."""
        params = _as_numpy(_pure_params(module))
        out = {"abs": {}, "rel": {}, "norm": {}, "angle": {}}
        for layer in self.layers:
            block, block0 = params[layer], self.initial_params[layer]
            kernel = np.asarray(block["conv"]["kernel"] if "conv" in block else block["kernel"], np.float64)
            kernel0 = np.asarray(block0["conv"]["kernel"] if "conv" in block0 else block0["kernel"], np.float64)
            out["abs"][layer] = np.linalg.norm(kernel - kernel0)
            out["rel"][layer] = out["abs"][layer] / np.linalg.norm(kernel0)
            out["norm"][layer] = np.linalg.norm(kernel)
            cosine = np.sum(kernel * kernel0) / (np.linalg.norm(kernel) * np.linalg.norm(kernel0))
            out["angle"][layer] = np.arccos(np.clip(cosine, -1.0, 1.0))
        return out

    def scales(self, module, x):
        """Per BN layer, from the conv's output on the batch (the module's own conv, then
        numpy): mean |gamma|, mean sqrt(var + eps) and mean |gamma| / sqrt(var + eps) over
        the channels; NaN for a layer without BN."""
        probe = copy.deepcopy(module)
        _, _, inputs = _forward(probe, x, True)
        out = {"gamma": {}, "sigma": {}, "gamma_over_sigma": {}}
        for layer in self.layers:
            block = getattr(module, layer)
            bn = getattr(block, "bn", None)
            if bn is None:
                for values in out.values():
                    values[layer] = np.nan
                continue
            z = np.asarray(block.linear(inputs[layer]), np.float64)
            sigma = np.sqrt(z.reshape(-1, z.shape[-1]).var(0) + bn.epsilon)
            gamma = np.abs(np.asarray(bn.scale[...], np.float64))
            out["gamma"][layer], out["sigma"][layer] = gamma.mean(), sigma.mean()
            out["gamma_over_sigma"][layer] = (gamma / sigma).mean()
        return out
