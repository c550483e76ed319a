"""The training state: one pytree that holds everything a run needs to go on.

``TrainState`` is a ``flax.struct`` dataclass, so it is a pytree: it passes through ``jit``,
``vmap`` (a leading run axis of (seed, learning rate) pairs), ``jax.sharding`` (that axis
split over devices) and a checkpointer as one value. Nothing else carries state between
steps; the learning rate and the momentum are leaves of ``opt_state``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bnstudy.core.config import Run, TrainConfig
from bnstudy.core.models import BatchStats, Params, PureModel


@struct.dataclass
class TrainState:
    """Everything that changes during training (all leaves are arrays).

    With a run axis every leaf gains a leading dimension [R] (see :func:`init_states`).

    Attributes:
        step: [] int32, the number of completed steps t.
        params: W_t, the trainable parameters.
        batch_stats: S_t, BatchNorm running statistics ({} without BN).
        opt_state: the optimizer state: the momentum trace, and the learning rate and the
            momentum as leaves (``opt_state.hyperparams``, see :func:`make_optimizer`).
        initial_params: W_0 (distance from initialization reads it).
        data_key: [2] uint32, raw key data of the data-order key; epoch e is shuffled by
            ``fold_in(data_key, e)``.
        diverged_at: [] int32, the first step t whose loss, gradient or update was not
            finite (-1 while healthy); from then on the update leaves params, batch_stats
            and opt_state as they were (see :func:`bnstudy.core.step.update`).
    """

    step: jax.Array
    params: Params
    batch_stats: BatchStats
    opt_state: Any
    initial_params: Params
    data_key: jax.Array
    diverged_at: jax.Array


def make_optimizer(nesterov: bool, learning_rate: float = 0.0,
                   momentum: float = 0.0) -> optax.GradientTransformation:
    """SGD with heavy-ball (or Nesterov) momentum, as the study trains, with the learning
    rate and the momentum as leaves of its state (``optax.inject_hyperparams``).

    ``init`` stores ``learning_rate`` and ``momentum`` in the state, in the parameters'
    dtype (the float32 value of a float32 run: the same numbers as constants would give);
    ``update`` reads them from the state, so the values given to the optimizer that updates
    do not matter and one compiled update serves every learning rate.
    """
    return optax.inject_hyperparams(optax.sgd, static_args=("nesterov",))(
        learning_rate=learning_rate, momentum=momentum, nesterov=nesterov)


def learning_rate_of(state: TrainState) -> jax.Array:
    """[] (or [R] on a stacked state): the learning rate leaf of a state."""
    return state.opt_state.hyperparams["learning_rate"]


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init key, data-order key) of a seed: fold_in(key(seed), 0) and fold_in(.., 1).

    Both models of a seed get the same init key, so their shared weights start identical.
    """
    key = jax.random.key(seed)
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)


def init_state(model: PureModel, train_config: TrainConfig, seed: int,
               learning_rate: float | None = None) -> TrainState:
    """The state at step 0 of one run: ``seed`` and ``learning_rate`` (None: the
    configuration's only learning rate)."""
    if learning_rate is None:
        if len(train_config.learning_rate_list) != 1:
            raise ValueError(f"init_state needs a learning rate: TrainConfig.learning_rates is "
                             f"{list(train_config.learning_rate_list)}")
        learning_rate = train_config.learning_rate_list[0]
    init_key, data_key = seed_keys(seed)
    params, batch_stats = model.init(init_key)
    optimizer = make_optimizer(train_config.nesterov, learning_rate, train_config.momentum)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
        opt_state=optimizer.init(params),
        initial_params=jax.tree.map(jnp.copy, params),
        data_key=jax.random.key_data(data_key),
        diverged_at=jnp.full((), -1, jnp.int32),
    )


def init_states(model: PureModel, train_config: TrainConfig,
                runs: Sequence[Run] | None = None) -> TrainState:
    """The states of several runs stacked on a leading run axis [R]; ``runs`` defaults to
    ``train_config.runs`` (every seed with every learning rate)."""
    runs = train_config.runs if runs is None else runs
    return stack_states([init_state(model, train_config, seed, rate) for seed, rate in runs])


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """Stack per-run states on a new leading axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def run_slice(states: TrainState, index: int) -> TrainState:
    """Run ``index`` of a stacked state (the leading axis removed)."""
    return jax.tree.map(lambda leaf: leaf[index], states)


def num_runs(states: TrainState) -> int:
    """Length of the leading run axis of a stacked state."""
    return int(states.step.shape[0])


def run_axis_sharding(devices: int, runs: int) -> Callable[[Any], Any]:
    """``device_put`` of a pytree with a leading run axis over a 1-D mesh ``run`` of the first
    ``devices`` local devices (0: all of ``jax.local_devices()``): the ``shard`` of
    :func:`bnstudy.core.train_seeds` that ``TrainConfig.devices`` asks for.

    Raises:
        ValueError: fewer local devices than asked for, or ``runs`` not a multiple of the
            device count.
    """
    available = jax.local_devices()
    count = devices or len(available)
    if count > len(available):
        raise ValueError(
            f"TrainConfig.devices ({devices}) asks for more devices than this process has "
            f"({len(available)}: {available}); set devices to at most {len(available)}, 0 for "
            "all, or null for none (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
            "makes N virtual devices)")
    if runs % count:
        raise ValueError(f"TrainConfig.devices: {runs} runs do not split over {count} devices; "
                         "set devices to a divisor of the number of runs (seeds x learning rates)")
    sharding = NamedSharding(Mesh(np.array(available[:count]), ("run",)), PartitionSpec("run"))
    return lambda tree: jax.device_put(tree, sharding)
