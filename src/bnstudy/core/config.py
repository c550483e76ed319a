"""Frozen configuration dataclasses for the bnstudy core.

Every default of the study lives here, once. YAML parameters reach the core through the
``from_dict`` constructors, which reject unknown keys so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

NORMALIZATIONS = ("none", "batch")
MEASUREMENT_MODES = ("train", "eval")
PROBE_STARTS = ("pre_step", "post_step")
MATMUL_PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")
PARAM_DTYPES = ("float32", "float64")
STEP_LOOPS = ("auto", "scan", "host")


def _from_dict(cls: type, values: Mapping[str, Any]):
    """Build a config dataclass from a plain mapping, rejecting unknown keys."""
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{cls.__name__}.from_dict expects a mapping of field names to values, "
            f"got {type(values).__name__}; pass e.g. {{'{dataclasses.fields(cls)[0].name}': ...}}"
        )
    known = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} key(s) {unknown}; valid keys are {sorted(known)}. "
            "Fix the spelling in your parameters file or remove the key."
        )
    converted = {}
    for key, value in values.items():
        # YAML gives lists; configs hold tuples so that they stay hashable (compile caches).
        converted[key] = tuple(value) if isinstance(value, list) else value
    return cls(**converted)


def _check_choice(owner: str, name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {list(choices)}, got {value!r}")


def _check_positive(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of the VGG pair. The defaults are the paper's network.

    Hidden widths (conv and dense) are multiplied by ``width_multiplier`` and rounded, never
    below 1; the output layer always has ``num_classes`` units.
    """

    # "none" builds the baseline, "batch" adds BatchNorm after every conv (before the ReLU).
    normalization: str = "batch"
    # Output channels of each 3x3 SAME conv (with bias), before the width multiplier.
    conv_features: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 512, 512, 512, 512)
    # 0-based indices of the convs followed by a 2x2 stride-2 max-pool.
    pool_after: tuple[int, ...] = (1, 3, 5, 7, 9)
    # Hidden dense layers fc1, fc2, ... (before the width multiplier); "out" follows them.
    dense_features: tuple[int, ...] = (96, 96)
    # Units of the output layer "out".
    num_classes: int = 10
    # Scales every hidden width; 0.125 gives the CPU-sized network.
    width_multiplier: float = 1.0
    # Running statistics update: running = momentum * running + (1 - momentum) * batch.
    bn_momentum: float = 0.9
    # Added to the variance inside BatchNorm.
    bn_epsilon: float = 1e-5
    # Height and width of the (square) input images.
    image_size: int = 32
    # Channels of the input images.
    in_channels: int = 3
    # Parameter dtype; "float64" needs jax_enable_x64 (used by the numerical tests).
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        owner = "ModelConfig"
        _check_choice(owner, "normalization", self.normalization, NORMALIZATIONS)
        _check_choice(owner, "param_dtype", self.param_dtype, PARAM_DTYPES)
        if len(self.conv_features) < 1:
            raise ValueError("ModelConfig.conv_features must list at least one conv width")
        for name in ("conv_features", "dense_features"):
            for width in getattr(self, name):
                _check_positive(owner, name, width)
        for name in ("num_classes", "image_size", "in_channels"):
            _check_positive(owner, name, getattr(self, name))
        if not self.width_multiplier > 0:
            raise ValueError(
                f"ModelConfig.width_multiplier must be > 0, got {self.width_multiplier!r}"
            )
        bad_pools = [i for i in self.pool_after if not 0 <= i < len(self.conv_features)]
        if bad_pools or len(set(self.pool_after)) != len(self.pool_after):
            raise ValueError(
                f"ModelConfig.pool_after must hold distinct conv indices in "
                f"[0, {len(self.conv_features) - 1}], got {list(self.pool_after)}"
            )
        if self.image_size % (2 ** len(self.pool_after)) != 0:
            raise ValueError(
                f"ModelConfig.image_size {self.image_size} is not divisible by "
                f"2**{len(self.pool_after)} (one halving per pool); use fewer pools or "
                "a larger image"
            )
        if not 0.0 <= self.bn_momentum < 1.0:
            raise ValueError(f"ModelConfig.bn_momentum must be in [0, 1), got {self.bn_momentum}")
        if not self.bn_epsilon > 0:
            raise ValueError(f"ModelConfig.bn_epsilon must be > 0, got {self.bn_epsilon}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Build from a plain dict (YAML parameters); unknown keys raise ValueError."""
        return _from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (lists instead of tuples), the inverse of ``from_dict``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def scaled(self, width: int) -> int:
        """A hidden width after the width multiplier (rounded, at least 1)."""
        return max(1, int(round(width * self.width_multiplier)))

    @property
    def conv_widths(self) -> tuple[int, ...]:
        """Channels of each conv after the width multiplier."""
        return tuple(self.scaled(w) for w in self.conv_features)

    @property
    def dense_widths(self) -> tuple[int, ...]:
        """Units of each hidden dense layer after the width multiplier."""
        return tuple(self.scaled(w) for w in self.dense_features)

    @property
    def flat_features(self) -> int:
        """Length of the flattened conv output that feeds fc1."""
        side = self.image_size // (2 ** len(self.pool_after))
        return side * side * self.conv_widths[-1]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data order, evaluation and snapshot cadence. Defaults: the paper run."""

    # Seed of everything random: init key = fold_in(key(seed), 0), shuffling = fold_in(.., 1).
    seed: int = 1337
    # Seeds trained together on a leading seed axis of the state; () trains ``seed`` alone.
    # Seed k of a multi-seed run equals the single-seed run with seed k.
    seeds: tuple[int, ...] = ()
    # SGD learning rate eta (also the unit of the probe step sizes s).
    learning_rate: float = 0.035
    # SGD momentum (optax.sgd trace, no dampening).
    momentum: float = 0.9
    # Nesterov momentum; the study uses plain heavy-ball momentum.
    nesterov: bool = False
    # Training batch size; the last partial batch of each epoch is dropped (static shapes).
    batch_size: int = 128
    # Passes over the training set, reshuffled each epoch from the seed.
    epochs: int = 39
    # Optional cap on the number of steps (None: epochs * floor(N / batch_size)).
    max_steps: int | None = None
    # Test-set evaluation after every this many completed steps (also at 0 and at the end).
    eval_every: int = 200
    # Batch size of the test-set evaluation (the last partial batch is masked, not dropped).
    eval_batch_size: int = 1000
    # Activation statistics and distance-from-init snapshots at steps t % snapshot_every == 0.
    snapshot_every: int = 200
    # Fixed-edge histogram of the activations: number of bins ...
    histogram_bins: int = 200
    # ... and the range they cover; values outside go to underflow / overflow counts.
    histogram_range: tuple[float, float] = (-20.0, 20.0)
    # Steps per compiled chunk (one host transfer per chunk); must divide eval_every.
    steps_per_chunk: int = 200
    # jax.default_matmul_precision around every compiled call ("highest": true float32).
    matmul_precision: str = "highest"
    # How steps of a chunk run: "scan" (one lax.scan program per chunk), "host" (one
    # compiled step per dispatch, asynchronously, results still fetched once per chunk) or
    # "auto" ("host" on CPU, where XLA runs convolutions inside loops ~8x slower, else "scan").
    # "scan" also vmaps the seed axis (one program for all seeds, shardable over devices);
    # "host" runs the seeds one after another (XLA:CPU's vmapped convolutions are slower).
    step_loop: str = "auto"

    def __post_init__(self) -> None:
        owner = "TrainConfig"
        for name in ("batch_size", "epochs", "eval_every", "eval_batch_size", "snapshot_every",
                     "histogram_bins", "steps_per_chunk"):
            _check_positive(owner, name, getattr(self, name))
        if self.max_steps is not None:
            _check_positive(owner, "max_steps", self.max_steps)
        if len(set(self.seeds)) != len(self.seeds) or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in self.seeds):
            raise ValueError(f"TrainConfig.seeds must be distinct integers, got {self.seeds!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"TrainConfig.momentum must be in [0, 1), got {self.momentum}")
        _check_choice(owner, "matmul_precision", self.matmul_precision, MATMUL_PRECISIONS)
        _check_choice(owner, "step_loop", self.step_loop, STEP_LOOPS)
        if len(self.histogram_range) != 2 or not self.histogram_range[0] < self.histogram_range[1]:
            raise ValueError(
                f"TrainConfig.histogram_range must be (low, high) with low < high, "
                f"got {self.histogram_range!r}"
            )
        if self.eval_every % self.steps_per_chunk != 0:
            raise ValueError(
                f"TrainConfig.steps_per_chunk ({self.steps_per_chunk}) must divide eval_every "
                f"({self.eval_every}) so evaluations fall on chunk boundaries; e.g. set "
                f"steps_per_chunk to {self.eval_every}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a plain dict (YAML parameters); unknown keys raise ValueError."""
        return _from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (lists instead of tuples), the inverse of ``from_dict``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def seed_list(self) -> tuple[int, ...]:
        """The seeds of the run: ``seeds``, or ``(seed,)`` when it is empty."""
        return tuple(int(s) for s in self.seeds) or (self.seed,)

    def resolved_step_loop(self, backend: str) -> str:
        """``step_loop`` with "auto" resolved for a JAX backend ("host" on CPU)."""
        if self.step_loop != "auto":
            return self.step_loop
        return "host" if backend == "cpu" else "scan"

    def steps_per_epoch(self, num_train: int) -> int:
        """Full batches per epoch for a training set of ``num_train`` examples."""
        steps = num_train // self.batch_size
        if steps < 1:
            raise ValueError(
                f"the training set has {num_train} examples, fewer than one batch of "
                f"{self.batch_size}; lower TrainConfig.batch_size"
            )
        return steps

    def total_steps(self, num_train: int) -> int:
        """Steps of the whole run: epochs * steps_per_epoch, capped by max_steps."""
        steps = self.epochs * self.steps_per_epoch(num_train)
        return steps if self.max_steps is None else min(steps, self.max_steps)


@dataclasses.dataclass(frozen=True)
class MeasurementConfig:
    """One protocol for the per-step measurements 1-4 (ICS, loss landscape, gradient
    predictiveness, effective beta-smoothness). See docs/measurements.md."""

    # Key of this protocol in TrainingResult.measurements.
    name: str = "paper"
    # G' with batch statistics ("train") or with the running statistics S_t ("eval").
    ics_mode: str = "train"
    # Probe origin W_start: W_t ("pre_step") or W_{t+1} ("post_step").
    probe_start: str = "pre_step"
    # Probe forward passes with batch statistics ("train") or the start point's running ones.
    probe_mode: str = "train"
    # Probe step sizes s = arange(probe_min, probe_max, probe_step), in units of lr * g_t ...
    probe_min: float = 0.5
    # ... top excluded ...
    probe_max: float = 4.2
    # ... and spacing.
    probe_step: float = 0.3
    # Measure at steps t with t % measure_every == 0.
    measure_every: int = 1

    def __post_init__(self) -> None:
        owner = "MeasurementConfig"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"MeasurementConfig.name must be a non-empty string, got {self.name!r}")
        _check_choice(owner, "ics_mode", self.ics_mode, MEASUREMENT_MODES)
        _check_choice(owner, "probe_start", self.probe_start, PROBE_STARTS)
        _check_choice(owner, "probe_mode", self.probe_mode, MEASUREMENT_MODES)
        _check_positive(owner, "measure_every", self.measure_every)
        if not self.probe_step > 0:
            raise ValueError(f"MeasurementConfig.probe_step must be > 0, got {self.probe_step}")
        if len(self.probe_s) == 0:
            raise ValueError(
                f"MeasurementConfig probe range arange({self.probe_min}, {self.probe_max}, "
                f"{self.probe_step}) is empty; make probe_max larger than probe_min"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MeasurementConfig:
        """Build from a plain dict (YAML parameters); unknown keys raise ValueError.

        ``{"preset": "blog", ...}`` starts from a named preset and overrides its fields.
        """
        values = dict(values)
        preset = values.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown measurement preset {preset!r}; choose from {sorted(PRESETS)}")
            values = {**dataclasses.asdict(PRESETS[preset]), **values}
        return _from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view, the inverse of ``from_dict``."""
        return dataclasses.asdict(self)

    @property
    def probe_s(self) -> tuple[float, ...]:
        """The probe step sizes s, numpy.arange(probe_min, probe_max, probe_step)."""
        return tuple(float(s) for s in np.arange(self.probe_min, self.probe_max, self.probe_step))


PRESETS: dict[str, MeasurementConfig] = {
    # Reproduces the blog's deepkit code: ICS against the running statistics S_t, probes from
    # the updated weights in eval mode, s = 0.5, 2.5, ..., 18.5 (0.0175 .. 0.6475 x gradient).
    "blog": MeasurementConfig(
        name="blog", ics_mode="eval", probe_start="post_step", probe_mode="eval",
        probe_min=0.5, probe_max=20.0, probe_step=2.0,
    ),
    # Santurkar et al. 2018: everything in train mode from W_t, s = 0.5, 0.8, ..., 4.1.
    "paper": MeasurementConfig(
        name="paper", ics_mode="train", probe_start="pre_step", probe_mode="train",
        probe_min=0.5, probe_max=4.2, probe_step=0.3,
    ),
}

# A network small enough for unit tests: 3 convs of width 4-8 on 8x8 images.
TINY_MODEL_CONFIG = ModelConfig(
    conv_features=(4, 8, 8), pool_after=(0, 2), dense_features=(8, 8), image_size=8,
)
# A handful of steps in chunks of 4 on a tiny data set, on the host loop (its small
# programs compile in seconds and are shared by every test of the same configuration).
TINY_TRAIN_CONFIG = TrainConfig(
    batch_size=8, epochs=2, eval_every=4, eval_batch_size=16, snapshot_every=3,
    histogram_bins=10, histogram_range=(-3.0, 3.0), steps_per_chunk=4, step_loop="host",
)
