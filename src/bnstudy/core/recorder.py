"""What a run records on the host, chunk by chunk, and the results made from it.

:class:`Recorder` keeps the executor's chunk outputs, the test-set evaluations, the
curvature measurements and the chunk timings of a stacked run (all its runs at once); it is
what a checkpoint keeps. :func:`training_results` turns it, with the final state, into one
:class:`~bnstudy.core.results.TrainingResult` per run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from bnstudy.core.checkpoint import Checkpoint
from bnstudy.core.config import Run, TrainConfig
from bnstudy.core.curvature import CURVATURE_FIELDS
from bnstudy.core.measurements import distance_from_init
from bnstudy.core.models import leaf_paths
from bnstudy.core.plan import MeasurementPlan
from bnstudy.core.results import TrainingResult, collect_measurements, collect_snapshots
from bnstudy.core.state import TrainState
from bnstudy.core.step import Spec, model_of

logger = logging.getLogger(__name__)


class Recorder:
    """Collects chunk outputs, evaluations, curvature and timings of every run, on the host.

    Attributes:
        chunks: the executor's outputs of each chunk, numpy [R, chunk length, ...].
        evaluations: [(completed steps, [(test loss, test accuracy)] per run)].
        curvature: [(step, [{field: value}] per run)] (:data:`CURVATURE_FIELDS`).
        chunk_seconds: wall time of each chunk.
        diverged_at: [R] the step each run diverged at, -1 while healthy.
    """

    def __init__(self, runs: int):
        self.chunks: list[dict[str, Any]] = []
        self.evaluations: list[tuple[int, list[tuple[float, float]]]] = []
        self.curvature: list[tuple[int, list[dict[str, float]]]] = []
        self.chunk_seconds: list[float] = []
        self.runs = runs
        self.diverged_at = np.full(runs, -1)

    def chunk(self, outputs, seconds: float, snapshot_due: np.ndarray) -> None:
        """Record a chunk's outputs and wall time. ``snapshot_due`` [steps of the chunk]: the
        steps that took a snapshot; only their rows of ``outputs["snapshot"]`` are kept (the
        others are placeholders: at paper scale, 25 layers of histograms for every step of
        10 runs would hold gigabytes)."""
        if "snapshot" in outputs:
            outputs = {**outputs, "snapshot": jax.tree.map(
                lambda values: values[:, np.asarray(snapshot_due, bool)], outputs["snapshot"])}
        self.chunks.append(outputs)
        self.chunk_seconds.append(seconds)

    def done(self) -> int:
        """Steps recorded so far."""
        return sum(chunk["train_loss"].shape[1] for chunk in self.chunks)

    def run_outputs(self, index: int) -> dict[str, Any]:
        """Run ``index``'s outputs of every recorded step, [done, ...] (the snapshot's:
        [snapshots taken, ...])."""
        return jax.tree.map(lambda *parts: np.concatenate([p[index] for p in parts]),
                            *self.chunks)

    def compile_time(self) -> float:
        """Seconds of the first chunk beyond the median of the others (compilation)."""
        if len(self.chunk_seconds) < 2:
            return 0.0
        return max(0.0, self.chunk_seconds[0] - float(np.median(self.chunk_seconds[1:])))

    def note_divergence(self, diverged_at: np.ndarray, runs: Sequence[Run]) -> None:
        """Log each run whose state just diverged (``diverged_at`` [R], -1: healthy)."""
        for run, before, now in zip(runs, self.diverged_at, diverged_at, strict=True):
            if before < 0 <= now:
                logger.warning("seed %d (learning rate %r) diverged at step %d (non-finite "
                               "loss, gradient or update): its weights stay those of step %d, "
                               "its traces are NaN from there, the other runs go on",
                               run.seed, run.learning_rate, now, now)
        self.diverged_at = np.asarray(diverged_at)

    def latest_metrics(self, done: int) -> dict[str, float]:
        """The last chunk's train loss and accuracy and, after an evaluation at ``done``
        steps, the test loss and accuracy: means over the runs that have not diverged."""
        last = self.chunks[-1]
        metrics = {"train_loss": _mean_of_finite(last["train_loss"]),
                   "train_accuracy": _mean_of_finite(last["train_accuracy"][:, -1])}
        if self.evaluations and self.evaluations[-1][0] == done:
            runs = np.array(self.evaluations[-1][1])
            metrics.update(test_loss=_mean_of_finite(runs[:, 0]),
                           test_accuracy=_mean_of_finite(runs[:, 1]))
        return metrics

    def record(self) -> dict[str, Any]:
        """What a checkpoint keeps: outputs [R, done, ...] and evaluations as arrays."""
        return {"outputs": jax.tree.map(lambda *parts: np.concatenate(parts, axis=1),
                                        *self.chunks),
                "eval_steps": np.array([done for done, _ in self.evaluations], np.int64),
                "eval_values": np.array([runs for _, runs in self.evaluations], np.float64),
                "curvature_steps": np.array([step for step, _ in self.curvature], np.int64),
                "curvature_values": np.array(
                    [[[run[f] for f in CURVATURE_FIELDS] for run in runs]
                     for _, runs in self.curvature], np.float64).reshape(
                    len(self.curvature), self.runs, len(CURVATURE_FIELDS))}

    @classmethod
    def restored(cls, runs: int, checkpoint: Checkpoint) -> Recorder:
        """The recorder of a run as it was when ``checkpoint`` was saved."""
        recorder = cls(runs)
        record = checkpoint.record
        recorder.chunks = [record["outputs"]]
        recorder.evaluations = [(int(done), [(float(loss), float(accuracy))
                                             for loss, accuracy in values])
                                for done, values in zip(record["eval_steps"],
                                                        record["eval_values"], strict=True)]
        recorder.curvature = [(int(step), [dict(zip(CURVATURE_FIELDS, map(float, run)))
                                           for run in values])
                              for step, values in zip(record["curvature_steps"],
                                                      record["curvature_values"], strict=True)]
        recorder.chunk_seconds = list(checkpoint.extra["chunk_seconds"])
        recorder.diverged_at = np.asarray(checkpoint.state.diverged_at)
        return recorder


def _mean_of_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.mean(finite)) if finite.size else float("nan")


def training_results(spec: Spec, train_config: TrainConfig, plan: MeasurementPlan,
                     states: TrainState, initial, recorder: Recorder) -> list[TrainingResult]:
    """One :class:`TrainingResult` per run of ``train_config.runs``, from the final stacked
    ``states``, the ``initial`` (params, batch_stats) and what ``recorder`` holds."""
    model_config = spec.model_config
    layers = model_of(model_config).layer_names
    final = jax.device_get((states.params, states.batch_stats))
    # ||W_T - W_0|| of every run at once, as before the run axis (the saved traces hold these
    # bits); its last bit may depend on the number of runs stacked
    distances = jax.device_get(jax.vmap(
        lambda p, p0: distance_from_init(p, p0, layers))(states.params, states.initial_params))
    diverged_at = np.asarray(jax.device_get(states.diverged_at))
    results = []
    for index, (seed, learning_rate) in enumerate(train_config.runs):
        pick = lambda tree, i=index: jax.tree.map(lambda leaf: np.asarray(leaf[i]), tree)  # noqa: E731
        outputs = recorder.run_outputs(index)
        initial_params = pick(initial[0])
        diverged = int(diverged_at[index]) if diverged_at[index] >= 0 else None
        result = TrainingResult(
            seed=seed, learning_rate=learning_rate, layers=list(layers),
            leaf_paths=leaf_paths(initial_params),
            steps=np.arange(plan.total_steps), train_loss=outputs["train_loss"],
            train_accuracy=outputs["train_accuracy"],
            eval_steps=np.array([done for done, _ in recorder.evaluations]),
            test_loss=np.array([runs[index][0] for _, runs in recorder.evaluations]),
            test_accuracy=np.array([runs[index][1] for _, runs in recorder.evaluations]),
            measurements=collect_measurements(plan, model_config, outputs,
                                              leaf_paths(initial_params), learning_rate),
            activation_stats={}, init_distance={}, initial_params=initial_params,
            initial_batch_stats=pick(initial[1]), final_params=pick(final[0]),
            final_batch_stats=pick(final[1]), model_config=model_config.to_dict(),
            train_config={**train_config.to_dict(), "seed": seed, "seeds": [seed],
                          "learning_rate": learning_rate, "learning_rates": None},
            measurement_configs=[c.to_dict() for c in plan.presets], diverged_at=diverged)
        result.curvature = _curvature_of(recorder, index)
        if plan.snapshots:
            # a diverged run has no W_T: its final distance is NaN, not that of W_diverged
            final_distance = jax.tree.map(lambda v: np.full_like(v, np.nan), pick(distances)) \
                if diverged is not None else pick(distances)
            result.activation_stats, result.init_distance = collect_snapshots(
                plan, train_config, outputs, list(layers), final_distance)
        results.append(result)
    return results


def _curvature_of(recorder: Recorder, index: int) -> dict[str, np.ndarray]:
    """Run ``index``'s curvature trace: {"steps": [C], field: [C]}; {} without curvature."""
    if not recorder.curvature:
        return {}
    return {"steps": np.array([step for step, _ in recorder.curvature]),
            **{field: np.array([runs[index][field] for _, runs in recorder.curvature])
               for field in CURVATURE_FIELDS}}
