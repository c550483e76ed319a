"""The training driver: data to device, the plan, the executor, results per run.

``train_seeds`` trains every run of ``TrainConfig.runs`` (each seed with each learning rate)
on one stacked state (a leading run axis, shardable over devices); ``train`` is its
single-run form. The chunk loop here runs the plan's chunks on the executor, measures the
curvature before the chunks the plan names, evaluates the test set, saves checkpoints and
records everything in a :class:`~bnstudy.core.recorder.Recorder`; it is the only place
that reports progress (a progress bar on a terminal, a log line per chunk otherwise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from bnstudy.core.checkpoint import Checkpointer, CheckpointStore, fingerprint
from bnstudy.core.config import MeasurementConfig, ModelConfig, Run, TrainConfig
from bnstudy.core.curvature import measure_curvature, probe_set
from bnstudy.core.executor import Executor
from bnstudy.core.moments import moment_set, moment_set_problem
from bnstudy.core.plan import MeasurementPlan
from bnstudy.core.programs import call
from bnstudy.core.recorder import Recorder, training_results
from bnstudy.core.results import TrainingResult
from bnstudy.core.state import TrainState, init_states, run_axis_sharding, run_slice, seed_keys
from bnstudy.core.step import Spec, evaluate, model_of

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, float]], None]


def epoch_permutations(key: jax.Array, epochs: int, num_examples: int) -> jax.Array:
    """[epochs, num_examples] int32: the shuffled order of each epoch, fold_in(key, epoch)."""
    return jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), num_examples))(
        jnp.arange(epochs)).astype(jnp.int32)


def data_orders(states: TrainState, epochs: int, num_examples: int, keep: int) -> jax.Array:
    """[R, epochs, keep]: each run's epoch orders from its (seed's) data key, cut to whole
    batches."""
    return jnp.stack([epoch_permutations(jax.random.wrap_key_data(key), epochs,
                                         num_examples)[:, :keep]
                      for key in states.data_key])


def batched_for_eval(x: np.ndarray, y: np.ndarray, batch_size: int, dtype,
                     target_dtype=np.int32):
    """Pad the test set to whole batches: x [nb, bs, ...], y [nb, bs, ...] (labels, or target
    vectors of ``target_dtype``), valid mask [nb, bs]."""
    n = x.shape[0]
    batches = -(-n // batch_size)
    pad = batches * batch_size - n
    x_padded = np.concatenate([np.asarray(x, dtype), np.zeros((pad, *x.shape[1:]), dtype)])
    y_padded = np.concatenate([np.asarray(y, target_dtype),
                               np.zeros((pad, *np.shape(y)[1:]), target_dtype)])
    mask = np.arange(batches * batch_size) < n
    shape = (batches, batch_size)
    return (jnp.asarray(x_padded.reshape(*shape, *x.shape[1:])),
            jnp.asarray(y_padded.reshape(*shape, *y_padded.shape[1:])),
            jnp.asarray(mask.reshape(shape)))


def check_inputs(model_config: ModelConfig, x_train, y_train, x_test, y_test) -> None:
    """Shapes of the data against the model: a clear error before anything compiles."""
    model = model_of(model_config)
    expected, target = model.input_shape, model.target_shape
    what = "one label per image" if model.classifies else "one target vector per sample"
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 1 + len(expected) or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x_{name} must have shape [N, {', '.join(map(str, expected))}] "
                             f"for this ModelConfig ({model_config.family}), got "
                             f"{list(x.shape)}")
        if tuple(np.shape(y)) != (x.shape[0], *target):
            raise ValueError(f"y_{name} must have shape {[x.shape[0], *target]} ({what}), "
                             f"got {list(np.shape(y))}")


def evaluate_runs(spec: Spec, states: TrainState, test_batches) -> list[tuple[float, float]]:
    """(test loss, test accuracy) of every run."""
    results = []
    for index in range(states.step.shape[0]):
        state = run_slice(states, index)
        loss, accuracy = call("evaluate", evaluate, spec, state.params, state.batch_stats,
                              *test_batches)
        results.append((float(loss), float(accuracy)))
    return results


def _interactive() -> bool:
    """Whether progress goes to a terminal (a bar) rather than to a log (a line per chunk)."""
    return sys.stderr.isatty()


def _report(recorder: Recorder, done: int, total: int, label: str, bar: tqdm | None,
            progress: Progress | None) -> None:
    """After a chunk: the bar moves to ``done`` (steps/s and ETA are tqdm's), or, without a
    terminal, one log line; then the ``progress`` callback."""
    metrics = recorder.latest_metrics(done)
    diverged = int(np.sum(recorder.diverged_at >= 0))
    if bar is not None:
        bar.set_postfix({**({"diverged": diverged} if diverged else {}),
                         **{k: f"{v:.4f}" for k, v in metrics.items()}}, refresh=False)
        bar.update(done - bar.n)
    else:
        logger.info("[%s%s] step %d/%d %s", label, f", {diverged} diverged" if diverged else "",
                    done, total, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if progress is not None:
        progress(done, total, metrics)


def _progress_bar(label: str, done: int, total: int):
    """A context holding the tqdm bar of one model's stacked run, or None off a terminal."""
    if not _interactive():
        return contextlib.nullcontext(None)
    return tqdm(total=total, initial=done, desc=label, unit="step", dynamic_ncols=True,
                file=sys.stderr)


def _label(normalization: str, train_config: TrainConfig) -> str:
    """``normalization=batch, 3 seeds`` (``x 2 learning rates`` with a sweep)."""
    seeds, rates = len(train_config.seed_list), len(train_config.learning_rate_list)
    label = f"normalization={normalization}, {seeds} seed{'s' * (seeds > 1)}"
    return label + (f" x {rates} learning rates" if rates > 1 else "")


def _evaluation(spec: Spec, states: TrainState, test_batches, done: int,
                diverged_at: np.ndarray) -> list[tuple[float, float]]:
    """Test (loss, accuracy) of every run at ``done`` steps; NaN for a run that diverged
    before (its frozen weights are not the weights of step ``done``)."""
    return [(float("nan"), float("nan")) if 0 <= diverged < done else values
            for values, diverged in zip(evaluate_runs(spec, states, test_batches),
                                        diverged_at, strict=True)]


@dataclasses.dataclass(frozen=True)
class _Run:
    """What the chunk loop needs besides the state."""

    spec: Spec
    plan: MeasurementPlan
    loop: str
    data: dict[str, Any]
    test_batches: tuple
    runs: tuple[Run, ...]
    config: TrainConfig  # the run's own (its sizes, curvature's stopping rule)
    probe: tuple = ()


def _curvature(run: _Run, states: TrainState, recorder: Recorder, step: int) -> None:
    """Measure the curvature of every run at W_step (before step ``step``) and record it."""
    started = time.perf_counter()
    recorder.curvature.append((step, measure_curvature(run.spec, run.config, states, run.data,
                                                       run.probe, step, recorder.diverged_at)))
    logger.info("curvature at step %d in %.1f s: lambda_max %s, batch sharpness %s", step,
                time.perf_counter() - started,
                ", ".join(f"{c['lambda_max']:.4g}" for c in recorder.curvature[-1][1]),
                ", ".join(f"{c['batch_sharpness']:.4g}" for c in recorder.curvature[-1][1]))


def _run_chunks(run: _Run, states: TrainState, recorder: Recorder, progress: Progress | None,
                concurrent_probes: bool, checkpoints: Checkpointer | None,
                checkpoint_every_s: float) -> TrainState:
    """The remaining chunks of the plan, each after the curvature where the plan says so; a
    checkpoint after a chunk when due and at the end."""
    eval_at = set(run.plan.eval_steps())
    chunks = run.plan.chunks(recorder.done())
    last_save = time.monotonic()
    label = _label(run.spec.model_config.normalization, run.config)
    with Executor(run.spec, run.plan, run.loop, concurrent_probes) as executor, \
            _progress_bar(label, recorder.done(), run.plan.total_steps) as bar:
        for index, (first, stop, curvature) in enumerate(chunks):
            if curvature:
                _curvature(run, states, recorder, first)
            chunk_started = time.perf_counter()
            states, outputs = executor.run_chunk(states, run.data, first, stop)
            recorder.chunk(outputs, time.perf_counter() - chunk_started,
                           run.plan.snapshot_mask(np.arange(first, stop)))
            recorder.note_divergence(np.asarray(jax.device_get(states.diverged_at)), run.runs)
            if stop in eval_at:
                recorder.evaluations.append((stop, _evaluation(
                    run.spec, states, run.test_batches, stop, recorder.diverged_at)))
            if checkpoints is not None and (index == len(chunks) - 1 or
                                            time.monotonic() - last_save >= checkpoint_every_s):
                checkpoints.save(stop, jax.device_get(states), recorder.record(),
                                 {"chunk_seconds": recorder.chunk_seconds})
                last_save = time.monotonic()
            _report(recorder, stop, run.plan.total_steps, label, bar, progress)
    return states


def _start(run: _Run, states: TrainState, arrays: dict[str, np.ndarray],
           shard: Callable[[Any], Any] | None,
           checkpoints: Checkpointer | None) -> tuple[_Run, TrainState, Recorder]:
    """(the run with its data on device, the states, the recorder): those of the newest
    usable checkpoint, or fresh ones with the evaluation at step 0."""
    train_config = run.config
    if shard is None and train_config.devices is not None:
        shard = run_axis_sharding(train_config.devices, len(run.runs))
    restored = None if checkpoints is None else checkpoints.restore(jax.device_get(states))
    if restored is not None:
        states = jax.tree.map(jnp.asarray, restored.state)
    x_train, total = arrays["x_train"], run.plan.total_steps
    per_epoch = train_config.steps_per_epoch(x_train.shape[0])
    orders = data_orders(states, -(-total // per_epoch), x_train.shape[0],
                         per_epoch * train_config.batch_size)
    if shard is not None:
        states, orders = shard(states), shard(orders)
    dtype = np.dtype(run.spec.model_config.param_dtype)
    target_dtype = model_of(run.spec.model_config).target_dtype(dtype)
    data = {"x": jnp.asarray(np.asarray(x_train, dtype)),
            "y": jnp.asarray(np.asarray(arrays["y_train"], target_dtype)), "orders": orders}
    if "x_snapshot" in arrays:
        data["x_snapshot"] = jnp.asarray(np.asarray(arrays["x_snapshot"], dtype))
    run = dataclasses.replace(
        run, data=data,
        test_batches=batched_for_eval(arrays["x_test"], arrays["y_test"],
                                      train_config.eval_batch_size, dtype, target_dtype))
    if run.plan.curvature_steps().size:
        run = dataclasses.replace(run, probe=probe_set(train_config, run.data["x"],
                                                       run.data["y"]))
    if restored is not None:
        return run, states, Recorder.restored(len(run.runs), restored)
    recorder = Recorder(len(run.runs))
    recorder.evaluations.append((0, evaluate_runs(run.spec, states, run.test_batches)))
    return run, states, recorder


def fit_data(model_config: ModelConfig, train_config: TrainConfig, x_train: np.ndarray,
             y_train: np.ndarray) -> tuple[TrainConfig, dict[str, np.ndarray]]:
    """(the TrainConfig of the programs, the arrays they train on): ``train_config`` and
    nothing to replace, or, with ``train_config.moment_set``, its moment set
    (:func:`bnstudy.core.moments.moment_set`) as x_train and y_train, the samples as
    x_snapshot, and the batch and the curvature probe set resized to it: the same steps of
    the same loss (every step a full batch)."""
    if not train_config.moment_set:
        return train_config, {}
    problem = moment_set_problem(
        model_config.family, model_config.normalization, train_config.batch_size,
        x_train.shape[0],
        None if train_config.curvature_every is None else train_config.curvature_probe_size)
    if problem is not None:
        raise ValueError(f"TrainConfig.moment_set cannot be used here: {problem}")
    x_fit, y_fit = moment_set(x_train, y_train)
    size = x_fit.shape[0]
    fit = dataclasses.replace(train_config, batch_size=size, curvature_probe_size=size)
    return fit, {"x_train": x_fit, "y_train": y_fit, "x_snapshot": x_train}


def _run_hash(spec: Spec, plan: MeasurementPlan, loop: str, arrays: dict[str, np.ndarray],
              train_config: TrainConfig) -> str:
    """The configuration hash of a run: what must match for a checkpoint to be used (the
    whole TrainConfig, its seeds and learning rates included)."""
    # format 2: the learning rate and the momentum are leaves of the optimizer state; format 3:
    # the snapshots record the kernels' norm and angle and the normalization scales; format 4:
    # the record keeps the snapshot's rows at the snapshot steps only
    # the device count is not part of it: a sharded run resumes an unsharded one's checkpoint
    # (and hashes stay those of the runs made before the setting existed)
    configs = {"model": spec.model_config.to_dict(), "train": train_config.identity(),
               "measurements": [preset.to_dict() for preset in plan.presets],
               "snapshots": plan.snapshots, "loop": loop,
               "x64": bool(jax.config.jax_enable_x64), "format": "bnstudy.core.training/4"}
    return fingerprint(configs, arrays)


def train_seeds(model_config: ModelConfig, train_config: TrainConfig,
                measurement_configs: Sequence[MeasurementConfig],
                x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                y_test: np.ndarray, progress: Progress | None = None, *,
                snapshots: bool = True, concurrent_probes: bool = True,
                shard: Callable[[Any], Any] | None = None,
                checkpoints: CheckpointStore | None = None,
                checkpoint_every_s: float = 60.0) -> list[TrainingResult]:
    """Train every run of ``train_config.runs`` (each seed of ``seed_list`` with each
    learning rate of ``learning_rate_list``) together and measure them.

    Args:
        model_config, train_config: the network and the run.
        measurement_configs: protocols for ICS and probes, all measured on one trajectory.
        x_train, x_test: float [N, H, W, C] normalized images and y_train, y_test: int [N]
            labels (VGG), or float [N, width] samples and their [N, width] targets (DLN).
        progress: called after every chunk as ``progress(done, total, metrics)`` (means over
            the runs that have not diverged).
        snapshots: record activation statistics and distance from init.
        concurrent_probes: let the host loop use its worker thread.
        shard: optional function applied to the stacked state and the orders (e.g.
            ``jax.device_put`` with a ``NamedSharding`` over the run axis); None: that of
            ``train_config.devices`` (:func:`~bnstudy.core.state.run_axis_sharding`), if set.
        checkpoints: opens the checkpoints of this run's configuration hash (a
            :data:`~bnstudy.core.checkpoint.CheckpointStore`, e.g.
            ``bnstudy.reliability.checkpoints.checkpoint_store(directory)``: the file I/O is
            the caller's); a run with the same configuration and data resumes from the
            newest usable one and ends bit-for-bit as an uninterrupted run. None: none.
        checkpoint_every_s: save after a chunk once this many seconds passed since the last
            save (and always after the last chunk).

    Returns:
        One :class:`TrainingResult` per run, in the order of ``train_config.runs``
        (seed-major: every learning rate of the first seed, then of the next).
    """
    started = time.perf_counter()
    check_inputs(model_config, x_train, y_train, x_test, y_test)
    fit, fit_arrays = fit_data(model_config, train_config, x_train, y_train)
    spec = Spec.of(model_config, fit)
    plan = MeasurementPlan.build(model_config, fit, measurement_configs,
                                 train_config.total_steps(x_train.shape[0]), snapshots=snapshots)
    loop = train_config.resolved_step_loop(jax.default_backend(), model_config.family)
    states = init_states(model_of(model_config), train_config, train_config.runs)
    initial = jax.device_get((states.params, states.batch_stats))
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    checkpoints = None if checkpoints is None else checkpoints(  # the store opens the run's
        _run_hash(spec, plan, loop, arrays, train_config))
    with checkpoints or contextlib.nullcontext():
        run, states, recorder = _start(
            _Run(spec, plan, loop, {}, (), train_config.runs, fit), states,
            {**arrays, **fit_arrays}, shard, checkpoints)
        states = _run_chunks(run, states, recorder, progress, concurrent_probes, checkpoints,
                             checkpoint_every_s)
    results = training_results(spec, train_config, plan, states, initial, recorder)
    for result in results:
        result.wall_time_s = time.perf_counter() - started
        result.compile_time_s = recorder.compile_time()
        result.run_devices = len(states.step.sharding.device_set)
        result.moment_points = len(fit_arrays["x_train"]) if fit_arrays else None
    return results


def train(model_config: ModelConfig, train_config: TrainConfig,
          measurement_configs: Sequence[MeasurementConfig],
          x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
          progress: Progress | None = None, *, snapshots: bool = True,
          concurrent_probes: bool = True, checkpoints: CheckpointStore | None = None,
          checkpoint_every_s: float = 60.0) -> TrainingResult:
    """Train one run (``train_config.seed`` with its one learning rate) and measure it:
    :func:`train_seeds`'s single result. With several seeds or learning rates, use
    :func:`train_seeds`."""
    if len(train_config.runs) != 1:
        raise ValueError(f"train() runs one seed with one learning rate, but TrainConfig.seeds "
                         f"is {list(train_config.seeds)} and learning_rates "
                         f"{train_config.learning_rates}; call train_seeds() for several")
    return train_seeds(model_config, train_config, measurement_configs, x_train, y_train,
                       x_test, y_test, progress, snapshots=snapshots,
                       concurrent_probes=concurrent_probes, checkpoints=checkpoints,
                       checkpoint_every_s=checkpoint_every_s)[0]


__all__ = ["TrainingResult", "batched_for_eval", "check_inputs", "data_orders",
           "epoch_permutations", "evaluate_runs", "seed_keys", "train", "train_seeds"]
