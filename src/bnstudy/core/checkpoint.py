"""Checkpoints of a training run, the pure part: what a checkpoint holds, as arrays and JSON.

A checkpoint holds the stacked :class:`~bnstudy.core.state.TrainState` (its flat list of
leaves, restored into the structure of a freshly initialized state), a *record* (a nested
dict of numpy arrays: what the run recorded so far), a few JSON values, the hash of the
configuration that wrote it (:func:`fingerprint`) and a SHA-256 of every array.
:func:`packed_checkpoint` turns them into two byte arrays and a JSON document;
:func:`unpacked_checkpoint` checks such a document against the configuration and the state
and turns it back, refusing (:class:`CheckpointError`) what does not fit.

No file I/O here. The training loop saves and restores through a :class:`Checkpointer`,
opened for the run's configuration hash by a :data:`CheckpointStore`;
:mod:`bnstudy.reliability.checkpoints` is the one that writes files (orbax, atomically, the
newest two kept, damaged ones set aside).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from flax import traverse_util

FORMAT = 2
"""Version of the checkpoint contents; a checkpoint of another version is not used
(2: the state and the record each packed into one byte array)."""

_SAMPLE_ELEMENTS = 4096


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (corrupt, another format or configuration)."""


def fingerprint(configs: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 (hex) of the resolved configs (as JSON) and a fingerprint of the data.

    Integer arrays (labels) are hashed whole; floating arrays (images) by shape, dtype and
    a strided sample of about 4096 elements plus their first and last 256 (hashing 600 MB
    of CIFAR-10 floats would cost seconds per run).
    """
    digest = hashlib.sha256(json.dumps(configs, sort_keys=True, default=repr).encode())
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        digest.update(f"{name}:{array.shape}:{array.dtype.str}".encode())
        flat = array.reshape(-1)
        if not np.issubdtype(array.dtype, np.integer):
            stride = max(1, flat.size // _SAMPLE_ELEMENTS)
            flat = np.concatenate([flat[:256], flat[::stride], flat[-256:]])
        digest.update(np.ascontiguousarray(flat).tobytes())
    return digest.hexdigest()


def _checksum(leaves: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for leaf in leaves:
        digest.update(f"{leaf.shape}:{leaf.dtype.str};".encode())
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def _specs(leaves: Sequence[np.ndarray]) -> list[list]:
    return [[list(leaf.shape), leaf.dtype.str] for leaf in leaves]


def _packed(leaves: Sequence[np.ndarray]) -> np.ndarray:
    """The leaves' bytes, one after another, as one uint8 array (the specs say where each
    starts): orbax writes one array in a fraction of the time it needs for hundreds."""
    return np.concatenate([np.ascontiguousarray(leaf).reshape(-1).view(np.uint8)
                           for leaf in leaves] + [np.zeros(0, np.uint8)])


def _unpacked(packed: np.ndarray, specs: Sequence[list]) -> list[np.ndarray]:
    packed = np.asarray(packed, np.uint8).reshape(-1)
    leaves, start = [], 0
    for shape, dtype in specs:
        size = int(np.prod(shape, dtype=int)) * np.dtype(dtype).itemsize
        if start + size > packed.size:
            raise CheckpointError(f"the packed arrays end at byte {packed.size}, a leaf "
                                  f"{tuple(shape)} {dtype} needs bytes {start}..{start + size}")
        leaves.append(packed[start:start + size].view(np.dtype(dtype)).reshape(shape).copy())
        start += size
    if start != packed.size:
        raise CheckpointError(f"{packed.size - start} bytes of the packed arrays are left over")
    return leaves


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A restored checkpoint.

    Attributes:
        done: completed steps (a chunk boundary).
        state: the stacked TrainState (numpy leaves, the template's structure).
        record: the nested dict of numpy arrays that was saved with it.
        extra: the JSON values that were saved with it.
    """

    done: int
    state: Any
    record: dict[str, Any]
    extra: dict[str, Any]


def packed_checkpoint(done: int, state: Any, record: Mapping[str, Any], extra: Mapping[str, Any],
                      config_hash: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A checkpoint after ``done`` completed steps as ``(arrays, meta)``: ``arrays`` the state's
    and the record's leaves packed into one uint8 array each (``"state"``, ``"record"``; an
    empty one left out), ``meta`` the JSON document that says how to unpack them, with the
    format, the configuration hash, ``extra`` and the SHA-256 of every leaf."""
    state_leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(state)]
    flat = traverse_util.flatten_dict(dict(record))
    paths = sorted(flat)
    record_leaves = [np.asarray(flat[path]) for path in paths]
    meta = {"format": FORMAT, "config_hash": config_hash, "done": int(done),
            "state": _specs(state_leaves), "record_paths": [list(p) for p in paths],
            "record": _specs(record_leaves), "extra": dict(extra),
            "checksum": _checksum(state_leaves + record_leaves)}
    arrays = {"state": _packed(state_leaves), "record": _packed(record_leaves)}
    return {name: array for name, array in arrays.items() if array.size}, meta


def unpacked_checkpoint(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                        state_template: Any, config_hash: str) -> Checkpoint:
    """The :class:`Checkpoint` that :func:`packed_checkpoint` packed, with its state in the
    structure of ``state_template``.

    Raises:
        CheckpointError: another format or configuration hash, leaves that do not fit the
            template, packed arrays of the wrong length, or a failed checksum.
    """
    if meta.get("format") != FORMAT or meta.get("config_hash") != config_hash:
        raise CheckpointError(f"format {meta.get('format')} and configuration hash "
                              f"{meta.get('config_hash')}, expected {FORMAT} and {config_hash}")
    template_leaves, treedef = jax.tree.flatten(state_template)
    if len(meta["state"]) != len(template_leaves):
        raise CheckpointError(f"{len(meta['state'])} state leaves, this run's state has "
                              f"{len(template_leaves)}")
    empty = np.zeros(0, np.uint8)
    state_leaves = _unpacked(arrays.get("state", empty), meta["state"])
    for leaf, template in zip(state_leaves, template_leaves, strict=True):
        if leaf.shape != np.shape(template) or leaf.dtype != template.dtype:
            raise CheckpointError(f"a state leaf is {leaf.shape} {leaf.dtype}, this "
                                  f"run's is {np.shape(template)} {template.dtype}")
    record_leaves = _unpacked(arrays.get("record", empty), meta["record"])
    if _checksum(state_leaves + record_leaves) != meta["checksum"]:
        raise CheckpointError("the arrays do not match the stored SHA-256 checksum")
    record = traverse_util.unflatten_dict(
        {tuple(path): leaf for path, leaf in zip(meta["record_paths"], record_leaves, strict=True)})
    return Checkpoint(int(meta["done"]), jax.tree.unflatten(treedef, state_leaves), record,
                      meta["extra"])


class Checkpointer(Protocol):
    """The checkpoints of one run configuration, as the training loop uses them; a context
    manager (closed when the run ends)."""

    def save(self, done: int, state: Any, record: Mapping[str, Any],
             extra: Mapping[str, Any]) -> None:
        """Keep the state (host arrays) and the record after ``done`` completed steps."""

    def restore(self, state_template: Any) -> Checkpoint | None:
        """The newest usable checkpoint of this configuration, or None (start fresh)."""

    def __enter__(self) -> Checkpointer: ...

    def __exit__(self, *exc_info: Any) -> None: ...


CheckpointStore = Callable[[str], Checkpointer]
"""Opens the :class:`Checkpointer` of a run configuration, given its :func:`fingerprint`
(e.g. :func:`bnstudy.reliability.checkpoints.checkpoint_store` of a directory)."""
