"""Checkpoints of a training run, written atomically with orbax: the only file I/O of the core.

A checkpoint holds the stacked :class:`~bnstudy.core.state.TrainState` (its flat list of
leaves, restored into the structure of a freshly initialized state), a *record* (a nested
dict of numpy arrays: what the run recorded so far), a few JSON values, the hash of the
configuration that wrote it and a SHA-256 of every array. It is used only by a run with the
same configuration hash and only when its arrays hash to the stored checksum; otherwise the
next older one is tried (the newest ``keep`` are kept).

Layout: ``<checkpoint_dir>/config-<hash[:16]>/<completed steps>/`` (orbax writes a step to a
temporary directory and renames it when complete, so a killed save leaves no step behind).
Checkpoints of another configuration live in their own ``config-*`` directory and are never
read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

logger = logging.getLogger(__name__)

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


class RunCheckpoints:
    """The checkpoints of one run configuration; a context manager (closes orbax).

    Args:
        directory: the checkpoint directory given to the run (created if missing).
        config_hash: :func:`fingerprint` of the run.
        keep: how many of the newest checkpoints to keep (one to fall back on).
    """

    def __init__(self, directory: str | os.PathLike, config_hash: str, keep: int = 2):
        root = Path(directory).absolute()
        self.config_hash = config_hash
        self.directory = root / f"config-{config_hash[:16]}"
        others = sorted(p.name for p in root.glob("config-*") if p != self.directory)
        if others and not self.directory.exists():
            logger.warning("%s holds checkpoints of another configuration (%s); they are not "
                           "used: this run's configuration hash is %s (model, training or "
                           "measurement configs, or the data, differ). Starting fresh.",
                           root, ", ".join(others), config_hash[:16])
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def __enter__(self) -> RunCheckpoints:
        return self

    def __exit__(self, *exc_info) -> None:
        self._manager.close()

    def save(self, done: int, state, record: Mapping[str, Any],
             extra: Mapping[str, Any]) -> None:
        """Save (atomically) the state and record after ``done`` completed steps."""
        if done in self._manager.all_steps():
            return  # a deterministic run has nothing new to say about this step
        state_leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(state)]
        flat = traverse_util.flatten_dict(dict(record))
        paths = sorted(flat)
        record_leaves = [np.asarray(flat[path]) for path in paths]
        meta = {"format": FORMAT, "config_hash": self.config_hash, "done": int(done),
                "state": _specs(state_leaves), "record_paths": [list(p) for p in paths],
                "record": _specs(record_leaves), "extra": dict(extra),
                "checksum": _checksum(state_leaves + record_leaves)}
        arrays = {"state": _packed(state_leaves), "record": _packed(record_leaves)}
        self._manager.save(done, force=True, args=ocp.args.Composite(
            arrays=ocp.args.StandardSave({k: v for k, v in arrays.items() if v.size}),
            meta=ocp.args.JsonSave(meta)))
        logger.info("checkpoint after step %d saved in %s", done, self.directory)

    def restore(self, state_template) -> Checkpoint | None:
        """The newest usable checkpoint, or None (the run starts fresh).

        A checkpoint that cannot be read, fails its checksum, or does not fit this run is
        logged and set aside as ``unusable-<step>-<time>`` (kept for inspection, out of
        orbax's way: a later save of its step would collide with it), and the next older
        one is tried.
        """
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                return self._load(step, state_template)
            except Exception as error:  # orbax and tensorstore raise many kinds on bad files
                aside = self.directory / f"unusable-{step}-{time.strftime('%Y%m%dT%H%M%S')}"
                (self.directory / str(step)).rename(aside)
                self._manager.reload()
                logger.warning("checkpoint %s is not usable (%s: %s); moved to %s, trying the "
                               "previous one", self.directory / str(step),
                               type(error).__name__, error, aside.name)
        return None

    def _load(self, step: int, state_template) -> Checkpoint:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            arrays=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        meta, arrays = restored["meta"], restored["arrays"] or {}
        if meta.get("format") != FORMAT or meta.get("config_hash") != self.config_hash:
            raise CheckpointError(f"format {meta.get('format')} and configuration hash "
                                  f"{meta.get('config_hash')}, expected {FORMAT} and "
                                  f"{self.config_hash}")
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
            {tuple(path): leaf for path, leaf in zip(meta["record_paths"], record_leaves,
                                                     strict=True)})
        logger.info("resuming from the checkpoint after step %d in %s", step, self.directory)
        return Checkpoint(int(meta["done"]), jax.tree.unflatten(treedef, state_leaves),
                          record, meta["extra"])
