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
  runs follow each other. About half the probe points go to a worker thread that the
  executor owns and closes: compiled executables never trace, so any thread may run them.

One orchestration of a measured step, :func:`measure_step`, serves both. It is given the
ops table (:class:`DirectOps` inside the scan's trace, :class:`CompiledOps` on the host), a
guard that runs each computation (under ``lax.cond`` on the due mask, or called, the host
passing only the due ones) and a dispatcher of probe points (:func:`inline_points`, or
:class:`ThreadedPoints` handing about half to the worker).
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable, Mapping, Sequence
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
    Ops,
    Spec,
    batch_of,
    computation_shapes,
    gradient_ics_by_layers,
    gradient_ics_vectorized,
    model_of,
    probe_computation,
    probe_points,
    snapshot,
    step_metrics,
    train_step,
    update,
    vectorized_points,
)

Guard = Callable[[str, Callable[[], Any]], Any]
"""``guard(name, compute)``: the output of the computation ``name`` ("snapshot" for the
snapshot) of a step, ``compute()`` when it runs."""

Dispatch = Callable[[Sequence[Computation], Callable[[Computation], list], int],
                    Mapping[str, Callable[[], list]]]
"""``dispatch(probes, points_of, ics)``: for the probe computations of a step, the arguments
of a computation's points (``points_of(c)``, :func:`bnstudy.core.step.probe_points`) and the
number of ICS computations this thread runs meanwhile, a thunk per computation name that
returns its evaluated points [(loss, grad_diff)]."""

ICS_POINTS = 3
"""What one ICS computation weighs, in probe points, when a step's work is split."""


def data_train_step(spec: Spec, state: TrainState, x_all, y_all, order):
    """The plain step on the batch that ``state.step`` selects."""
    return train_step(spec, state, batch_of(spec, x_all, y_all, order, state.step))


def data_measured_step(spec: Spec, state: TrainState, x_all, y_all, order):
    """The step and what the measurements read: (new state, metrics, g_t, x_t, y_t)."""
    x, y = batch_of(spec, x_all, y_all, order, state.step)
    new_state, loss, grads, _ = update(spec, state, x, y)
    return new_state, step_metrics(spec, new_state, loss, x, y), grads, x, y


def measure_step(ops: Ops, spec: Spec, computations: Sequence[Computation], snapshots: bool,
                 state: TrainState, new_state: TrainState, grads, x, y, *, guard: Guard,
                 dispatch: Dispatch, vectorized: bool = False,
                 x_snapshot=None) -> dict[str, Any]:
    """The measurements of one step t: every computation of ``computations`` (ICS and probes,
    from W_t, W_{t+1}, g_t and the batch x_t, y_t) and, with ``snapshots``, the snapshot of
    W_t; {name: output}.

    The probe points of every probe computation go to ``dispatch`` first, all at once (a
    worker thread starts on its share), then each ICS runs, then each probe summary from its
    points, then the snapshot; ``guard`` runs each of them. ``vectorized``: the ICS of all
    layers as one vmap (:func:`bnstudy.core.step.gradient_ics_vectorized`; inside one traced
    program only), else layer by layer on ``ops``. ``x_snapshot``: the samples of the
    snapshot when they are not the batch (a run on the moment set, :mod:`bnstudy.core.moments`).
    """
    probes = [c for c in computations if c.kind == "probe"]
    ics = [c for c in computations if c.kind == "ics"]
    points = dispatch(probes, lambda c: probe_points(c, state, new_state, grads, x, y,
                                                     x.dtype), len(ics))
    by_layers = (functools.partial(gradient_ics_vectorized, spec) if vectorized
                 else functools.partial(gradient_ics_by_layers, ops, spec))
    outputs = {c.name: guard(c.name, functools.partial(
        by_layers, state.params, new_state.params, state.batch_stats, grads, x, y,
        train=c.train)) for c in ics}
    for c in probes:
        outputs[c.name] = guard(c.name, lambda c=c: probe_computation(
            ops, c, points[c.name](), grads, learning_rate_of(state), x.dtype))
    if snapshots:
        outputs["snapshot"] = guard("snapshot", functools.partial(
            ops["snapshot"], state.params, state.batch_stats, state.initial_params,
            x if x_snapshot is None else x_snapshot))
    return outputs


def inline_points(ops: Ops, probes: Sequence[Computation],
                  points_of: Callable[[Computation], list],
                  ics: int) -> dict[str, Callable[[], list]]:
    """A :data:`Dispatch` that evaluates each computation's points where they are asked for
    (inside its ``lax.cond`` branch on the scan loop), one after another."""
    del ics  # nothing runs beside this thread
    return {c.name: functools.partial(_evaluate, ops, points_of, c) for c in probes}


def _evaluate(ops: Ops, points_of: Callable[[Computation], list], computation) -> list:
    return [ops["probe_point"](*args, **kwargs) for args, kwargs in points_of(computation)]


def split_points(points: Sequence, ics: int) -> tuple[list, list]:
    """(the worker's, the main thread's) of a step's probe points: the worker takes the first
    ones, about half the step's work, an ICS computation (which stays on the main thread)
    weighing :data:`ICS_POINTS` points."""
    share = min(len(points), (len(points) + ICS_POINTS * ics) // 2)
    return list(points[:share]), list(points[share:])


class ThreadedPoints:
    """A :data:`Dispatch` for the host loop: the points of the largest computations first,
    :func:`split_points`'s first share to ``worker`` (none without one), the rest dispatched
    from this thread at once. Programs are compiled here, so the worker never traces."""

    def __init__(self, ops: CompiledOps, worker: concurrent.futures.Executor | None):
        self.ops, self.worker = ops, worker

    def __call__(self, probes: Sequence[Computation], points_of: Callable[[Computation], list],
                 ics: int) -> dict[str, Callable[[], list]]:
        keyed = [((c.name, i), args, kwargs)
                 for c in sorted(probes, key=lambda c: -len(c.probe_s))
                 for i, (args, kwargs) in enumerate(points_of(c))]
        on_worker, on_main = (split_points(keyed, ics) if self.worker is not None
                              else ([], keyed))
        job = None
        if on_worker:
            executables = [(self.ops.resolve("probe_point", *args, **kwargs), args)
                           for _, args, kwargs in on_worker]
            job = self.worker.submit(lambda: [exe(*args) for exe, args in executables])
        evaluated = {key: self.ops["probe_point"](*args, **kwargs)
                     for key, args, kwargs in on_main}

        @functools.cache
        def every_point() -> dict:
            if job is not None:
                evaluated.update(zip((key for key, _, _ in on_worker), job.result()))
            return evaluated

        return {c.name: (lambda c=c: [every_point()[c.name, i]
                                      for i in range(len(c.probe_s))]) for c in probes}


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


def scan_chunk(spec: Spec, state: TrainState, x_all, y_all, order, due, snap_due, active,
               x_snapshot=None, *, computations: tuple[Computation, ...], snapshots: bool):
    """One chunk as one program: a scan over steps (one run; the executor vmaps it), every
    computation of :func:`measure_step` under a ``lax.cond`` on its due flag."""
    ops = DirectOps(spec)
    vectorized = model_of(spec.model_config).vectorizes_measurements

    def measured(state, due_t, snap_t):
        new_state, metrics, grads, x, y = data_measured_step(spec, state, x_all, y_all, order)
        flags = {"snapshot": snap_t, **{c.name: due_t[i] for i, c in enumerate(computations)}}

        def guard(name, compute):
            return jax.lax.cond(flags[name], compute, lambda: _filler(jax.eval_shape(compute)))

        dispatch = (functools.partial(vectorized_points, spec) if vectorized
                    else functools.partial(inline_points, ops))
        return new_state, {**metrics, **measure_step(
            ops, spec, computations, snapshots, state, new_state, grads, x, y, guard=guard,
            dispatch=dispatch, vectorized=vectorized, x_snapshot=x_snapshot)}

    def body(state, inputs):
        due_t, snap_t, active_t = inputs
        run = functools.partial(measured, state, due_t, snap_t)
        return jax.lax.cond(active_t, run,
                            lambda: (state, _filler(jax.eval_shape(run)[1])))

    return jax.lax.scan(body, state, (due, snap_due, active))


def _run_now(name: str, compute: Callable[[], Any]) -> Any:
    """The host loop's :data:`Guard`: it passes only what is due."""
    del name
    return compute()


class Executor:
    """Runs chunks of a plan on a stacked state; a context manager that owns its thread.

    Args:
        spec: the configuration of the programs.
        plan: what is measured when.
        loop: "scan" or "host" (see the module docstring).
        concurrent_probes: the host loop dispatches about half the probe points from a
            worker thread, named ``bnstudy-probes`` (identical results; x1.15 on 2 CPU
            cores). It exists while the executor is open.
    """

    def __init__(self, spec: Spec, plan: MeasurementPlan, loop: str,
                 concurrent_probes: bool = True):
        self.spec, self.plan, self.loop = spec, plan, loop
        self.ops = CompiledOps(spec)
        self.concurrent_probes = concurrent_probes and loop == "host"
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._points = ThreadedPoints(self.ops, None)
        self._snapshot_shapes = None

    def __enter__(self) -> Executor:
        if self.concurrent_probes:
            self._worker = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="bnstudy-probes")
            self._points = ThreadedPoints(self.ops, self._worker)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker, self._points = None, ThreadedPoints(self.ops, None)

    def run_chunk(self, states: TrainState, data: dict[str, Any], first: int,
                  stop: int) -> tuple[TrainState, dict[str, Any]]:
        """Steps first..stop-1 of every run: (states, outputs numpy [R, stop - first, ...]),
        the outputs of a diverged run masked from its divergence on (:func:`mask_diverged`).

        ``data`` holds x [N, ...], y [N] and orders [R, E, N'] (each run's data order: its
        seed's), and optionally x_snapshot [M, ...], the snapshot's samples (else the batch).
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
                           in_axes=(None, 0, None, None, 0, None, None, None, None))
        args = (states, data["x"], data["y"], data["orders"], due, snap_due, active,
                data.get("x_snapshot"))
        program = compiled("scan_chunk", vmapped, self.spec, args, donate=(0,),
                           key_extra=static)
        states, outputs = program(*args)
        outputs, diverged_at = jax.device_get((outputs, states.diverged_at))  # the one transfer
        return states, mask_diverged(jax.tree.map(lambda a: a[:, : stop - first], outputs),
                                     np.asarray(diverged_at), first)

    def _host_run(self, state, data, order, first, stop):
        """One run's steps first..stop-1: a measured step where anything is due (only the
        due computations run), else the plain step; NaN where nothing was computed."""
        pieces = []
        due = self.plan.due_mask(np.arange(first, stop), self.spec.model_config)
        snap = self.plan.snapshot_mask(np.arange(first, stop))
        for offset in range(stop - first):
            computations = [c for c, is_due in zip(self.plan.computations, due[offset])
                            if is_due]
            if computations or snap[offset]:
                new_state, metrics, grads, x, y = call(
                    "measured_step", data_measured_step, self.spec, state, data["x"],
                    data["y"], order)
                outputs = {**metrics, **measure_step(
                    self.ops, self.spec, computations, bool(snap[offset]), state, new_state,
                    grads, x, y, guard=_run_now, dispatch=self._points,
                    x_snapshot=data.get("x_snapshot"))}
                state = new_state
            else:
                state, outputs = call("train_step", data_train_step, self.spec, state,
                                      data["x"], data["y"], order, donate=(0,))
            pieces.append(self._filled(dict(outputs), state, data))
        return state, pieces

    def _filled(self, outputs: dict[str, Any], state, data) -> dict[str, Any]:
        """``outputs`` with a NaN placeholder for every computation (and the snapshot) that
        did not run."""
        dtype = data["x"].dtype
        for computation in self.plan.computations:
            if computation.name not in outputs:
                outputs[computation.name] = {
                    key: np.full(shape, np.nan, dtype)
                    for key, shape in computation_shapes(self.spec, computation).items()}
        if self.plan.snapshots and "snapshot" not in outputs:
            outputs["snapshot"] = _numpy_filler(self._snapshot_shape(state, data))
        return outputs

    def _snapshot_shape(self, state, data):
        if self._snapshot_shapes is None:
            samples = data.get("x_snapshot")
            x = jax.ShapeDtypeStruct(
                (self.spec.program.batch_size if samples is None else samples.shape[0],
                 *data["x"].shape[1:]), data["x"].dtype)
            self._snapshot_shapes = jax.eval_shape(
                functools.partial(snapshot, self.spec), state.params, state.batch_stats,
                state.initial_params, x)
        return self._snapshot_shapes
