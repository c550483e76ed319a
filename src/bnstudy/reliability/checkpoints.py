"""Checkpoints on disk, written atomically with orbax: the file I/O of resumable training.

:class:`RunCheckpoints` is the :class:`~bnstudy.core.checkpoint.Checkpointer` of one run
configuration in a directory; :func:`checkpoint_store` opens it for the configuration hash the
training loop computes. What a checkpoint holds, and the checks that decide whether it fits the
run, are the core's (:func:`bnstudy.core.checkpoint.packed_checkpoint`,
:func:`~bnstudy.core.checkpoint.unpacked_checkpoint`); this module only stores and finds them.

Layout: ``<directory>/config-<hash[:16]>/<completed steps>/`` (orbax writes a step to a
temporary directory and renames it when complete, so a killed save leaves no step behind).
Checkpoints of another configuration live in their own ``config-*`` directory and are never
read. A checkpoint is used only when its arrays hash to the stored checksum; otherwise the next
older one is tried (the newest ``keep`` are kept).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from bnstudy.core.checkpoint import (
    Checkpoint,
    CheckpointStore,
    packed_checkpoint,
    unpacked_checkpoint,
)

logger = logging.getLogger(__name__)


def checkpoint_store(directory: str | os.PathLike) -> CheckpointStore:
    """The store that keeps each run configuration's checkpoints in ``directory``."""
    return functools.partial(RunCheckpoints, directory)


class RunCheckpoints:
    """The checkpoints of one run configuration; a context manager (closes orbax).

    Args:
        directory: the checkpoint directory given to the run (created if missing).
        config_hash: :func:`bnstudy.core.checkpoint.fingerprint` of the run.
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
        arrays, meta = packed_checkpoint(done, state, record, extra, self.config_hash)
        self._manager.save(done, force=True, args=ocp.args.Composite(
            arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)))
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
        checkpoint = unpacked_checkpoint(restored["arrays"] or {}, restored["meta"],
                                         state_template, self.config_hash)
        logger.info("resuming from the checkpoint after step %d in %s", step, self.directory)
        return checkpoint
