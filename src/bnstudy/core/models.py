"""The model families as Flax NNX modules (the VGG and the deep linear network), and a
pure-function view of them.

A module is the single definition of its forward pass. Training and measurements never
hold the module itself: they split it once into a static ``graphdef`` and two pure pytrees
(trainable parameters, BatchNorm running statistics) and call :class:`PureModel`, which
merges them back inside compiled code. Layers can be run from any index onwards, which the
gradient-ICS measurement uses to skip work below the layer it differentiates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
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
    """Names of the layers in forward order: conv_0..conv_{n-1}, fc1..fc{m}, out (VGG), or
    linear_0..linear_{k-1} (DLN)."""
    if config.family == "dln":
        return [f"linear_{i}" for i in range(config.depth)]
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


class NormalizedBlock(nnx.Module):
    """A linear map, then the configured normalization (pre-activation out): the layer of
    both families, called in two parts (:meth:`linear`, :meth:`normalize`)."""

    def _normalization(self, features: int, config: ModelConfig, dtype, rngs: nnx.Rngs,
                       *, normalized: bool = True) -> None:
        # ``bn`` is the normalization layer, whichever it is (so its leaves are named
        # <layer>/bn_scale, <layer>/bn_bias for every variant).
        self.bn = normalization_layer(config, features, dtype, rngs) if normalized else None
        self.noisy = normalized and config.normalization in NOISY_NORMALIZATIONS
        self.noise_config = config

    def normalize(self, z: jax.Array, *, train: bool, noise_key: jax.Array | None = None
                  ) -> jax.Array:
        """The configured normalization of the linear map's output (identity without a
        layer); the noisy kinds in training mode then apply the noise drawn from
        ``noise_key``: ``batch_noisy`` to BatchNorm's output, ``noisy`` to the map's."""
        out = z if self.bn is None else apply_normalization(self.bn, z, train=train)
        if train and self.noisy:
            s, m = batch_noise(noise_key, z.shape[0], z.shape[-1], self.noise_config, z.dtype)
            out = apply_batch_noise(out, s, m)
        return out


class ConvBlock(NormalizedBlock):
    """3x3 SAME conv with bias, then the configured normalization; the VGG calls the two
    parts separately (:meth:`VGG.layer_linear`, :meth:`VGG.layer_rest`)."""

    def __init__(self, in_features: int, out_features: int, config: ModelConfig, rngs: nnx.Rngs):
        dtype = jnp.dtype(config.param_dtype)
        self.conv = nnx.Conv(
            in_features, out_features, kernel_size=(3, 3), padding="SAME", use_bias=True,
            kernel_init=_KERNEL_INIT, param_dtype=dtype, rngs=rngs,
        )
        self._normalization(out_features, config, dtype, rngs)

    def linear(self, x: jax.Array) -> jax.Array:
        """The convolution with bias (:func:`conv3x3_same`)."""
        return conv3x3_same(x, self.conv.kernel[...], self.conv.bias[...])


class DenseBlock(NormalizedBlock):
    """A square linear map without bias (``x @ kernel``), then the configured normalization
    (none after the network's last layer): a layer of the deep linear network."""

    def __init__(self, width: int, config: ModelConfig, rngs: nnx.Rngs, *, normalized: bool):
        dtype = jnp.dtype(config.param_dtype)
        self.dense = nnx.Linear(width, width, use_bias=False, kernel_init=_KERNEL_INIT,
                                param_dtype=dtype, rngs=rngs)
        self._normalization(width, config, dtype, rngs, normalized=normalized)

    def linear(self, x: jax.Array) -> jax.Array:
        """``x @ kernel`` [B, width]."""
        return x @ self.dense.kernel[...]


class LayeredNetwork(nnx.Module):
    """What both families share: layers run one at a time (:meth:`layer`, from any index
    onwards in :meth:`__call__`), and the noise key of the noisy normalizations.

    A family sets ``layer_names`` and implements ``layer_linear(index, x)`` (the linear map
    of a layer) and ``layer_rest(index, z, train=...)`` (everything after it). Each layer's
    parameters come from its own key ``fold_in(key, layer_index)``, so the models of one
    family built from one key share identical weights whatever their normalization.
    """

    layer_names: tuple[str, ...]

    def _noise_key_init(self, config: ModelConfig, key: jax.Array) -> None:
        if config.normalization in NOISY_NORMALIZATIONS:
            # The key of the current step's noise, carried with the running statistics: a
            # training-mode forward pass from layer 0 uses it and leaves the next step's.
            self.noise_key = nnx.BatchStat(
                jax.random.key_data(jax.random.fold_in(key, NOISE_KEY_TAG)))

    def _layer_noise_key(self, index: int, train: bool) -> jax.Array | None:
        """Layer ``index``'s noise key in training mode (None without noise)."""
        if not (train and hasattr(self, "noise_key")):
            return None
        return jax.random.fold_in(jax.random.wrap_key_data(self.noise_key[...]), index)

    def layer(self, index: int, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """Run layer ``index``. Returns (pre-activation, input of the next layer)."""
        return self.layer_rest(index, self.layer_linear(index, x), train=train)

    def __call__(self, x: jax.Array, *, train: bool, start: int = 0):
        """Forward from layer ``start`` (x is that layer's input).

        Returns:
            outputs [B, outputs], pre-activations {layer: array}, layer inputs {layer: array}.
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


class VGG(LayeredNetwork):
    """VGG for 32x32 images: convs (+ optional BN) with ReLU and max-pools, dense head."""

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
        self._noise_key_init(config, key)
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
            pre_activation = block.normalize(z, train=train,
                                             noise_key=self._layer_noise_key(index, train))
            out = nnx.relu(pre_activation)
            if index in self.pool_after:
                out = max_pool_2x2(out)
            if index == self.num_convs - 1:
                out = out.reshape(out.shape[0], -1)  # never squeeze: batch size 1 must work
            return pre_activation, out
        is_output = index == len(self.layer_names) - 1
        return z, z if is_output else nnx.relu(z)

    def normalized(self, index: int) -> bool:
        """Whether layer ``index`` has a normalization (or noise) after its linear map."""
        return index < self.num_convs


class DLN(LayeredNetwork):
    """The deep linear network: ``depth`` square linear maps without bias, the normalization
    after every one but the last (BatchNorm over the full batch: all of a vector's rows),
    no non-linearity. Without normalization its output is ``x W_0 W_1 ... W_{k-1}``."""

    def __init__(self, config: ModelConfig, *, key: jax.Array):
        self.layer_names = tuple(layer_names(config))
        last = config.depth - 1
        for index, name in enumerate(self.layer_names):
            rngs = nnx.Rngs(params=jax.random.fold_in(key, index))
            setattr(self, name, DenseBlock(config.width, config, rngs, normalized=index < last))
        self._noise_key_init(config, key)

    def layer_linear(self, index: int, x: jax.Array) -> jax.Array:
        """``x @ W_index``."""
        return getattr(self, self.layer_names[index]).linear(x)

    def layer_rest(self, index: int, z: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """The normalization after layer ``index`` (none after the last). Returns
        (pre-activation, input of the next layer): the same array, as nothing follows."""
        out = getattr(self, self.layer_names[index]).normalize(
            z, train=train, noise_key=self._layer_noise_key(index, train))
        return out, out

    def normalized(self, index: int) -> bool:
        """Whether layer ``index`` has a normalization (or noise) after its linear map."""
        return index < len(self.layer_names) - 1


NETWORKS = {"vgg": VGG, "dln": DLN}
"""The module of each family (ModelConfig.family)."""


def network(config: ModelConfig, key: jax.Array) -> LayeredNetwork:
    """The module of ``config``'s family, its weights from ``key``."""
    return NETWORKS[config.family](config, key=key)


class Forward(NamedTuple):
    """Output of :meth:`PureModel.apply`."""

    logits: jax.Array  # [B, outputs]: the VGG's logits, the DLN's output vectors
    pre_activations: dict[str, jax.Array]  # layer -> pre-ReLU output (after BN for convs)
    layer_inputs: dict[str, jax.Array]  # layer -> the input that layer received
    batch_stats: BatchStats  # running statistics after this pass (updated in train mode)


def _to_pure(state) -> dict:
    return nnx.to_pure_dict(state)


class PureModel:
    """Pure functions of (params, batch_stats) for one ModelConfig; no module is kept.

    The model's objective is its family's: the VGG's mean softmax cross-entropy against
    integer labels [B] (and its accuracy), the DLN's l2 loss against target vectors [B, width]
    (:func:`squared_error`; it has no accuracy).
    """

    def __init__(self, config: ModelConfig):
        self.config = config
        self.layer_names = layer_names(config)
        abstract = nnx.eval_shape(lambda: network(config, jax.random.key(0)))
        self.graphdef, _, _ = nnx.split(abstract, nnx.Param, nnx.BatchStat)
        self._normalized = tuple(abstract.normalized(i) for i in range(len(self.layer_names)))
        self._init = jax.jit(self._init_pure)

    def _init_pure(self, key):
        _, params, stats = nnx.split(network(self.config, key), nnx.Param, nnx.BatchStat)
        return _to_pure(params), _to_pure(stats)

    @property
    def classifies(self) -> bool:
        """Whether the targets are class labels (an accuracy exists): the VGG's."""
        return self.config.family == "vgg"

    @property
    def vectorizes_measurements(self) -> bool:
        """Whether the measurements run vmapped over layers and probe points (the DLN:
        layers of 10 x 10, where one batched program beats many small ones) instead of one
        layer and one point at a time (the VGG: XLA:CPU runs vmapped convolutions slowly)."""
        return self.config.family == "dln"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example: [H, W, C] images (VGG) or [width] vectors (DLN)."""
        if self.classifies:
            size = self.config.image_size
            return (size, size, self.config.in_channels)
        return (self.config.width,)

    @property
    def target_shape(self) -> tuple[int, ...]:
        """The shape of one example's target: [] (a label) or [width] (a vector)."""
        return () if self.classifies else (self.config.width,)

    def target_dtype(self, dtype) -> np.dtype:
        """The dtype of the targets: int32 labels, else the parameters' ``dtype``."""
        return np.dtype(np.int32) if self.classifies else np.dtype(dtype)

    def normalized(self, index: int) -> bool:
        """Whether layer ``index`` has a normalization (or noise) after its linear map: the
        layers where the training mode differs from the eval mode."""
        return self.config.normalization != "none" and self._normalized[index]

    def example_losses(self, outputs: jax.Array, y: jax.Array) -> jax.Array:
        """The loss of each example [B]: its softmax cross-entropy or its squared error."""
        if self.classifies:
            return optax.softmax_cross_entropy_with_integer_labels(outputs, y)
        return jnp.sum(jnp.square(outputs - y), axis=-1)

    def output_loss(self, outputs: jax.Array, y: jax.Array) -> jax.Array:
        """The loss of a batch: the mean over its examples of :meth:`example_losses`."""
        if self.classifies:
            return cross_entropy(outputs, y)
        return squared_error(outputs, y)

    def correct(self, outputs: jax.Array, y: jax.Array) -> jax.Array:
        """[B] bool: the arg-max class is the label (VGG). The DLN has no classes: NaN
        accuracy follows from :meth:`accuracy`."""
        return jnp.argmax(outputs, -1) == y

    def accuracy(self, outputs: jax.Array | None, y: jax.Array, dtype) -> jax.Array:
        """The batch's accuracy; NaN for a model without classes (``outputs`` unused)."""
        if not self.classifies:
            return jnp.full((), jnp.nan, dtype)
        return jnp.mean(self.correct(outputs, y).astype(dtype))

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
        """The batch's loss (:meth:`output_loss`) and the forward pass (as aux)."""
        forward = self.apply(params, batch_stats, x, train=train, start=start)
        return self.output_loss(forward.logits, y), forward


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of logits [B, C] against integer labels [B]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """The DLN's l2 loss: the mean over the B samples of ||output - target||^2 (summed over
    the outputs), ``(1 / B) sum_b ||W_k ... W_1 x_b - A x_b||^2`` for targets A x."""
    return jnp.mean(jnp.sum(jnp.square(outputs - targets), axis=-1))


def leaf_paths(tree: Params) -> list[str]:
    """Readable names of the leaves in flatten order: 'conv_3/kernel', 'conv_3/bn_scale',
    'linear_4/kernel'."""
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [str(getattr(k, "key", k)) for k in path]
        layer, rest = keys[0], keys[1:]
        if len(rest) == 2 and rest[0] == "bn":
            leaf = f"bn_{rest[1]}"
        elif len(rest) == 2 and rest[0] in ("conv", "dense"):
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
    abstract = nnx.eval_shape(lambda: network(config, jax.random.key(0)))
    _, params, stats = nnx.split(abstract, nnx.Param, nnx.BatchStat)
    trainable = sum(leaf.size for leaf in jax.tree.leaves(params))
    # The noise key of the noisy kinds is not a statistic: only floating leaves count.
    running = sum(leaf.size for leaf in jax.tree.leaves(stats)
                  if jnp.issubdtype(leaf.dtype, jnp.inexact))
    return {"trainable": int(trainable), "batch_stats": int(running),
            "total": int(trainable + running)}
