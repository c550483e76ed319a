"""Checkpoint cost: the packed format that bnstudy writes against orbax's own pytree format.

A short training of the study's candidate (BN) model of ``--config`` (the cpu config: its
width, its 3 stacked seeds, both measurement protocols every step) runs with a checkpoint after
every chunk. Each save is written twice, in alternating order, from the same host arrays:

* packed: :class:`bnstudy.reliability.checkpoints.RunCheckpoints` (what ``kedro run`` uses): the
  state's and the record's leaves packed into one uint8 array each, with their specs and the
  SHA-256 (:func:`bnstudy.core.checkpoint.packed_checkpoint`), saved by an orbax
  ``CheckpointManager``;
* pytree: the same ``CheckpointManager`` options saving the state and the record as orbax
  pytrees (``StandardSave``, one tensorstore array per leaf, which is what sharded arrays
  need; the non-empty leaves as lists, since the record's keys hold '/' and orbax refuses
  zero-size arrays), and the same JSON ``extra``.

Then the newest checkpoint is restored in both formats, ``--repeats`` times. Printed: the
median save and restore seconds of each format, their ratio, the arrays and bytes on disk.
The data are synthetic (the cost depends on shapes only).

    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/bench_checkpoints.py --config cpu --chunks 4
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from bench_training import synthetic_data  # noqa: E402
from study_config import study_configs  # noqa: E402

from bnstudy.core import train_seeds  # noqa: E402
from bnstudy.reliability.checkpoints import RunCheckpoints  # noqa: E402


def _leaves(tree) -> list[np.ndarray]:
    """The non-empty leaves of a pytree, as orbax saves them: one tensorstore array each (the
    record's keys hold '/', leaf names, which orbax would take as folders, and it refuses
    zero-size arrays)."""
    return [np.asarray(leaf) for leaf in jax.tree.leaves(dict(tree) if isinstance(tree, dict) else tree)
            if np.asarray(leaf).size]


class PytreeCheckpoints:
    """orbax's own pytree checkpoints of the state and the record (no packing, no checksum)."""

    def __init__(self, directory: Path):
        options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(directory, options=options)

    def save(self, done, state, record, extra) -> None:
        self._manager.save(done, force=True, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_leaves(state)), record=ocp.args.StandardSave(_leaves(record)),
            meta=ocp.args.JsonSave(dict(extra))))

    def restore(self, state_template):
        step = self._manager.latest_step()
        return self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), record=ocp.args.StandardRestore(),
            meta=ocp.args.JsonRestore()))

    def close(self) -> None:
        self._manager.close()


class BothFormats:
    """The Checkpointer the training loop sees: every save in both formats, timed."""

    def __init__(self, root: Path):
        self.packed = RunCheckpoints(root / "packed", "0" * 64)
        self.pytree = PytreeCheckpoints(root / "pytree")
        self.times: dict[str, list[float]] = {"packed": [], "pytree": []}
        self.last = None

    def save(self, done, state, record, extra) -> None:
        order = ("packed", "pytree") if len(self.times["packed"]) % 2 == 0 else ("pytree", "packed")
        for name in order:
            started = time.perf_counter()
            getattr(self, name).save(done, state, record, extra)
            self.times[name].append(time.perf_counter() - started)
        self.last = state

    def restore(self, state_template):
        return None  # always train: the saves are what is measured

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.packed.__exit__(*exc_info)
        self.pytree.close()


def on_disk(folder: Path) -> tuple[int, int]:
    """(files, bytes) under ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cpu", help="conf/<config>/globals.yml")
    parser.add_argument("--chunks", type=int, default=4, help="chunks trained (one save after each)")
    parser.add_argument("--repeats", type=int, default=5, help="restores of each format")
    args = parser.parse_args()
    model_config, train_config, presets = study_configs(args.config, normalization="batch")
    train_config = dataclasses.replace(train_config, max_steps=args.chunks * train_config.steps_per_chunk)
    x, y = synthetic_data(model_config, 2048)
    x_test, y_test = synthetic_data(model_config, 256, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        both = BothFormats(Path(tmp))
        train_seeds(model_config, train_config, presets, x, y, x_test, y_test,
                    checkpoints=lambda config_hash: both, checkpoint_every_s=0.0)
        restores: dict[str, list[float]] = {"packed": [], "pytree": []}
        for _ in range(args.repeats):
            for name, times in restores.items():
                started = time.perf_counter()
                restored = getattr(both, name).restore(both.last)
                times.append(time.perf_counter() - started)
                assert restored is not None, name
        print(f"{args.config}: {len(train_config.runs)} runs, {train_config.max_steps} steps, "
              f"{len(both.times['packed'])} saves; {len(jax.tree.leaves(both.last))} state leaves")
        print(f"{'format':8s} {'save s':>8s} {'restore s':>10s} {'files':>6s} {'MB':>8s}")
        for name in ("packed", "pytree"):
            files, size = on_disk(Path(tmp) / name)
            print(f"{name:8s} {statistics.median(both.times[name]):8.3f} "
                  f"{statistics.median(restores[name]):10.3f} {files:6d} {size / 1e6:8.2f}")
        ratio = statistics.median(both.times["pytree"]) / statistics.median(both.times["packed"])
        print(f"pytree / packed save time (medians): {ratio:.2f}x")


if __name__ == "__main__":
    main()
