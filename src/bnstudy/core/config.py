"""Configuration of the bnstudy core: three frozen pydantic dataclasses.

Every default of the core lives here, once, with its description: the study's YAML
(conf/base/globals.yml) states only what it sets otherwise, never a key at its default
(docs/configuration.md, "Where each value is written"; a test checks it). The configuration
reference (docs/configuration.md) is generated from these classes. Types are strict (text is
never read as a number, ``True`` is not an integer) and unknown keys are refused, so a typo
never silently falls back to a default. YAML parameters reach the core through the
``from_dict`` constructors, whose errors (:class:`ConfigError`) name the field, the value and
what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, Strict
from pydantic.dataclasses import dataclass

from bnstudy.core.validation import (  # re-exported: bnstudy.parameters uses them
    STRICT,
    ConfigError,
    Float,
    Int,
    Ints,
    PositiveInt,
    PositiveInts,
    _from_dict,
    _plain,
    described,
)

FAMILIES = ("vgg", "dln")
NORMALIZATIONS = ("none", "batch", "batch_noisy", "noisy", "l1", "l2", "linf")
MEASUREMENT_MODES = ("train", "eval")
PROBE_STARTS = ("pre_step", "post_step")
MATMUL_PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")
PARAM_DTYPES = ("float32", "float64")
STEP_LOOPS = ("auto", "scan", "host")


@dataclass(frozen=True, config=STRICT)
class ModelConfig:
    """Architecture of a model: the paper's VGG (the defaults: its network) or its deep
    linear network (``family: dln``, Santurkar et al. 2018, Appendix A.1).

    VGG: hidden widths (conv and dense) are multiplied by ``width_multiplier`` and rounded,
    never below 1; the output layer always has ``num_classes`` units. DLN: ``depth`` square
    linear maps of ``width`` units without bias, the normalization after every one but the
    last, no non-linearity; the VGG's fields (convs, dense layers, images) do not apply.
    """

    family: described(Literal[FAMILIES], (
        "`vgg`: the VGG on images (cross-entropy on class labels); `dln`: the deep linear "
        "network on vectors (the l2 loss, the mean over samples of the squared error "
        "||W_k...W_1 x - y||^2, against targets y = A x).")) = "vgg"
    depth: described(PositiveInt, (
        "`dln`: its number of linear layers k (linear_0 .. linear_{k-1}).")) = 25
    width: described(PositiveInt, (
        "`dln`: the width of every layer: inputs, hidden units and outputs.")) = 10
    normalization: described(Literal[NORMALIZATIONS], (
        "`none` builds the baseline, `batch` adds BatchNorm after every conv (before the "
        "ReLU; in the DLN after every linear layer but the last, over the full batch), `batch_noisy` adds BatchNorm followed by the random per-step shift and scale "
        "of Santurkar et al.'s Algorithm 1 (in training mode only; see the `noise_*` fields), "
        "`noisy` is no normalization with Algorithm 1's noise after every conv, before the "
        "ReLU, in training mode only (the paper's control: the noise without BN), "
        "`l1`, `l2`, `linf` replace BatchNorm by mean-centred normalization by the "
        "per-channel average L1 norm, root-mean-square (L2) or largest absolute value "
        "(L-infinity) over the batch (the paper's section 3.3).")) = "batch"
    conv_features: described(PositiveInts, (
        "Output channels of each 3x3 SAME conv (with bias), before the width multiplier.")) = (
        64, 64, 128, 128, 256, 256, 512, 512, 512, 512)
    pool_after: described(Ints, (
        "0-based indices of the convs followed by a 2x2 stride-2 max-pool.")) = (1, 3, 5, 7, 9)
    dense_features: described(PositiveInts, (
        "Hidden dense layers fc1, fc2, ... (before the width multiplier); `out` follows "
        "them.")) = (96, 96)
    num_classes: described(PositiveInt, "Units of the output layer `out`.") = 10
    width_multiplier: described(Annotated[Float, Field(gt=0)], (
        "Scales every hidden width; 0.125 gives the CPU-sized network.")) = 1.0
    bn_momentum: described(Annotated[Float, Field(ge=0, lt=1)], (
        "Running statistics update: running = momentum * running + (1 - momentum) * "
        "batch.")) = 0.9
    bn_epsilon: described(Annotated[Float, Field(gt=0)], (
        "Added to the variance inside BatchNorm (to the norm in the `l1`/`l2`/`linf` "
        "normalizations).")) = 1e-5
    noise_mean_range: described(Annotated[Float, Field(ge=0)], (
        "`batch_noisy`, `noisy`: each step, each channel of each conv draws mu ~ U(-r, r) "
        "with this r.")) = 0.5
    noise_std_range: described(Annotated[tuple[Float, Float], Strict(False)], (
        "`batch_noisy`, `noisy`: each step and channel draws sigma ~ U(low, high).")) = (1.0, 1.25)
    noise_mean_jitter: described(Annotated[Float, Field(ge=0)], (
        "`batch_noisy`, `noisy`: each example and channel draws m ~ U(mu - j, mu + j) with "
        "this j.")) = 0.1
    noise_std_jitter: described(Annotated[Float, Field(ge=0)], (
        "`batch_noisy`, `noisy`: each example and channel draws s ~ N(sigma, j^2) with this "
        "j; the BN output (`noisy`: the conv output) a becomes s * a + m.")) = 0.1
    image_size: described(PositiveInt, "Height and width of the (square) input images.") = 32
    in_channels: described(PositiveInt, "Channels of the input images.") = 3
    param_dtype: described(Literal[PARAM_DTYPES], (
        "Parameter dtype; `float64` needs jax_enable_x64 (used by the numerical tests).")) = "float32"

    def __post_init__(self) -> None:
        if len(self.conv_features) < 1:
            raise ValueError("ModelConfig.conv_features must list at least one conv width")
        bad_pools = [i for i in self.pool_after if not 0 <= i < len(self.conv_features)]
        if bad_pools or len(set(self.pool_after)) != len(self.pool_after):
            raise ValueError(
                f"ModelConfig.pool_after must hold distinct conv indices in "
                f"[0, {len(self.conv_features) - 1}] (one per conv), got {list(self.pool_after)}"
            )
        if not self.noise_std_range[0] <= self.noise_std_range[1]:
            raise ValueError(
                f"ModelConfig.noise_std_range must be (low, high) with low <= high, got "
                f"{self.noise_std_range!r}"
            )
        if self.image_size % (2 ** len(self.pool_after)) != 0:
            raise ValueError(
                f"ModelConfig.image_size {self.image_size} is not divisible by "
                f"2**{len(self.pool_after)} (one halving per pool); use fewer pools or "
                "a larger image"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Build from a plain dict (YAML parameters); errors are :class:`ConfigError`."""
        return _from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (lists instead of tuples), the inverse of ``from_dict``."""
        return _plain(self)

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


@dataclass(frozen=True, config=STRICT)
class TrainConfig:
    """Optimisation, data order, evaluation and snapshot cadence. Defaults: the paper-scale
    run, with the blog's optimizer (SGD, momentum 0.9, lr 0.035), not the paper's (plain SGD,
    lr 0.1).

    The measurement protocols (:class:`MeasurementConfig`) say how a quantity is measured, not
    how the models are trained: the ``paper`` protocol measures whichever optimizer is set here.
    """

    seed: described(Int, (
        "Seed of everything random: init key = fold_in(key(seed), 0), shuffling = "
        "fold_in(.., 1).")) = 1337
    seeds: described(Ints, (
        "Seeds trained together on the leading run axis of the state (each with every "
        "learning rate); [] trains `seed` alone. Seed k of a multi-seed run equals the "
        "single-seed run with seed k.")) = ()
    learning_rate: described(Annotated[Float, Field(gt=0)], (
        "SGD learning rate eta (also the unit of the probe step sizes s); not used when "
        "`learning_rates` is set.")) = 0.035
    learning_rates: described(Annotated[tuple[Float, ...], Strict(False)] | None, (
        "A learning-rate sweep: every seed trains with each of these rates, seeds x rates as "
        "one stacked run (the learning rate is a leaf of the training state, so one compiled "
        "program serves them all); it replaces `learning_rate`. null: `learning_rate` "
        "alone. Each (seed, rate) pair equals the single run with that seed and "
        "rate.")) = None
    momentum: described(Annotated[Float, Field(ge=0, lt=1)], (
        "SGD momentum (optax.sgd trace, no dampening).")) = 0.9
    nesterov: described(Annotated[bool, Strict()], (
        "Nesterov momentum; the study uses plain heavy-ball momentum.")) = False
    batch_size: described(PositiveInt, (
        "Training batch size; the last partial batch of each epoch is dropped (static "
        "shapes).")) = 128
    moment_set: described(Annotated[bool, Strict()], (
        "Deep linear network, full batch only: train and measure on the 2r points with the "
        "training set's mean and covariance (bnstudy.core.moments), the same loss at every "
        "parameter in exact arithmetic and about a tenth of the work; the activation snapshots "
        "stay on the samples. Refused where it is not exact (l1, linf, noise, minibatches).")) = False
    epochs: described(PositiveInt, "Passes over the training set, reshuffled each epoch from the seed.") = 39
    max_steps: described(PositiveInt | None, (
        "Optional cap on the number of steps (null: epochs * floor(N / batch_size)).")) = None
    eval_every: described(PositiveInt, (
        "Test-set evaluation after every this many completed steps (also at 0 and at the "
        "end).")) = 200
    eval_batch_size: described(PositiveInt, (
        "Batch size of the test-set evaluation (the last partial batch is masked, not "
        "dropped).")) = 1000
    snapshot_every: described(PositiveInt, (
        "Activation statistics and distance-from-init snapshots at steps t % snapshot_every "
        "== 0.")) = 200
    histogram_bins: described(PositiveInt, "Bins of the fixed-edge activation histograms.") = 200
    histogram_range: described(Annotated[tuple[Float, Float], Strict(False)], (
        "Range [low, high] the histogram bins cover; values outside go to underflow / overflow "
        "counts.")) = (-20.0, 20.0)
    steps_per_chunk: described(PositiveInt, (
        "Steps per compiled chunk (one host transfer per chunk); must divide eval_every.")) = 200
    matmul_precision: described(Literal[MATMUL_PRECISIONS], (
        "jax.default_matmul_precision around every compiled call (`highest`: true "
        "float32).")) = "highest"
    curvature_every: described(PositiveInt | None, (
        "Curvature (top Hessian eigenvalue on the probe set and batch sharpness on the step's "
        "own batch) at steps t % curvature_every == 0, before step t; a multiple of "
        "steps_per_chunk. null: never.")) = None
    curvature_probe_size: described(PositiveInt, (
        "Training examples of the fixed probe set of the top Hessian eigenvalue (the same "
        "examples for every seed and model); a multiple of batch_size. The loss on it is the "
        "mean train-mode loss of its batches of batch_size, as training sees them.")) = 4096
    curvature_rtol: described(Annotated[Float, Field(gt=0, lt=1)], (
        "Power iteration stops when the Rayleigh quotient changes by at most this fraction "
        "of itself between two iterations.")) = 1e-3
    curvature_max_iters: described(PositiveInt, (
        "Power iterations at most (a measurement that has not met curvature_rtol by then is "
        "marked unconverged).")) = 100
    curvature_trace_samples: described(Annotated[Int, Field(ge=0)], (
        "Rademacher vectors of Hutchinson's estimate of the trace of the probe-set Hessian at "
        "each curvature measurement (one Hessian-vector product each; its standard error is "
        "recorded too). 0: no trace.")) = 0
    curvature_group: described(PositiveInt, (
        "Probe-set batches vmapped into one Hessian-vector-product program (memory against "
        "dispatches).")) = 8
    step_loop: described(Literal[STEP_LOOPS], (
        "How steps of a chunk run: `scan` (one lax.scan program per chunk, runs vmapped, "
        "shardable over devices), `host` (small compiled programs dispatched from the host, "
        "results still fetched once per chunk) or `auto` (`host` for the VGG on CPU, where "
        "XLA runs convolutions inside loops slowly, else `scan`).")) = "auto"

    devices: described(Annotated[Int, Field(ge=0)] | None, (
        "Shard the run axis (seeds x learning rates) over this many of the process's local "
        "devices (`jax.local_devices()`, a 1-D mesh `run`); 0: all of them; null: no mesh, "
        "the default device. The number of runs must divide by it. A sharded run equals the "
        "unsharded one to rounding (rtol 1e-5) and resumes from its checkpoints.")) = None

    def __post_init__(self) -> None:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"TrainConfig.seeds must be distinct integers, got {self.seeds!r}")
        runs = len(self.seed_list) * len(self.learning_rate_list)
        if self.devices and runs % self.devices:
            raise ValueError(
                f"TrainConfig.devices ({self.devices}) must divide the number of runs, "
                f"{runs} (seeds x learning rates), so each device holds as many runs; e.g. set "
                f"devices to one of {[d for d in range(1, runs + 1) if runs % d == 0]}")
        if self.learning_rates is not None:
            self._check_learning_rates(self.learning_rates)
        if not self.histogram_range[0] < self.histogram_range[1]:
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

        if self.curvature_every is not None and self.curvature_every % self.steps_per_chunk:
            raise ValueError(
                f"TrainConfig.curvature_every ({self.curvature_every}) must be a multiple of "
                f"steps_per_chunk ({self.steps_per_chunk}) so curvature falls on chunk "
                "boundaries; e.g. set curvature_every to "
                f"{max(1, round(self.curvature_every / self.steps_per_chunk)) * self.steps_per_chunk}")
        if self.curvature_every is not None and self.curvature_probe_size % self.batch_size:
            raise ValueError(
                f"TrainConfig.curvature_probe_size ({self.curvature_probe_size}) must be a "
                f"multiple of batch_size ({self.batch_size}): the probe loss is a mean over "
                f"whole batches; e.g. set it to "
                f"{max(1, self.curvature_probe_size // self.batch_size) * self.batch_size}")

    @staticmethod
    def _check_learning_rates(rates: tuple[float, ...]) -> None:
        if not rates:
            raise ValueError("TrainConfig.learning_rates must list at least one learning rate, "
                             "got []; use null to train with `learning_rate` alone")
        if len(set(rates)) != len(rates):
            raise ValueError(f"TrainConfig.learning_rates must be distinct, got {list(rates)}; "
                             "remove the repeated rates")
        bad = [rate for rate in rates if not (np.isfinite(rate) and rate > 0)]
        if bad:
            raise ValueError(f"TrainConfig.learning_rates must be positive finite numbers, got "
                             f"{list(rates)} (not allowed: {bad})")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a plain dict (YAML parameters); errors are :class:`ConfigError`."""
        return _from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (lists instead of tuples), the inverse of ``from_dict``."""
        return _plain(self)

    def identity(self) -> dict[str, Any]:
        """What of :meth:`to_dict` identifies a run's results (checkpoint hashes, saved runs):
        not the device count (a sharded run computes the same to rounding), nor a
        ``moment_set`` that is off (the runs made before it existed keep their identity)."""
        return {key: value for key, value in self.to_dict().items()
                if key != "devices" and not (key == "moment_set" and not value)}

    @property
    def seed_list(self) -> tuple[int, ...]:
        """The seeds of the run: ``seeds``, or ``(seed,)`` when it is empty."""
        return tuple(int(s) for s in self.seeds) or (self.seed,)

    @property
    def learning_rate_list(self) -> tuple[float, ...]:
        """The learning rates of the run: ``learning_rates``, or ``(learning_rate,)`` when it
        is null."""
        if self.learning_rates is None:
            return (float(self.learning_rate),)
        return tuple(float(rate) for rate in self.learning_rates)

    @property
    def runs(self) -> tuple[Run, ...]:
        """The (seed, learning rate) pairs of the run axis, seed-major: pair
        ``i * len(learning_rate_list) + j`` is seed i with learning rate j."""
        return tuple(Run(seed, rate) for seed in self.seed_list
                     for rate in self.learning_rate_list)

    @property
    def program(self) -> ProgramConfig:
        """What of this configuration the compiled programs read (:class:`ProgramConfig`)."""
        return ProgramConfig(**{name: getattr(self, name) for name in PROGRAM_FIELDS})

    def resolved_step_loop(self, backend: str, family: str = "vgg") -> str:
        """``step_loop`` with "auto" resolved for a JAX backend and a model family ("host"
        for the VGG on CPU, where XLA runs convolutions inside loops slowly, else "scan")."""
        if self.step_loop != "auto":
            return self.step_loop
        return "host" if backend == "cpu" and family == "vgg" else "scan"

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


class Run(NamedTuple):
    """One run of the run axis: a seed and a learning rate."""

    seed: int
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class ProgramConfig:
    """The part of a :class:`TrainConfig` that shapes the compiled programs: with the
    :class:`ModelConfig`, the compile-cache key (:class:`bnstudy.core.step.Spec`).

    Built by :attr:`TrainConfig.program` from the fields named in :data:`PROGRAM_FIELDS`,
    never by resetting the others: a new TrainConfig field is not part of the key unless it
    is added here, and a program cannot read a field that is not here. The learning rate and
    the momentum are leaves of the training state, so one program serves every value.
    """

    batch_size: int  # the training batch of every step and measurement
    nesterov: bool  # the optimizer's update rule (a static argument of optax.sgd)
    histogram_bins: int  # the activation snapshot's histogram
    histogram_range: tuple[float, float]
    matmul_precision: str  # lowered into every program


PROGRAM_FIELDS = tuple(field.name for field in dataclasses.fields(ProgramConfig))
RUN_FIELDS = (
    # values of the run (state leaves, or the host's loop and data order)
    "seed", "seeds", "learning_rate", "learning_rates", "momentum",
    # cadence and length: the plan and the host loop
    "epochs", "max_steps", "eval_every", "snapshot_every", "steps_per_chunk", "step_loop",
    "curvature_every", "curvature_rtol", "curvature_max_iters", "curvature_trace_samples",
    # sizes of the inputs only, which the programs' signatures already key
    "eval_batch_size", "curvature_probe_size", "curvature_group",
    # which points the full batch is (the samples or their moment set): the inputs' shapes
    "moment_set",
    # where the run axis lives: the inputs' sharding, which jit keys its programs by
    "devices",
)
"""The TrainConfig fields that set only the values or the cadence of a run, not a program
(every field is in exactly one of PROGRAM_FIELDS and RUN_FIELDS; a test checks it)."""


@dataclass(frozen=True, config=STRICT)
class MeasurementConfig:
    """One protocol for the per-step measurements 1-4 (ICS, loss landscape, gradient
    predictiveness, effective beta-smoothness). See docs/measurements.md."""

    name: described(Annotated[str, Strict(), Field(min_length=1)], (
        "Key of this protocol in the results (the `blog`/`paper` prefix of every metric).")) = "paper"
    ics_mode: described(Literal[MEASUREMENT_MODES], (
        "G' with batch statistics (`train`) or with the running statistics S_t (`eval`).")) = "train"
    probe_start: described(Literal[PROBE_STARTS], (
        "Probe origin W_start: W_t (`pre_step`) or W_{t+1} (`post_step`).")) = "pre_step"
    probe_mode: described(Literal[MEASUREMENT_MODES], (
        "Probe forward passes with batch statistics (`train`) or the start point's running "
        "ones (`eval`).")) = "train"
    probe_min: described(Float, (
        "Probe step sizes s = arange(probe_min, probe_max, probe_step), in units of lr * g_t: "
        "the first ...")) = 0.5
    probe_max: described(Float, "... the top (excluded) ...") = 4.2
    probe_step: described(Annotated[Float, Field(gt=0)], "... and the spacing.") = 0.3
    measure_every: described(PositiveInt, "Measure at steps t with t % measure_every == 0.") = 1

    def __post_init__(self) -> None:
        if len(self.probe_s) == 0:
            raise ValueError(
                f"MeasurementConfig probe range arange({self.probe_min}, {self.probe_max}, "
                f"{self.probe_step}) is empty; make probe_max larger than probe_min"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MeasurementConfig:
        """Build from a plain dict (YAML parameters); errors are :class:`ConfigError`.

        ``{"preset": "blog", ...}`` starts from a named preset and overrides its fields.
        """
        if not isinstance(values, Mapping):
            return _from_dict(cls, values)
        values = dict(values)
        preset = values.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(
                    cls.__name__,
                    f"unknown measurement preset {preset!r}; choose from {sorted(PRESETS)}")
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
    # Santurkar et al. 2018 on the deep linear network (Appendix A.1): the paper's protocol
    # with step sizes from 1/100 to 30 x lr, 20 points evenly spaced (s = 0.01, 1.588, ...,
    # 30.0; probe_max only has to lie past 30). Its results are the paper's (name `paper`).
    "paper_dln": MeasurementConfig(
        name="paper", ics_mode="train", probe_start="pre_step", probe_mode="train",
        probe_min=0.01, probe_max=30.5, probe_step=(30.0 - 0.01) / 19,
    ),
    # The paper's protocol over the distance SGD with momentum beta = 0.9 really moves (Fig 11
    # for the blog's optimizer): its steady step is lr / (1 - beta) x g = 10 lr g, and the
    # probes reach 4 of those, s = 0.5, 3.5, ..., 39.5 (14 points, x lr g). Its results are
    # its own protocol, `paper_momentum`, beside `paper`'s.
    "paper_momentum": MeasurementConfig(
        name="paper_momentum", ics_mode="train", probe_start="pre_step", probe_mode="train",
        probe_min=0.5, probe_max=40.5, probe_step=3.0,
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
