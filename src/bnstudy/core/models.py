"""The VGG pair as one Flax NNX module, and a pure-function view of it.

The module is the single definition of the forward pass. Training and measurements never
hold the module itself: they split it once into a static ``graphdef`` and two pure pytrees
(trainable parameters, BatchNorm running statistics) and call :class:`PureModel`, which
merges them back inside compiled code. Layers can be run from any index onwards, which the
gradient-ICS measurement uses to skip work below the layer it differentiates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bnstudy.core.config import ModelConfig
from bnstudy.core.normalization import (
    NOISE_KEY_TAG,
    NOISY_NORMALIZATIONS,
    apply_batch_noise,
    apply_normalization,
    batch_noise,
    normalization_layer,
)

Params = dict[str, Any]
"""Nested dict of arrays: ``params[layer][...][leaf]`` (trainable parameters)."""
BatchStats = dict[str, Any]
"""Nested dict of arrays: ``stats[conv_i]['bn']['mean' | 'var']`` (``'mean' | 'norm'`` for the
Lp normalizations), plus ``stats['noise_key']`` ([2] uint32) for ``batch_noisy`` and
``noisy`` (the key alone for ``noisy``); empty for ``none``."""

_KERNEL_INIT = nnx.initializers.glorot_normal()


def layer_names(config: ModelConfig) -> list[str]:
    """Names of the layers in forward order: conv_0..conv_{n-1}, fc1..fc{m}, out."""
    convs = [f"conv_{i}" for i in range(len(config.conv_features))]
    dense = [f"fc{j + 1}" for j in range(len(config.dense_features))]
    return [*convs, *dense, "out"]


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool with stride 2 of [B, H, W, C] (H, W even), as a reshape and a max.

    The same values as ``nnx.max_pool(x, (2, 2), strides=(2, 2))``; XLA:CPU runs its gradient
    ~20% faster than the select-and-scatter of a reduce_window. The gradients differ only
    where two positive entries of a window tie exactly (split between them instead of
    given to the first); after a ReLU, tied zeros receive no gradient either way.
    """
    batch, height, width, channels = x.shape
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


# Convolutions whose output map has at most this many pixels run as one matmul over 3x3
# patches (im2col). XLA:CPU's convolution is ~6x slower than the matmul on 2x2 maps (the
# last two VGG convs); on larger maps the convolution is as fast or faster.
IM2COL_MAX_PIXELS = 4


def conv3x3_same(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """3x3 SAME convolution with stride 1 of x [B, H, W, Cin] by kernel [3, 3, Cin, Cout],
    plus bias: the map of ``nnx.Conv(kernel_size=(3, 3), padding="SAME")``.

    Maps of at most :data:`IM2COL_MAX_PIXELS` pixels run as a matmul of the 3x3 patches
    [B, H, W, 9 Cin] with the flattened kernel; larger maps use XLA's convolution. Both use
    the default matmul precision of the caller, as ``nnx.Conv`` does; they differ only in
    the order of the float32 sums.
    """
    height, width = x.shape[1], x.shape[2]
    if height * width > IM2COL_MAX_PIXELS:
        out = jax.lax.conv_general_dilated(
            x, kernel, window_strides=(1, 1), padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return out + bias
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([padded[:, i:i + height, j:j + width, :]
                               for i in range(3) for j in range(3)], axis=-1)
    return patches @ kernel.reshape(-1, kernel.shape[-1]) + bias


class ConvBlock(nnx.Module):
    """3x3 SAME conv with bias, then the configured normalization (pre-activation out); the
    VGG calls the two parts separately (:meth:`VGG.layer_linear`, :meth:`VGG.layer_rest`)."""

    def __init__(self, in_features: int, out_features: int, config: ModelConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.param_dtype)
        self.conv = nnx.Conv(
            in_features, out_features, kernel_size=(3, 3), padding="SAME", use_bias=True,
            kernel_init=_KERNEL_INIT, param_dtype=dtype, rngs=rngs,
        )
        # ``bn`` is the normalization layer, whichever it is (so its leaves are named
        # conv_i/bn_scale, conv_i/bn_bias for every variant).
        self.bn = normalization_layer(config, out_features, dtype, rngs)
        self.noisy = config.normalization in NOISY_NORMALIZATIONS
        self.noise_config = config

    def linear(self, x: jax.Array) -> jax.Array:
        """The convolution with bias (:func:`conv3x3_same`)."""
        return conv3x3_same(x, self.conv.kernel[...], self.conv.bias[...])

    def normalize(self, z: jax.Array, *, train: bool, noise_key: jax.Array | None = None
                  ) -> jax.Array:
        """The configured normalization of the convolution's output (identity without a
        layer); the noisy kinds in training mode then apply the noise drawn from
        ``noise_key``: ``batch_noisy`` to BatchNorm's output, ``noisy`` to the conv's."""
        out = z if self.bn is None else apply_normalization(self.bn, z, train=train)
        if train and self.noisy:
            s, m = batch_noise(noise_key, z.shape[0], z.shape[-1], self.noise_config, z.dtype)
            out = apply_batch_noise(out, s, m)
        return out


class VGG(nnx.Module):
    """VGG for 32x32 images: convs (+ optional BN) with ReLU and max-pools, dense head.

    Each layer's parameters come from its own key ``fold_in(key, layer_index)``, so the
    baseline and the candidate built from one key share identical conv and dense weights.
    """

    def __init__(self, config: ModelConfig, *, key: jax.Array):
        self.layer_names = tuple(layer_names(config))
        self.num_convs = len(config.conv_features)
        self.pool_after = tuple(config.pool_after)
        dtype = jnp.dtype(config.param_dtype)
        in_features = config.in_channels
        for index, width in enumerate(config.conv_widths):
            rngs = nnx.Rngs(params=jax.random.fold_in(key, index))
            setattr(self, f"conv_{index}", ConvBlock(in_features, width, config, rngs))
            in_features = width
        if config.normalization in NOISY_NORMALIZATIONS:
            # The key of the current step's noise, carried with the running statistics: a
            # training-mode forward pass from layer 0 uses it and leaves the next step's.
            self.noise_key = nnx.BatchStat(
                jax.random.key_data(jax.random.fold_in(key, NOISE_KEY_TAG)))
        in_features = config.flat_features
        widths = [*config.dense_widths, config.num_classes]
        for offset, (name, width) in enumerate(zip(self.layer_names[self.num_convs:], widths)):
            rngs = nnx.Rngs(params=jax.random.fold_in(key, self.num_convs + offset))
            setattr(self, name, nnx.Linear(in_features, width, kernel_init=_KERNEL_INIT,
                                           param_dtype=dtype, rngs=rngs))
            in_features = width

    def layer_linear(self, index: int, x: jax.Array) -> jax.Array:
        """The linear part of layer ``index``: its conv or dense map, bias included."""
        block = getattr(self, self.layer_names[index])
        return block.linear(x) if index < self.num_convs else block(x)

    def layer_rest(self, index: int, z: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """The rest of layer ``index`` after :meth:`layer_linear` (normalization, ReLU, pool,
        flatten). Returns (pre-activation, input of the next layer)."""
        if index < self.num_convs:
            block = getattr(self, self.layer_names[index])
            noise_key = None
            if train and hasattr(self, "noise_key"):
                noise_key = jax.random.fold_in(
                    jax.random.wrap_key_data(self.noise_key[...]), index)
            pre_activation = block.normalize(z, train=train, noise_key=noise_key)
            out = nnx.relu(pre_activation)
            if index in self.pool_after:
                out = max_pool_2x2(out)
            if index == self.num_convs - 1:
                out = out.reshape(out.shape[0], -1)  # never squeeze: batch size 1 must work
            return pre_activation, out
        is_output = index == len(self.layer_names) - 1
        return z, z if is_output else nnx.relu(z)

    def layer(self, index: int, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """Run layer ``index``. Returns (pre-activation, input of the next layer)."""
        return self.layer_rest(index, self.layer_linear(index, x), train=train)

    def __call__(self, x: jax.Array, *, train: bool, start: int = 0):
        """Forward from layer ``start`` (x is that layer's input).

        Returns:
            logits [B, num_classes], pre-activations {layer: array}, layer inputs {layer: array}.
        """
        pre_activations, layer_inputs = {}, {}
        for index in range(start, len(self.layer_names)):
            name = self.layer_names[index]
            layer_inputs[name] = x
            pre_activations[name], x = self.layer(index, x, train=train)
        if train and start == 0 and hasattr(self, "noise_key"):
            self.noise_key[...] = jax.random.key_data(
                jax.random.fold_in(jax.random.wrap_key_data(self.noise_key[...]), NOISE_KEY_TAG))
        return x, pre_activations, layer_inputs


class Forward(NamedTuple):
    """Output of :meth:`PureModel.apply`."""

    logits: jax.Array  # [B, num_classes]
    pre_activations: dict[str, jax.Array]  # layer -> pre-ReLU output (after BN for convs)
    layer_inputs: dict[str, jax.Array]  # layer -> the input that layer received
    batch_stats: BatchStats  # running statistics after this pass (updated in train mode)


def _to_pure(state) -> dict:
    return nnx.to_pure_dict(state)


class PureModel:
    """Pure functions of (params, batch_stats) for one ModelConfig; no module is kept."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.layer_names = layer_names(config)
        abstract = nnx.eval_shape(lambda: VGG(config, key=jax.random.key(0)))
        self.graphdef, _, _ = nnx.split(abstract, nnx.Param, nnx.BatchStat)
        self._init = jax.jit(self._init_pure)

    def _init_pure(self, key):
        _, params, stats = nnx.split(VGG(self.config, key=key), nnx.Param, nnx.BatchStat)
        return _to_pure(params), _to_pure(stats)

    def init(self, key: jax.Array) -> tuple[Params, BatchStats]:
        """Initial (params, batch_stats) as pure nested dicts (one compiled program)."""
        return self._init(key)

    def apply(self, params: Params, batch_stats: BatchStats, x: jax.Array, *, train: bool,
              start: int = 0) -> Forward:
        """Forward pass from layer ``start``; ``train`` uses batch statistics in BN."""
        model = nnx.merge(self.graphdef, params, batch_stats, copy=True)
        logits, pre_activations, layer_inputs = model(x, train=train, start=start)
        new_stats = _to_pure(nnx.state(model, nnx.BatchStat)) if train else batch_stats
        return Forward(logits, pre_activations, layer_inputs, new_stats)

    def layer_linear(self, params: Params, batch_stats: BatchStats, index: int,
                     x: jax.Array) -> jax.Array:
        """The conv or dense map of layer ``index`` (bias included) on its input ``x``."""
        model = nnx.merge(self.graphdef, params, batch_stats, copy=True)
        return model.layer_linear(index, x)

    def layer_rest(self, params: Params, batch_stats: BatchStats, index: int, z: jax.Array, *,
                   train: bool) -> tuple[jax.Array, jax.Array]:
        """Normalization, ReLU, pool of layer ``index`` on its linear output ``z``.

        Returns (pre-activation, input of the next layer); running statistics unchanged.
        """
        model = nnx.merge(self.graphdef, params, batch_stats, copy=True)
        return model.layer_rest(index, z, train=train)

    def loss(self, params: Params, batch_stats: BatchStats, x: jax.Array, y: jax.Array, *,
             train: bool, start: int = 0) -> tuple[jax.Array, Forward]:
        """Mean softmax cross-entropy and the forward pass (as aux)."""
        forward = self.apply(params, batch_stats, x, train=train, start=start)
        return cross_entropy(forward.logits, y), forward


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of logits [B, C] against integer labels [B]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def leaf_paths(tree: Params) -> list[str]:
    """Readable names of the leaves in flatten order: 'conv_3/kernel', 'conv_3/bn_scale'."""
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [str(getattr(k, "key", k)) for k in path]
        layer, rest = keys[0], keys[1:]
        if len(rest) == 2 and rest[0] == "bn":
            leaf = f"bn_{rest[1]}"
        elif len(rest) == 2 and rest[0] == "conv":
            leaf = rest[1]
        else:
            leaf = "_".join(rest)
        names.append(f"{layer}/{leaf}")
    return names


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Sizes of the model built abstractly (no arrays allocated).

    Returns:
        ``trainable`` (Param leaves), ``batch_stats`` (BN running mean and variance), ``total``.
    """
    abstract = nnx.eval_shape(lambda: VGG(config, key=jax.random.key(0)))
    _, params, stats = nnx.split(abstract, nnx.Param, nnx.BatchStat)
    trainable = sum(leaf.size for leaf in jax.tree.leaves(params))
    # The noise key of the noisy kinds is not a statistic: only floating leaves count.
    running = sum(leaf.size for leaf in jax.tree.leaves(stats)
                  if jnp.issubdtype(leaf.dtype, jnp.inexact))
    return {"trainable": int(trainable), "batch_stats": int(running),
            "total": int(trainable + running)}
