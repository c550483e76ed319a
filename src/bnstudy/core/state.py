"""The training state: one pytree that holds everything a run needs to go on.

``TrainState`` is a ``flax.struct`` dataclass, so it is a pytree: it passes through ``jit``,
``vmap`` (a leading seed axis), ``jax.sharding`` (that axis split over devices) and a
checkpointer as one value. Nothing else carries state between steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from bnstudy.core.config import TrainConfig
from bnstudy.core.models import BatchStats, Params, PureModel


@struct.dataclass
class TrainState:
    """Everything that changes during training (all leaves are arrays).

    With a seed axis every leaf gains a leading dimension [S] (see :func:`init_states`).

    Attributes:
        step: [] int32, the number of completed steps t.
        params: W_t, the trainable parameters.
        batch_stats: S_t, BatchNorm running statistics ({} without BN).
        opt_state: the optimizer state (the momentum trace).
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


def make_optimizer(train_config: TrainConfig) -> optax.GradientTransformation:
    """SGD with heavy-ball (or Nesterov) momentum, as the study trains."""
    return optax.sgd(train_config.learning_rate, momentum=train_config.momentum,
                     nesterov=train_config.nesterov)


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init key, data-order key) of a seed: fold_in(key(seed), 0) and fold_in(.., 1).

    Both models of a seed get the same init key, so their shared weights start identical.
    """
    key = jax.random.key(seed)
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)


def init_state(model: PureModel, train_config: TrainConfig, seed: int) -> TrainState:
    """The state at step 0 of one seed."""
    init_key, data_key = seed_keys(seed)
    params, batch_stats = model.init(init_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
        opt_state=make_optimizer(train_config).init(params),
        initial_params=jax.tree.map(jnp.copy, params),
        data_key=jax.random.key_data(data_key),
        diverged_at=jnp.full((), -1, jnp.int32),
    )


def init_states(model: PureModel, train_config: TrainConfig,
                seeds: Sequence[int]) -> TrainState:
    """The states of several seeds stacked on a leading seed axis [S]."""
    return stack_states([init_state(model, train_config, seed) for seed in seeds])


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """Stack per-seed states on a new leading axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def seed_slice(states: TrainState, index: int) -> TrainState:
    """Seed ``index`` of a stacked state (the leading axis removed)."""
    return jax.tree.map(lambda leaf: leaf[index], states)


def num_seeds(states: TrainState) -> int:
    """Length of the leading seed axis of a stacked state."""
    return int(states.step.shape[0])
