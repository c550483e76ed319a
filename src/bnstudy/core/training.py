"""The compiled, chunked trainer: SGD with momentum plus every per-step measurement.

Two step loops (``TrainConfig.step_loop``), the same results:

* ``scan`` (accelerators): one chunk of ``steps_per_chunk`` steps is one XLA program (a
  ``lax.scan``); measurements run under ``lax.cond`` on the steps they are due, probes are
  vmapped over s.
* ``host`` (CPUs, where XLA runs convolutions inside loops and conds far slower): small
  programs, each compiled once per configuration and dispatched asynchronously, results
  fetched once per chunk: the step, one probe point with s as a runtime scalar, and the ICS
  chained from one-layer forward / backward programs (see :meth:`Trainer.host_step`).

The data set lives on the device, batches come from per-epoch permutations computed on the
device from the seed. Measurements read the step's own values and never write to the
training state, so they cannot change the trajectory.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bnstudy.core.config import MeasurementConfig, ModelConfig, TrainConfig
from bnstudy.core.measurements import (
    QUANTILE_LEVELS,
    compare_gradients,
    distance_from_init,
    gradient_ics,
    histogram_edges,
    layer_activation_statistics,
    layer_forward,
    layer_input_cotangent,
    layer_param_gradient,
    loss_cotangent,
    model_loss_and_grad,
    model_probe,
    probe_point,
    summarize_probes,
)
from bnstudy.core.models import PureModel, leaf_paths

logger = logging.getLogger(__name__)

TRACE_COUNTS: collections.Counter[str] = collections.Counter()
"""How often each compiled function was traced (the trace-count test reads it)."""


@dataclasses.dataclass
class TrainingResult:
    """Everything one training run records, as numpy arrays and plain Python values.

    Shapes: T trained steps, E evaluations, L layers, M measured steps of a preset,
    S probe points of a preset, K activation snapshots, C_l channels of layer l.

    Attributes:
        layers: layer names in forward order, [L].
        leaf_paths: trainable leaf names ("conv_3/kernel", "conv_3/bn_scale", ...).
        steps: [T] int, 0-based index t of each trained step.
        train_loss: [T] train-mode loss at W_t on the step's batch (the loss whose gradient
            is applied).
        train_accuracy: [T] eval-mode accuracy at (W_{t+1}, S_{t+1}) on the same batch.
        eval_steps: [E] number of completed steps when the test set was evaluated:
            0 (before training), every ``eval_every`` steps, and T.
        test_loss, test_accuracy: [E] eval-mode mean loss / accuracy over the full test set.
        measurements: {preset name: dict} with
            measured_steps [M] (t % measure_every == 0), ics_l2 [M, L], ics_cosine [M, L],
            ics_l2_leaf / ics_cosine_leaf {leaf path: [M]}, probe_s [S],
            probe_loss [M, S], grad_diff [M, S], step_norm [M, S] (||W(s) - W_start||),
            beta_smoothness [M], probe_loss_min / probe_loss_max [M],
            grad_diff_min / grad_diff_max [M], config (the preset as a dict).
        activation_stats: {"steps": [K] (t % snapshot_every == 0, stats of the train-mode
            forward pass at W_t), "quantile_levels": [7], "hist_edges": [bins + 1],
            "layers": {layer: {mean, std, min, max, frac_positive, underflow, overflow: [K];
            quantiles [K, 7]; hist_counts [K, bins]; channel_mean, channel_var [K, C_l]}}}.
        init_distance: {"steps": [K + 1] (the snapshot steps, then T), "abs": {layer:
            [K + 1]} = ||W - W_0||_F of the layer's kernel, "rel": {layer: [K + 1]} = abs /
            ||W_0||_F}.
        initial_params, initial_batch_stats, final_params, final_batch_stats: nested dicts of
            numpy arrays (the pure pytrees; batch stats are {} without BN).
        model_config, train_config: the configs as plain dicts; measurement_configs: list.
        wall_time_s: seconds for the whole run; compile_time_s: seconds of the first chunk
            beyond the median chunk (an estimate of compilation).
    """

    layers: list[str]
    leaf_paths: list[str]
    steps: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    eval_steps: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    measurements: dict[str, dict[str, Any]]
    activation_stats: dict[str, Any]
    init_distance: dict[str, Any]
    initial_params: dict[str, Any]
    initial_batch_stats: dict[str, Any]
    final_params: dict[str, Any]
    final_batch_stats: dict[str, Any]
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    measurement_configs: list[dict[str, Any]]
    wall_time_s: float = 0.0
    compile_time_s: float = 0.0


# ----------------------------------------------------------------------------------------------
# Compiled functions
# ----------------------------------------------------------------------------------------------


def _ics_key(config: MeasurementConfig, model_config: ModelConfig) -> str:
    # Without BN, train and eval mode are the same function: compute it once.
    return "train" if model_config.normalization == "none" else config.ics_mode


def _probe_key(config: MeasurementConfig, model_config: ModelConfig) -> tuple:
    mode = "train" if model_config.normalization == "none" else config.probe_mode
    return (config.probe_start, mode, config.probe_s)


def _compile_key(train_config: TrainConfig) -> TrainConfig:
    """The fields of a TrainConfig that do not change the compiled programs are reset, so
    runs that differ only in seed, length or evaluation cadence share one compilation."""
    return dataclasses.replace(train_config, seed=0, epochs=1, max_steps=None,
                               eval_every=train_config.steps_per_chunk)


def get_trainer(model_config: ModelConfig, train_config: TrainConfig,
                measurement_configs: Sequence[MeasurementConfig] = (),
                snapshots: bool = True) -> Trainer:
    """The cached :class:`Trainer` for a configuration (built and compiled once).

    Only what shapes the compiled programs is part of the cache key: the seed, the run
    length, the evaluation cadence, preset names and measurement cadences (which are
    runtime inputs of the chunk) are not. ``get_trainer(m, t)`` with no measurements and
    ``snapshots=False`` is the plain, unmeasured training loop benchmarks compare against.
    """
    ics_modes = tuple(sorted({_ics_key(c, model_config) for c in measurement_configs}))
    probe_keys = tuple(sorted({_probe_key(c, model_config) for c in measurement_configs}))
    return _cached_trainer(model_config, _compile_key(train_config), ics_modes, probe_keys,
                           snapshots)


@functools.lru_cache(maxsize=32)
def _cached_trainer(model_config, train_config, ics_modes, probe_keys, snapshots) -> Trainer:
    return Trainer(model_config, train_config, ics_modes, probe_keys, snapshots)


def measurement_cadences(trainer: Trainer,
                         measurement_configs: Sequence[MeasurementConfig]) -> dict[str, Any]:
    """Runtime input of :attr:`Trainer.chunk`: for every distinct computation, the
    ``measure_every`` of each preset that uses it (it runs when any of them is due)."""
    cadences: dict[str, list[int]] = {name: [] for name in trainer.computation_names}
    for config in measurement_configs:
        cadences[trainer.ics_name(config)].append(config.measure_every)
        cadences[trainer.probe_name(config)].append(config.measure_every)
    return {name: np.asarray(values, np.int32) for name, values in cadences.items()}


class PrecisionJit:
    """``jax.jit(fn)`` that always traces, lowers and runs under one matmul precision.

    ``jax.default_matmul_precision`` is read when a program is traced and is part of jit's
    cache key, so a program called outside the context would silently run at the backend's
    default (TF32 on NVIDIA GPUs). Every program of a Trainer therefore carries its
    ``TrainConfig.matmul_precision`` itself, whoever calls it.
    """

    def __init__(self, fn: Callable, precision: str, **jit_kwargs):
        self.jitted = jax.jit(fn, **jit_kwargs)
        self.precision = precision

    def __call__(self, *args, **kwargs):
        with jax.default_matmul_precision(self.precision):
            return self.jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        """``jax.jit(...).lower`` under this program's precision (for cost analysis)."""
        with jax.default_matmul_precision(self.precision):
            return self.jitted.lower(*args, **kwargs)


class Trainer:
    """Jitted functions for one (model, train, measurements) configuration.

    Attributes:
        chunk: (state, data, start_step, total_steps, length=None) -> (state, outputs); runs
            ``length`` (default ``steps_per_chunk``) steps from ``start_step`` (steps >= total_steps are skipped);
            ``state`` {params, opt_state, batch_stats} is donated; ``data`` holds the device
            arrays {x, y, permutations [epochs, N], initial_params, cadences} (see
            :func:`train` and :func:`measurement_cadences`); ``outputs`` are stacked per
            step: train_loss, train_accuracy, one dict per computation (NaN where not
            due) and, with snapshots, "snapshot".
        train_step: (state, x, y) -> (state, loss), one plain step (no measurements).
        evaluate: (params, batch_stats, x_batches, y_batches, mask) -> (loss, accuracy).
        host_step: one step of the host loop (see its docstring); it dispatches the
            programs ``step`` / ``measured_step``, ``probe_point``, ``probe_summary``,
            ``layer_forward``, ``layer_input_cotangent``, ``layer_param_gradient``,
            ``loss_cotangent``, ``ics_compare`` and ``snapshot``.
    """

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig,
                 ics_modes: tuple[str, ...], probe_keys: tuple[tuple, ...], snapshots: bool):
        self.model_config = model_config
        self.train_config = train_config
        self.ics_modes = ics_modes
        self.probe_keys = probe_keys
        self.snapshots = snapshots
        self.model = PureModel(model_config)
        self.layers = self.model.layer_names
        self.optimizer = optax.sgd(train_config.learning_rate, momentum=train_config.momentum,
                                   nesterov=train_config.nesterov)
        # Distinct computations: presets whose inputs coincide share them.
        self.probe_names = {key: f"probe_{i}" for i, key in enumerate(probe_keys)}
        self.computation_names = [*(f"ics_{mode}" for mode in ics_modes),
                                  *self.probe_names.values()]
        self.chunk = self._jit(self._chunk, donate_argnums=(0,), static_argnames="length")
        # The host loop: small programs, each compiled once and dispatched asynchronously.
        # A plain step donates the state; a measured one keeps W_t, S_t for the measurements.
        self.step = self._jit(self._host_step, donate_argnums=(0,))
        self.measured_step = self._jit(self._measured_host_step)
        self.snapshot = self._jit(self._snapshot_program)
        self.probe_point = self._jit(self._probe_point, static_argnames="train")
        self.probe_summary = self._jit(self._probe_summary)
        layer_static = ("index", "train")
        self.layer_forward = self._jit(self._layer_forward, static_argnames=layer_static)
        self.layer_input_cotangent = self._jit(self._layer_input_cotangent,
                                               static_argnames=layer_static)
        self.layer_param_gradient = self._jit(self._layer_param_gradient,
                                              static_argnames=layer_static)
        self.loss_cotangent = self._jit(self._loss_cotangent)
        self.ics_compare = self._jit(self._ics_compare)
        # Only convolutions followed by BN depend on the mode; other layers share programs.
        has_bn = model_config.normalization != "none"
        self._mode_matters = [has_bn and i < len(model_config.conv_features)
                              for i in range(len(self.layers))]
        self._snapshot_shapes = None
        # The host loop dispatches some probes from a second thread (_split_probes).
        self.concurrent_probes = True
        self._probes_compiled: set[tuple] = set()  # (probe key, JAX trace context)
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self.num_leaves = len(jax.tree.leaves(jax.eval_shape(self.model.init,
                                                             jax.random.key(0))[0]))
        loop = train_config.step_loop
        if loop == "auto":
            loop = "host" if jax.default_backend() == "cpu" else "scan"
        self.step_loop = loop
        # Probes vmapped over s in the scan loop (accelerators), unrolled in the host loop
        # (CPU, where a vmapped convolution over different kernels is slow; model_probe).
        self.vectorize_probes = loop == "scan"
        self.train_step = self._jit(self._train_step, donate_argnums=(0,))
        self.evaluate = self._jit(self._evaluate)

    def _jit(self, fn: Callable, **jit_kwargs) -> PrecisionJit:
        return PrecisionJit(fn, self.train_config.matmul_precision, **jit_kwargs)

    def ics_name(self, config: MeasurementConfig) -> str:
        """Output key of the ICS computation a preset reads."""
        return f"ics_{_ics_key(config, self.model_config)}"

    def probe_name(self, config: MeasurementConfig) -> str:
        """Output key of the probe computation a preset reads."""
        return self.probe_names[_probe_key(config, self.model_config)]

    # -- pieces ----------------------------------------------------------------------------

    def init_state(self, key: jax.Array) -> dict[str, Any]:
        """Initial training state {params, opt_state, batch_stats} from the init key."""
        params, batch_stats = self.model.init(key)
        return {"params": params, "opt_state": self.optimizer.init(params),
                "batch_stats": batch_stats}

    def _update(self, state, x, y):
        params, batch_stats = state["params"], state["batch_stats"]
        (loss, forward), grads = jax.value_and_grad(
            lambda p: self.model.loss(p, batch_stats, x, y, train=True), has_aux=True)(params)
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], params)
        new_state = {"params": optax.apply_updates(params, updates), "opt_state": opt_state,
                     "batch_stats": forward.batch_stats}
        return new_state, loss, forward, grads

    def _train_step(self, state, x, y):
        TRACE_COUNTS["train_step"] += 1
        new_state, loss, _, _ = self._update(state, x, y)
        return new_state, loss

    def _batch(self, data, step):
        steps_per_epoch = data["permutations"].shape[1] // self.train_config.batch_size
        epoch, position = step // steps_per_epoch, step % steps_per_epoch
        batch_size = self.train_config.batch_size
        indices = jax.lax.dynamic_slice_in_dim(
            data["permutations"][epoch], position * batch_size, batch_size)
        return data["x"][indices], data["y"][indices]

    def _measure(self, state, new_state, grads, x, y, step, cadences, measure):
        """ICS and probes for every distinct computation, each under its own cond
        (``measure`` None) or all of them when ``measure`` is True (none when False)."""
        outputs = {}
        lr = self.train_config.learning_rate
        for mode in self.ics_modes:
            def ics(mode=mode):
                return gradient_ics(self.model, state["params"], new_state["params"],
                                    state["batch_stats"], grads, x, y,
                                    train=mode == "train")._asdict()
            outputs[f"ics_{mode}"] = _maybe(measure, lambda m=mode: _due(step, cadences[f"ics_{m}"]),
                                            ics)
        for key in self.probe_keys:
            start, mode, s_values = key
            origin = state if start == "pre_step" else new_state

            def probe(origin=origin, mode=mode, s_values=s_values):
                s = jnp.asarray(s_values, dtype=grads["out"]["kernel"].dtype)
                return model_probe(self.model, origin["params"], origin["batch_stats"], grads,
                                   x, y, train=mode == "train", learning_rate=lr,
                                   s_values=s, vectorize=self.vectorize_probes)._asdict()
            name = self.probe_names[key]
            outputs[name] = _maybe(measure, lambda n=name: _due(step, cadences[n]), probe)
        return outputs

    def _snapshot(self, state, forward, initial_params, step, flag):
        config = self.train_config
        edges = histogram_edges(config.histogram_bins, config.histogram_range,
                                dtype=forward.logits.dtype)

        def snapshot():
            return {
                "activations": layer_activation_statistics(
                    forward.pre_activations, edges, self.layers),
                "init_distance": distance_from_init(state["params"], initial_params,
                                                    self.layers),
            }
        return _maybe(flag, lambda: step % config.snapshot_every == 0, snapshot)

    def _step(self, state, data, step, measure=None, snapshot=None):
        x, y = self._batch(data, step)
        new_state, loss, forward, grads = self._update(state, x, y)
        logits = self.model.apply(new_state["params"], new_state["batch_stats"], x,
                                  train=False).logits
        outputs = {"train_loss": loss,
                   "train_accuracy": jnp.mean((jnp.argmax(logits, -1) == y).astype(loss.dtype))}
        outputs.update(self._measure(state, new_state, grads, x, y, step, data["cadences"],
                                     measure))
        if self.snapshots:
            outputs["snapshot"] = self._snapshot(state, forward, data["initial_params"], step,
                                                 snapshot)
        return new_state, outputs

    # -- the host loop's programs (XLA:CPU runs convolutions inside while/cond bodies far
    # slower, so on the CPU nothing of the network sits inside control flow; what is due is
    # decided on the host, and each measurement is its own small program, compiled once) --

    def _train_outputs(self, new_state, loss, x, y):
        logits = self.model.apply(new_state["params"], new_state["batch_stats"], x,
                                  train=False).logits
        return {"train_loss": loss,
                "train_accuracy": jnp.mean((jnp.argmax(logits, -1) == y).astype(loss.dtype))}

    def _host_step(self, state, data, step):
        TRACE_COUNTS["step"] += 1
        x, y = self._batch(data, step)
        new_state, loss, _, _ = self._update(state, x, y)
        return new_state, self._train_outputs(new_state, loss, x, y)

    def _measured_host_step(self, state, data, step):
        """A step that also returns what the measurements read: (new_state, outputs,
        grads g_t, x_t, y_t). Not donated: W_t and S_t stay alive for the measurements."""
        TRACE_COUNTS["measured_step"] += 1
        x, y = self._batch(data, step)
        new_state, loss, _, grads = self._update(state, x, y)
        return new_state, self._train_outputs(new_state, loss, x, y), grads, x, y

    def _snapshot_values(self, params, batch_stats, initial_params, x):
        config = self.train_config
        forward = self.model.apply(params, batch_stats, x, train=True)
        edges = histogram_edges(config.histogram_bins, config.histogram_range,
                                dtype=forward.logits.dtype)
        return {"activations": layer_activation_statistics(forward.pre_activations, edges,
                                                           self.layers),
                "init_distance": distance_from_init(params, initial_params, self.layers)}

    def _snapshot_program(self, params, batch_stats, initial_params, x):
        """Activation statistics of the train-mode forward pass at W_t (recomputed: one
        forward pass every snapshot_every steps) and the distance from initialization."""
        TRACE_COUNTS["snapshot"] += 1
        return self._snapshot_values(params, batch_stats, initial_params, x)

    def _probe_point(self, w_start, batch_stats, grads, x, y, s, *, train: bool):
        """(L(W(s)), ||grad L(W(s)) - g||) for a runtime step size s: one program for all s."""
        TRACE_COUNTS["probe_point"] += 1
        loss_and_grad = model_loss_and_grad(self.model, batch_stats, x, y, train=train)
        return probe_point(loss_and_grad, w_start, grads, self.train_config.learning_rate, s)

    def _probe_summary(self, losses, grad_diffs, grads, s_values):
        TRACE_COUNTS["probe_summary"] += 1
        return summarize_probes(jnp.stack(losses), jnp.stack(grad_diffs), grads,
                                self.train_config.learning_rate, s_values)._asdict()

    def _layer_forward(self, params, batch_stats, x, *, index: int, train: bool):
        TRACE_COUNTS["layer_forward"] += 1
        return layer_forward(self.model, params, batch_stats, index, x, train=train)

    def _layer_input_cotangent(self, params, batch_stats, x, z, cotangent, *, index: int,
                               train: bool):
        TRACE_COUNTS["layer_input_cotangent"] += 1
        return layer_input_cotangent(self.model, params, batch_stats, index, x, z, cotangent,
                                     train=train)

    def _layer_param_gradient(self, params, batch_stats, x, z, cotangent, *, index: int,
                              train: bool):
        TRACE_COUNTS["layer_param_gradient"] += 1
        return layer_param_gradient(self.model, params, batch_stats, index, x, z, cotangent,
                                    train=train)

    def _loss_cotangent(self, logits, y):
        TRACE_COUNTS["loss_cotangent"] += 1
        return loss_cotangent(logits, y)

    def _host_ics(self, params_t, params_t1, batch_stats, grads, x, y, train: bool):
        """Gradient ICS of every layer, chained from one-layer programs (dispatched, not
        awaited): a forward pass at W_{t+1} gives every layer's input; G'_i is then the
        forward pass of layers i.. at W_t, and the backward pass down to layer i."""
        modes = [train and matters for matters in self._mode_matters]
        last = len(self.layers) - 1
        layer_inputs, h = [x], x
        for index in range(last):  # the prefix: inputs of layers 1.. at W_{t+1}
            h = self.layer_forward(params_t1, batch_stats, h, index=index,
                                   train=modes[index])[1]
            layer_inputs.append(h)
        grads_prime = {}
        for i, name in enumerate(self.layers):
            inputs, outputs, h = [], [], layer_inputs[i]
            for index in range(i, last + 1):
                inputs.append(h)
                z, h = self.layer_forward(params_t, batch_stats, h, index=index,
                                          train=modes[index])
                outputs.append(z)
            cotangent = self.loss_cotangent(h, y)
            for index in range(last, i, -1):
                cotangent = self.layer_input_cotangent(
                    params_t, batch_stats, inputs[index - i], outputs[index - i], cotangent,
                    index=index, train=modes[index])
            grads_prime[name] = self.layer_param_gradient(
                params_t, batch_stats, inputs[0], outputs[0], cotangent, index=i,
                train=modes[i])
        return self.ics_compare(grads, grads_prime)

    def _ics_compare(self, grads, grads_prime):
        TRACE_COUNTS["ics_compare"] += 1
        return compare_gradients(grads, grads_prime, self.layers)._asdict()

    def host_step(self, state, data, step: int, due: dict[str, bool], snapshot: bool):
        """One step of the host loop: dispatches the step and the measurements that are
        ``due`` ({computation name: bool}) without waiting for any of them; about half of
        the probe points are dispatched from a worker thread (:meth:`_split_probes`).

        Returns:
            (new_state, outputs): device arrays, and NaN/0 numpy placeholders for what was
            not due (the layout of :attr:`chunk`'s outputs for one step).
        """
        if not self.computation_names and not self.snapshots:
            return self.step(state, data, np.int32(step))
        new_state, outputs, grads, x, y = self.measured_step(state, data, np.int32(step))
        dtype = np.dtype(self.model_config.param_dtype)
        due_probes = []
        for key, name in self.probe_names.items():
            if due[name]:
                due_probes.append(key)
            else:
                outputs[name] = self._probe_filler(len(key[2]), dtype)
        # Some probe points are dispatched from a second thread and run concurrently with
        # the main thread's work (see _split_probes); same programs, identical results.
        context = _trace_context()
        on_worker, on_main = self._split_probes(
            due_probes, sum(due[f"ics_{mode}"] for mode in self.ics_modes), context)
        probe_args = (state, new_state, grads, x, y, dtype)
        worker = (self._probe_worker().submit(
            self._dispatch_on_worker, on_worker, context, jax.config.jax_enable_x64,
            *probe_args) if on_worker else None)
        for mode in self.ics_modes:
            name, train = f"ics_{mode}", mode == "train"
            if not due[name]:
                outputs[name] = self._ics_filler(dtype)
                continue
            outputs[name] = self._host_ics(state["params"], new_state["params"],
                                           state["batch_stats"], grads, x, y, train)
        points = self._dispatch_probe_points(on_main, *probe_args)
        self._probes_compiled.update((key, context) for key, _ in on_main)
        if worker is not None:
            dispatched = worker.result()  # dispatched, not computed: no wait for results
            points.update(self._dispatch_probe_points(on_worker, *probe_args)
                          if dispatched is None else dispatched)
        for key in due_probes:
            s_values = key[2]
            results = [points[key, index] for index in range(len(s_values))]
            outputs[self.probe_names[key]] = self.probe_summary(
                tuple(r[0] for r in results), tuple(r[1] for r in results), grads,
                np.asarray(s_values, dtype))
        if self.snapshots:
            args = (state["params"], state["batch_stats"], data["initial_params"], x)
            if snapshot:
                outputs["snapshot"] = self.snapshot(*args)
            else:
                if self._snapshot_shapes is None:
                    self._snapshot_shapes = jax.eval_shape(self._snapshot_values, *args)
                outputs["snapshot"] = _numpy_filler(self._snapshot_shapes)
        return new_state, outputs

    def _dispatch_probe_points(self, points, state, new_state, grads, x, y, dtype) -> dict:
        """Dispatch ``probe_point`` for each (probe key, index of s): {(key, index): (loss,
        grad_diff)} as device arrays."""
        results = {}
        for key, index in points:
            start, mode, s_values = key
            origin = state if start == "pre_step" else new_state
            results[key, index] = self.probe_point(
                origin["params"], origin["batch_stats"], grads, x, y,
                np.asarray(s_values[index], dtype), train=mode == "train")
        return results

    def _dispatch_on_worker(self, points, context, x64: bool, *probe_args) -> dict | None:
        """:meth:`_dispatch_probe_points` on the worker thread, under the caller's JAX
        configuration. JAX's configuration contexts are thread-local and key its caches: the
        worker re-enters the caller's ``enable_x64``; if any other setting still differs
        (a ``jax.default_device`` context, say), it returns None and the main thread
        dispatches these points itself, so a program is never traced under other settings."""
        with jax.enable_x64(x64):
            if _trace_context() != context:
                return None
            return self._dispatch_probe_points(points, *probe_args)

    def _split_probes(self, keys: list, ics_due: int, context) -> tuple[list, list]:
        """The due probe points [(key, index of s)] for the worker thread and for the main
        thread.

        XLA:CPU runs the programs dispatched by one thread one after another, and a program
        of this size keeps the two cores of the benchmark machine busy only about half of
        the time; programs dispatched by two threads run concurrently (x1.12 for two
        forward+backward passes; docs/performance.md). The probe points are the largest
        independent pieces of a step, so the worker takes about half of the step's work in
        probe points, and the main thread the rest with the ICS (about 3 points' worth per
        mode). Only points of probe computations that already ran on the main thread under
        the same JAX configuration (``context``, :func:`_trace_context`) go to the worker, so
        the worker never traces a program.
        """
        points = [(key, index) for key in sorted(keys, key=lambda k: -len(k[2]))
                  for index in range(len(key[2]))]
        if not self.concurrent_probes:
            return [], points
        movable = [point for point in points if (point[0], context) in self._probes_compiled]
        on_worker = movable[:min(len(movable), (len(points) + 3 * ics_due) // 2)]
        taken = set(on_worker)
        return on_worker, [point for point in points if point not in taken]

    def _probe_worker(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="bnstudy-probes")
        return self._worker

    def _ics_filler(self, dtype):
        leaves, layers = self.num_leaves, len(self.layers)
        nan = functools.partial(np.full, fill_value=np.nan, dtype=dtype)
        return {"l2_leaf": nan(leaves), "cosine_leaf": nan(leaves), "l2_layer": nan(layers),
                "cosine_layer": nan(layers)}

    @staticmethod
    def _probe_filler(points, dtype):
        nan = functools.partial(np.full, fill_value=np.nan, dtype=dtype)
        return {"loss": nan(points), "grad_diff": nan(points), "step_norm": nan(points),
                "beta_smoothness": nan(())}

    def _chunk(self, state, data, start_step, total_steps, length: int | None = None):
        TRACE_COUNTS["chunk"] += 1
        length = self.train_config.steps_per_chunk if length is None else length
        steps = start_step + jnp.arange(length, dtype=jnp.int32)
        output_shapes = jax.eval_shape(lambda s, t: self._step(s, data, t)[1], state, steps[0])

        def body(state, step):
            def skip():
                return state, _filler(output_shapes)
            return jax.lax.cond(step < total_steps, lambda: self._step(state, data, step), skip)

        return jax.lax.scan(body, state, steps)

    def _evaluate(self, params, batch_stats, x_batches, y_batches, mask):
        TRACE_COUNTS["evaluate"] += 1

        def body(totals, batch):
            x, y, valid = batch
            logits = self.model.apply(params, batch_stats, x, train=False).logits
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            correct = (jnp.argmax(logits, -1) == y) & valid
            return (totals[0] + jnp.sum(jnp.where(valid, losses, 0.0)),
                    totals[1] + jnp.sum(correct, dtype=jnp.int32)), None

        zero = jnp.zeros((), x_batches.dtype)
        (loss_sum, correct), _ = jax.lax.scan(body, (zero, jnp.int32(0)),
                                              (x_batches, y_batches, mask))
        count = jnp.sum(mask, dtype=jnp.int32)
        return loss_sum / count, correct / count


def _trace_context():
    """JAX's thread-local configuration that keys its tracing and compilation caches
    (enable_x64, default device, default matmul precision, ...). No public API exposes it."""
    from jax._src import config as jax_config

    return jax_config.trace_context()


def _due(step, cadences: jax.Array):
    return jnp.any(step % cadences == 0)


def _numpy_filler(shapes):
    """Host-side placeholders (NaN for floats, 0 for integers) of the given shapes."""
    return jax.tree.map(lambda shape: np.full(
        shape.shape, np.nan if np.issubdtype(shape.dtype, np.floating) else 0, shape.dtype),
        shapes)


def _filler(shapes):
    """Placeholder outputs for skipped work: NaN for floats, 0 for integers."""
    def fill(shape):
        value = jnp.nan if jnp.issubdtype(shape.dtype, jnp.floating) else 0
        return jnp.full(shape.shape, value, shape.dtype)
    return jax.tree.map(fill, shapes)


def _maybe(flag: bool | None, predicate: Callable[[], Any], compute: Callable[[], Any]):
    """``compute()`` when due, else NaN/0 placeholders (nothing computed).

    ``flag`` None: decided on the device by ``predicate()`` (a cond); True / False: decided
    when tracing.
    """
    if flag is None:
        return jax.lax.cond(predicate(), compute, lambda: _filler(jax.eval_shape(compute)))
    return compute() if flag else _filler(jax.eval_shape(compute))


@functools.partial(jax.jit, static_argnums=(1, 2))
def epoch_permutations(key: jax.Array, epochs: int, num_examples: int) -> jax.Array:
    """[epochs, num_examples] int32: the shuffled order of each epoch, fold_in(key, epoch)."""
    return jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), num_examples))(
        jnp.arange(epochs)).astype(jnp.int32)


def batched_for_eval(x: np.ndarray, y: np.ndarray, batch_size: int, dtype):
    """Pad the test set to whole batches: x [nb, bs, ...], y [nb, bs], valid mask [nb, bs]."""
    n = x.shape[0]
    batches = -(-n // batch_size)
    pad = batches * batch_size - n
    x_padded = np.concatenate([np.asarray(x, dtype), np.zeros((pad, *x.shape[1:]), dtype)])
    y_padded = np.concatenate([np.asarray(y, np.int32), np.zeros(pad, np.int32)])
    mask = np.arange(batches * batch_size) < n
    shape = (batches, batch_size)
    return (jnp.asarray(x_padded.reshape(*shape, *x.shape[1:])),
            jnp.asarray(y_padded.reshape(shape)), jnp.asarray(mask.reshape(shape)))


# ----------------------------------------------------------------------------------------------
# The host-side driver
# ----------------------------------------------------------------------------------------------


def _check_inputs(model_config, x_train, y_train, x_test, y_test, measurement_configs):
    expected = (model_config.image_size, model_config.image_size, model_config.in_channels)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x_{name} must have shape [N, {', '.join(map(str, expected))}] "
                             f"for this ModelConfig, got {list(x.shape)}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y_{name} must have shape [{x.shape[0]}] (one label per image), "
                             f"got {list(y.shape)}")
    names = [config.name for config in measurement_configs]
    if len(set(names)) != len(names):
        raise ValueError(f"measurement config names must be unique, got {names}; give each "
                         "MeasurementConfig its own name")


def train(model_config: ModelConfig, train_config: TrainConfig,
          measurement_configs: Sequence[MeasurementConfig],
          x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
          progress: Callable[[int, int, dict[str, float]], None] | None = None,
          *, snapshots: bool = True) -> TrainingResult:
    """Train one model with SGD + momentum and measure it on every due step.

    Args:
        model_config, train_config: the network and the run.
        measurement_configs: protocols for ICS and probes (e.g. ``[PRESETS["blog"],
            PRESETS["paper"]]``), all measured on the same trajectory; may be empty.
        x_train, x_test: float32 [N, H, W, C] normalized images; y_train, y_test: int [N].
        progress: called on the host after every chunk as
            ``progress(steps_done, total_steps, metrics)``.
        snapshots: record activation statistics and distance from init.

    Returns:
        A :class:`TrainingResult`.
    """
    started = time.perf_counter()
    measurement_configs = tuple(measurement_configs)
    _check_inputs(model_config, x_train, y_train, x_test, y_test, measurement_configs)
    trainer = get_trainer(model_config, train_config, measurement_configs, snapshots)
    dtype = np.dtype(model_config.param_dtype)
    total = train_config.total_steps(x_train.shape[0])
    steps_per_epoch = train_config.steps_per_epoch(x_train.shape[0])
    chunk_len = train_config.steps_per_chunk
    key = jax.random.key(train_config.seed)
    init_key, shuffle_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)

    # Every Trainer program carries train_config.matmul_precision itself (PrecisionJit).
    state = trainer.init_state(init_key)
    initial_params = jax.device_get(state["params"])
    initial_batch_stats = jax.device_get(state["batch_stats"])
    epochs = -(-total // steps_per_epoch)
    data = {
        "x": jnp.asarray(np.asarray(x_train, dtype)),
        "y": jnp.asarray(np.asarray(y_train, np.int32)),
        # Only whole batches: the permutation is cut to steps_per_epoch * batch_size.
        "permutations": epoch_permutations(shuffle_key, epochs, x_train.shape[0])[
            :, : steps_per_epoch * train_config.batch_size],
        "initial_params": jax.tree.map(jnp.copy, state["params"]),  # state is donated
        "cadences": measurement_cadences(trainer, measurement_configs),
    }
    test_batches = batched_for_eval(x_test, y_test, train_config.eval_batch_size, dtype)

    evaluations = [(0, *_evaluate(trainer, state, test_batches))]
    chunks, chunk_seconds = [], []
    for start in range(0, total, chunk_len):
        chunk_started = time.perf_counter()
        state, outputs = run_chunk(trainer, state, data, start, total)
        chunk_seconds.append(time.perf_counter() - chunk_started)
        active = min(chunk_len, total - start)
        chunks.append(jax.tree.map(lambda a, n=active: a[:n], outputs))
        done = start + active
        metrics = {"train_loss": float(np.mean(outputs["train_loss"][:active])),
                   "train_accuracy": float(outputs["train_accuracy"][active - 1])}
        if done % train_config.eval_every == 0 or done == total:
            evaluations.append((done, *_evaluate(trainer, state, test_batches)))
            metrics.update(test_loss=evaluations[-1][1], test_accuracy=evaluations[-1][2])
        logger.info("[normalization=%s] step %d/%d %s", model_config.normalization, done, total,
                    ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if progress is not None:
            progress(done, total, metrics)
    final_distance = distance_from_init(state["params"], data["initial_params"],
                                        trainer.layers)
    final_distance = jax.device_get(final_distance)
    final_params = jax.device_get(state["params"])
    final_batch_stats = jax.device_get(state["batch_stats"])

    outputs = jax.tree.map(lambda *parts: np.concatenate(parts), *chunks)
    steps = np.arange(total)
    result = TrainingResult(
        layers=list(trainer.layers),
        leaf_paths=leaf_paths(initial_params),
        steps=steps,
        train_loss=outputs["train_loss"],
        train_accuracy=outputs["train_accuracy"],
        eval_steps=np.array([e[0] for e in evaluations]),
        test_loss=np.array([e[1] for e in evaluations]),
        test_accuracy=np.array([e[2] for e in evaluations]),
        measurements=_collect_measurements(trainer, measurement_configs, outputs, steps,
                                           initial_params),
        activation_stats={},
        init_distance={},
        initial_params=initial_params,
        initial_batch_stats=initial_batch_stats,
        final_params=final_params,
        final_batch_stats=final_batch_stats,
        model_config=model_config.to_dict(),
        train_config=train_config.to_dict(),
        measurement_configs=[config.to_dict() for config in measurement_configs],
    )
    if snapshots:
        result.activation_stats, result.init_distance = _collect_snapshots(
            trainer, outputs, steps, final_distance, total)
    result.wall_time_s = time.perf_counter() - started
    if len(chunk_seconds) > 1:
        result.compile_time_s = max(0.0, chunk_seconds[0] - float(np.median(chunk_seconds[1:])))
    return result


def run_chunk(trainer: Trainer, state, data, start: int, total: int):
    """One chunk of steps from ``start``; returns (state, outputs as numpy [steps_per_chunk]).

    With ``step_loop == "host"`` the steps are dispatched one by one (asynchronously: the
    host never waits for a step) and their outputs fetched together at the end; only steps
    below ``total`` run, so the outputs may be shorter.
    """
    if trainer.step_loop == "scan":
        state, outputs = trainer.chunk(state, data, np.int32(start), np.int32(total))
        return state, jax.device_get(outputs)  # the one host transfer of this chunk
    pieces = []
    cadences = {name: [int(c) for c in np.asarray(values)]
                for name, values in data["cadences"].items()}
    snapshot_every = trainer.train_config.snapshot_every
    for step in range(start, min(start + trainer.train_config.steps_per_chunk, total)):
        due = {name: any(step % c == 0 for c in values) for name, values in cadences.items()}
        snapshot = trainer.snapshots and step % snapshot_every == 0
        state, outputs = trainer.host_step(state, data, step, due, snapshot)
        pieces.append(outputs)
    pieces = jax.device_get(pieces)  # the one host transfer of this chunk
    return state, jax.tree.map(lambda *parts: np.stack(parts), *pieces)


def _evaluate(trainer: Trainer, state, test_batches) -> tuple[float, float]:
    loss, accuracy = trainer.evaluate(state["params"], state["batch_stats"], *test_batches)
    return float(loss), float(accuracy)


def _collect_measurements(trainer: Trainer, measurement_configs, outputs, steps,
                          initial_params):
    names = leaf_paths(initial_params)
    collected = {}
    for config in measurement_configs:
        rows = steps % config.measure_every == 0
        ics = outputs[trainer.ics_name(config)]
        probe = outputs[trainer.probe_name(config)]
        loss, grad_diff = probe["loss"][rows], probe["grad_diff"][rows]
        collected[config.name] = {
            "config": config.to_dict(),
            "measured_steps": steps[rows],
            "ics_l2": ics["l2_layer"][rows],
            "ics_cosine": ics["cosine_layer"][rows],
            "ics_l2_leaf": {n: ics["l2_leaf"][rows, i] for i, n in enumerate(names)},
            "ics_cosine_leaf": {n: ics["cosine_leaf"][rows, i] for i, n in enumerate(names)},
            "probe_s": np.asarray(config.probe_s),
            "probe_loss": loss,
            "grad_diff": grad_diff,
            "step_norm": probe["step_norm"][rows],
            "beta_smoothness": probe["beta_smoothness"][rows],
            "probe_loss_min": loss.min(axis=1) if len(loss) else loss[:, 0],
            "probe_loss_max": loss.max(axis=1) if len(loss) else loss[:, 0],
            "grad_diff_min": grad_diff.min(axis=1) if len(loss) else grad_diff[:, 0],
            "grad_diff_max": grad_diff.max(axis=1) if len(loss) else grad_diff[:, 0],
        }
    return collected


def _collect_snapshots(trainer: Trainer, outputs, steps, final_distance, total):
    config = trainer.train_config
    rows = steps % config.snapshot_every == 0
    snapshot = outputs["snapshot"]
    activation_stats = {
        "steps": steps[rows],
        "quantile_levels": np.asarray(QUANTILE_LEVELS),
        "hist_edges": np.asarray(histogram_edges(config.histogram_bins, config.histogram_range,
                                                 dtype=outputs["train_loss"].dtype)),
        "layers": {layer: {stat: values[rows] for stat, values in stats.items()}
                   for layer, stats in snapshot["activations"].items()},
    }
    distance = snapshot["init_distance"]
    init_distance = {
        "steps": np.append(steps[rows], total),
        **{kind: {layer: np.append(distance[kind][layer][rows], final_distance[kind][layer])
                  for layer in trainer.layers} for kind in ("abs", "rel")},
    }
    return activation_stats, init_distance
