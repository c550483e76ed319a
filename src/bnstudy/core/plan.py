"""The measurement plan: the one place that decides what is measured at which step.

Built once from the configuration and the run length. The executor asks it what is due at
a step; the driver asks it for the chunks, which chunk the curvature is measured before and
when the test set is evaluated; the result collection asks it which steps carry each
preset's measurements. Nothing else reads ``measure_every``, ``snapshot_every``,
``eval_every`` or ``curvature_every``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from bnstudy.core.config import MeasurementConfig, ModelConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class Computation:
    """One distinct measurement computation; presets whose inputs coincide share it.

    Attributes:
        name: output key ("ics_train", "ics_eval", "probe_0", ...).
        kind: "ics" or "probe".
        train: BN with batch statistics (True) or running statistics (False).
        probe_start: "pre_step" (W_t) or "post_step" (W_{t+1}); None for ICS.
        probe_s: the probe step sizes; () for ICS.
    """

    name: str
    kind: str
    train: bool
    probe_start: str | None = None
    probe_s: tuple[float, ...] = ()


def _ics_train(config: MeasurementConfig, model_config: ModelConfig) -> bool:
    # Only for `none` are train and eval mode the same function: compute it once. `noisy`
    # (no BN) draws Algorithm 1's noise in train mode only, so its modes differ as BN's do.
    return model_config.normalization == "none" or config.ics_mode == "train"


def _probe_train(config: MeasurementConfig, model_config: ModelConfig) -> bool:
    return model_config.normalization == "none" or config.probe_mode == "train"


class Chunk(NamedTuple):
    """Steps first..stop-1, run as one program (scan) or one transfer (host).

    Attributes:
        first, stop: the chunk's steps.
        curvature: whether the curvature is measured at W_first, before the chunk.
    """

    first: int
    stop: int
    curvature: bool


@dataclasses.dataclass(frozen=True)
class MeasurementPlan:
    """What runs at which step of one run.

    Attributes:
        computations: the distinct computations, in a fixed order.
        presets: the measurement configs, in the order given.
        total_steps: T, steps of the run.
        snapshot_every, eval_every, steps_per_chunk: cadences (from the TrainConfig).
        snapshots: whether activation snapshots are recorded at all.
        curvature_every: the curvature's cadence, a multiple of steps_per_chunk (the
            TrainConfig checks it), so each curvature step starts a chunk; None: never.
    """

    computations: tuple[Computation, ...]
    presets: tuple[MeasurementConfig, ...]
    total_steps: int
    snapshot_every: int
    eval_every: int
    steps_per_chunk: int
    snapshots: bool = True
    curvature_every: int | None = None

    @classmethod
    def build(cls, model_config: ModelConfig, train_config: TrainConfig,
              presets: Sequence[MeasurementConfig], total_steps: int, *,
              snapshots: bool = True) -> MeasurementPlan:
        """The plan of a run of ``total_steps`` steps measured with ``presets``."""
        names = [preset.name for preset in presets]
        if len(set(names)) != len(names):
            raise ValueError(f"measurement config names must be unique, got {names}; give "
                             "each MeasurementConfig its own name")
        ics = sorted({_ics_train(p, model_config) for p in presets}, reverse=True)
        probes = sorted({(p.probe_start, _probe_train(p, model_config), p.probe_s)
                         for p in presets})
        computations = [Computation(f"ics_{'train' if train else 'eval'}", "ics", train)
                        for train in ics]
        computations += [Computation(f"probe_{i}", "probe", train, start, s_values)
                         for i, (start, train, s_values) in enumerate(probes)]
        return cls(tuple(computations), tuple(presets), total_steps,
                   train_config.snapshot_every, train_config.eval_every,
                   train_config.steps_per_chunk, snapshots, train_config.curvature_every)

    def ics_of(self, preset: MeasurementConfig, model_config: ModelConfig) -> Computation:
        """The ICS computation a preset reads."""
        train = _ics_train(preset, model_config)
        return next(c for c in self.computations if c.kind == "ics" and c.train == train)

    def probe_of(self, preset: MeasurementConfig, model_config: ModelConfig) -> Computation:
        """The probe computation a preset reads."""
        key = (preset.probe_start, _probe_train(preset, model_config), preset.probe_s)
        return next(c for c in self.computations
                    if c.kind == "probe" and (c.probe_start, c.train, c.probe_s) == key)

    def _users(self, computation: Computation, model_config: ModelConfig):
        return [p for p in self.presets
                if computation in (self.ics_of(p, model_config), self.probe_of(p, model_config))]

    def due_mask(self, steps: np.ndarray, model_config: ModelConfig) -> np.ndarray:
        """[len(steps), len(computations)] bool: computation c runs at step t when any
        preset that reads it is due (t % measure_every == 0)."""
        steps = np.asarray(steps)
        columns = [np.zeros(steps.shape, bool) for _ in self.computations]
        for index, computation in enumerate(self.computations):
            for preset in self._users(computation, model_config):
                columns[index] |= steps % preset.measure_every == 0
        return np.stack(columns, axis=-1) if columns else np.zeros((steps.size, 0), bool)

    def measured_steps(self, preset: MeasurementConfig) -> np.ndarray:
        """[M] the steps that carry ``preset``'s measurements."""
        return np.arange(0, self.total_steps, preset.measure_every)

    def snapshot_mask(self, steps: np.ndarray) -> np.ndarray:
        """[len(steps)] bool: activation snapshot (and distance from init) due."""
        return self.snapshots & (np.asarray(steps) % self.snapshot_every == 0)

    def snapshot_steps(self) -> np.ndarray:
        """[K] the snapshot steps."""
        return np.arange(0, self.total_steps, self.snapshot_every) if self.snapshots else \
            np.zeros(0, int)

    def eval_steps(self) -> list[int]:
        """Completed-step counts at which the test set is evaluated: 0, every eval_every,
        and the end."""
        steps = list(range(0, self.total_steps, self.eval_every))
        return [*steps, self.total_steps] if steps[-1] != self.total_steps else steps

    def chunks(self, start: int = 0) -> list[Chunk]:
        """The chunks from ``start`` (0 or the end of a chunk): one host transfer each,
        and whether the curvature is measured before each."""
        bounds = list(range(start, self.total_steps, self.steps_per_chunk))
        return [Chunk(first, min(first + self.steps_per_chunk, self.total_steps),
                      self.curvature_every is not None and first % self.curvature_every == 0)
                for first in bounds]

    def curvature_steps(self) -> np.ndarray:
        """[C] the steps t whose W_t the curvature is measured at (empty without curvature)."""
        if self.curvature_every is None:
            return np.zeros(0, int)
        return np.arange(0, self.total_steps, self.curvature_every)

    def is_measured(self) -> bool:
        """Whether anything is measured (otherwise every step is a plain step)."""
        return bool(self.computations) or self.snapshots
