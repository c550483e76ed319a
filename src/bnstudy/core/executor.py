"""The executor: runs the measurement plan over a stacked training state, chunk by chunk,
with one device-to-host transfer per chunk.

Two ways to run a chunk, the same numbers (tests compare them):

* ``scan`` (accelerators): one compiled program per chunk, a ``lax.scan`` over its steps,
  ``vmap``-ed over the run axis of (seed, learning rate) pairs (so it shards over devices);
  each measurement sits under a ``lax.cond`` on the plan's due mask, which all runs share.
* ``host`` (CPUs): XLA:CPU runs a convolution inside a ``while`` loop ~10x slower and a
  ``vmap`` over seeds ~3.8x slower than one seed after another (docs/performance.md), and
  it compiles a whole measured step in minutes. So the steps of a chunk are dispatched one
  by one, asynchronously, as small programs compiled once (:mod:`bnstudy.core.programs`);
  runs follow each other. Half the probe points go to a worker thread that the executor
  owns and closes: compiled executables never trace, so any thread may run them.

Both call the same measurement definitions (:mod:`bnstudy.core.step`).
"""

from __future__ import annotations

import concurrent.futures
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bnstudy.core.plan import Computation, MeasurementPlan
from bnstudy.core.programs import CompiledOps, DirectOps, call, compiled
from bnstudy.core.state import (
    TrainState,
    learning_rate_of,
    num_runs,
    run_slice,
    stack_states,
)
from bnstudy.core.step import (
    Spec,
    batch_of,
    computation_shapes,
    gradient_ics_by_layers,
    probe_computation,
    probe_points,
    snapshot,
    step_metrics,
    train_step,
    update,
)


def data_train_step(spec: Spec, state: TrainState, x_all, y_all, order):
    """The plain step on the batch that ``state.step`` selects."""
    return train_step(spec, state, batch_of(spec, x_all, y_all, order, state.step))


def data_measured_step(spec: Spec, state: TrainState, x_all, y_all, order):
    """The step and what the measurements read: (new state, metrics, g_t, x_t, y_t)."""
    x, y = batch_of(spec, x_all, y_all, order, state.step)
    new_state, loss, grads, _ = update(spec, state, x, y)
    return new_state, step_metrics(spec, new_state, loss, x, y), grads, x, y


def _measure(ops, spec: Spec, computation: Computation, state, new_state, grads, x, y):
    """One computation of a step (its probe points evaluated one after another)."""
    if computation.kind == "ics":
        return gradient_ics_by_layers(ops, spec, state.params, new_state.params,
                                      state.batch_stats, grads, x, y, train=computation.train)
    points = probe_points(computation, state, new_state, grads, x, y, x.dtype)
    evaluated = [ops["probe_point"](*args, **kwargs) for args, kwargs in points]
    return probe_computation(ops, computation, evaluated, grads, learning_rate_of(state),
                             x.dtype)


def _filler(shapes):
    return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan if jnp.issubdtype(
        s.dtype, jnp.floating) else 0, s.dtype), shapes)


def _numpy_filler(shapes):
    return jax.tree.map(lambda s: np.full(s.shape, np.nan if np.issubdtype(
        s.dtype, np.floating) else 0, s.dtype), shapes)


def mask_diverged(outputs: dict[str, Any], diverged_at: np.ndarray,
                  first: int) -> dict[str, Any]:
    """Chunk outputs [R, n, ...] (numpy) with every value of a diverged run's steps
    t >= diverged_at replaced: NaN (integer counts: 0, as on steps without a snapshot).

    Only ``train_loss`` at t = diverged_at keeps its value: it is the loss L(W_t) whose
    gradient or update was not finite (often inf or NaN itself). The rest would describe a
    state that never existed (W_{t+1}) or the frozen W_t presented as a later step.
    """
    steps = first + np.arange(outputs["train_loss"].shape[1])
    diverged = diverged_at[:, None]
    after = (diverged >= 0) & (steps[None, :] >= diverged)  # [S, n]
    if not after.any():
        return outputs

    def mask(leaf: np.ndarray, rows: np.ndarray) -> np.ndarray:
        rows = rows.reshape(rows.shape + (1,) * (leaf.ndim - 2))
        return np.where(rows, np.nan if np.issubdtype(leaf.dtype, np.floating) else 0, leaf)

    loss_rows = after & (steps[None, :] != diverged)
    return {name: mask(value, loss_rows) if name == "train_loss"
            else jax.tree.map(lambda leaf: mask(leaf, after), value)
            for name, value in outputs.items()}


def scan_chunk(spec: Spec, state: TrainState, x_all, y_all, order, due, snap_due, active, *,
               computations: tuple[Computation, ...], snapshots: bool):
    """One chunk as one program: a scan over steps (one run; the executor vmaps it)."""
    ops = DirectOps(spec)

    def measured(state, due_t, snap_t):
        new_state, metrics, grads, x, y = data_measured_step(spec, state, x_all, y_all, order)
        outputs = dict(metrics)
        for i, computation in enumerate(computations):
            compute = functools.partial(_measure, ops, spec, computation, state, new_state,
                                        grads, x, y)
            outputs[computation.name] = jax.lax.cond(
                due_t[i], compute, lambda c=compute: _filler(jax.eval_shape(c)))
        if snapshots:
            take = functools.partial(snapshot, spec, state.params, state.batch_stats,
                                     state.initial_params, x)
            outputs["snapshot"] = jax.lax.cond(snap_t, take,
                                               lambda: _filler(jax.eval_shape(take)))
        return new_state, outputs

    def body(state, inputs):
        due_t, snap_t, active_t = inputs
        run = functools.partial(measured, state, due_t, snap_t)
        return jax.lax.cond(active_t, run,
                            lambda: (state, _filler(jax.eval_shape(run)[1])))

    return jax.lax.scan(body, state, (due, snap_due, active))


class Executor:
    """Runs chunks of a plan on a stacked state; a context manager that owns its thread.

    Args:
        spec: the configuration of the programs.
        plan: what is measured when.
        loop: "scan" or "host" (see the module docstring).
        concurrent_probes: the host loop dispatches about half the probe points from a
            worker thread (identical results; x1.15 on 2 CPU cores).
    """

    def __init__(self, spec: Spec, plan: MeasurementPlan, loop: str,
                 concurrent_probes: bool = True):
        self.spec, self.plan, self.loop = spec, plan, loop
        self.ops = CompiledOps(spec)
        self.concurrent_probes = concurrent_probes and loop == "host"
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._snapshot_shapes = None

    def __enter__(self) -> Executor:
        if self.concurrent_probes:
            self._worker = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="bnstudy-probes")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    def run_chunk(self, states: TrainState, data: dict[str, Any], first: int,
                  stop: int) -> tuple[TrainState, dict[str, Any]]:
        """Steps first..stop-1 of every run: (states, outputs numpy [R, stop - first, ...]),
        the outputs of a diverged run masked from its divergence on (:func:`mask_diverged`).

        ``data`` holds x [N, ...], y [N] and orders [R, E, N'] (each run's data order: its
        seed's).
        """
        if self.loop == "scan":
            return self._scan(states, data, first, stop)
        runs = [self._host_run(run_slice(states, r), data, data["orders"][r], first, stop)
                for r in range(num_runs(states))]
        per_run, diverged_at = jax.device_get(  # the one transfer
            ([pieces for _, pieces in runs], [state.diverged_at for state, _ in runs]))
        outputs = [jax.tree.map(lambda *steps: np.stack(steps), *pieces)
                   for pieces in per_run]
        stacked = jax.tree.map(lambda *values: np.stack(values), *outputs)
        return (stack_states([state for state, _ in runs]),
                mask_diverged(stacked, np.asarray(diverged_at), first))

    def _scan(self, states, data, first, stop):
        length = self.plan.steps_per_chunk
        steps = np.arange(first, first + length)
        active = steps < stop
        due = self.plan.due_mask(steps, self.spec.model_config) & active[:, None]
        snap_due = self.plan.snapshot_mask(steps) & active
        static = (("computations", self.plan.computations), ("snapshots", self.plan.snapshots))
        vmapped = jax.vmap(functools.partial(scan_chunk, **dict(static)),
                           in_axes=(None, 0, None, None, 0, None, None, None))
        args = (states, data["x"], data["y"], data["orders"], due, snap_due, active)
        program = compiled("scan_chunk", vmapped, self.spec, args, donate=(0,),
                           key_extra=static)
        states, outputs = program(*args)
        outputs, diverged_at = jax.device_get((outputs, states.diverged_at))  # the one transfer
        return states, mask_diverged(jax.tree.map(lambda a: a[:, : stop - first], outputs),
                                     np.asarray(diverged_at), first)

    def _host_run(self, state, data, order, first, stop):
        pieces = []
        due = self.plan.due_mask(np.arange(first, stop), self.spec.model_config)
        snap = self.plan.snapshot_mask(np.arange(first, stop))
        for offset in range(stop - first):
            if due[offset].any() or snap[offset]:
                state, outputs = self._host_measured(state, data, order, due[offset],
                                                     bool(snap[offset]))
            else:
                state, outputs = call("train_step", data_train_step, self.spec, state,
                                      data["x"], data["y"], order, donate=(0,))
                outputs = dict(outputs)
                self._fill(outputs, data["x"].dtype)
                if self.plan.snapshots:
                    outputs["snapshot"] = self._snapshot_filler(state, data)
            pieces.append(outputs)
        return state, pieces

    def _host_measured(self, state, data, order, due, snap: bool):
        new_state, metrics, grads, x, y = call("measured_step", data_measured_step,
                                               self.spec, state, data["x"], data["y"], order)
        outputs = dict(metrics)
        computations = [c for c, is_due in zip(self.plan.computations, due) if is_due]
        worker_points, main_points = self._split(computations, state, new_state, grads, x, y)
        job = None
        if worker_points:
            executables = [(self.ops.resolve("probe_point", *a, **k), a)
                           for _, a, k in worker_points]  # compiled here, run there
            job = self._worker.submit(lambda: [exe(*a) for exe, a in executables])
        evaluated = {(c.name, i): self.ops["probe_point"](*a, **k)
                     for (c, i), a, k in main_points}
        for computation in computations:
            if computation.kind == "ics":
                outputs[computation.name] = _measure(self.ops, self.spec, computation, state,
                                                     new_state, grads, x, y)
        if job is not None:
            evaluated.update(zip(((c.name, i) for (c, i), _, _ in worker_points),
                                 job.result()))
        for computation in computations:
            if computation.kind == "probe":
                points = [evaluated[computation.name, i]
                          for i in range(len(computation.probe_s))]
                outputs[computation.name] = probe_computation(
                    self.ops, computation, points, grads, learning_rate_of(state), x.dtype)
        self._fill(outputs, x.dtype)
        if self.plan.snapshots:
            outputs["snapshot"] = (call("snapshot", snapshot, self.spec, state.params,
                                        state.batch_stats, state.initial_params, x)
                                   if snap else self._snapshot_filler(state, data))
        return new_state, outputs

    def _split(self, computations, state, new_state, grads, x, y):
        """Probe points [((computation, index), args, kwargs)] for the worker and the main
        thread: the worker takes about half the step's work (an ICS counts as 3 points)."""
        points = [((c, i), a, k) for c in sorted(computations, key=lambda c: -len(c.probe_s))
                  if c.kind == "probe"
                  for i, (a, k) in enumerate(probe_points(c, state, new_state, grads, x, y,
                                                          x.dtype))]
        if self._worker is None:
            return [], points
        ics = sum(c.kind == "ics" for c in computations)
        share = min(len(points), (len(points) + 3 * ics) // 2)
        return points[:share], points[share:]

    def _fill(self, outputs, dtype) -> None:
        for computation in self.plan.computations:
            if computation.name not in outputs:
                shapes = computation_shapes(self.spec, computation)
                outputs[computation.name] = {k: np.full(s, np.nan, dtype)
                                             for k, s in shapes.items()}

    def _snapshot_filler(self, state, data):
        if self._snapshot_shapes is None:
            x = jax.ShapeDtypeStruct((self.spec.program.batch_size, *data["x"].shape[1:]),
                                     data["x"].dtype)
            self._snapshot_shapes = jax.eval_shape(
                functools.partial(snapshot, self.spec), state.params, state.batch_stats,
                state.initial_params, x)
        return _numpy_filler(self._snapshot_shapes)
