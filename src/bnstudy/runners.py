"""A study's nodes on a Dask cluster: ``kedro run --runner=bnstudy.runners.DaskRunner``.

After the ``DaskRunner`` of Kedro's deployment guide ("Distributed deployment with Dask",
docs.kedro.org: Deploy > Dask), written for Kedro 1.x's ``AbstractRunner``; docs/scaling.md
says how to start a cluster (one workstation, a multi-GPU host, Slurm, Kubernetes) and what is
tested. What a run does:

* **Where.** The scheduler at ``--runner-params address=...`` or ``$BNSTUDY_DASK_SCHEDULER``;
  without one, a ``LocalCluster`` on 127.0.0.1 that the run starts and closes.
* **Tasks.** One task per node, submitted once the tasks that write its inputs have finished,
  so the scheduler hands it to a free worker: a study's training namespaces, independent until
  the analysis, train in parallel, one per worker. Datasets pass through the catalog's files,
  so every worker runs in the project's root, as the driver does (a worker elsewhere is
  refused), and on several hosts the data folder is a shared filesystem or an fsspec URL. A
  ``MemoryDataset`` lives in one process: the node that writes one and the nodes that read it
  make one task, run in order on one worker (ingestion's raw arrays, a study's report parts).
* **Hooks** run where Kedro runs them: pipeline hooks in the driver, node and dataset hooks
  around each node on its worker. As in Kedro's ParallelRunner, a worker builds its own plugin
  manager (one cannot be pickled); it registers copies of the driver's hooks as the pipeline
  hooks left them, which is what a forked ParallelRunner worker inherits: kedro-mlflow's knows
  the run it logs parameters to.
* **MLflow.** A worker runs each task in a thread of its own in which the study's run is the
  active MLflow run, as in the driver: parameters, the nested model runs, metrics and artifacts
  land where a sequential run puts them. Workers in other processes cannot share a SQLite file,
  so a local store is refused: track to a server (``mlflow server``, docs/scaling.md).
* **Failures.** A node that raises fails the run with the worker's traceback once the tasks
  already running have finished (Kedro's ParallelRunner waits for its pool alike); finished
  nodes' outputs stay. When a worker dies mid-task, Dask reruns the task on another worker,
  and training resumes from its checkpoints (docs/reliability.md); rerunning the command after
  any failure does the same.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any
from urllib.parse import urlparse

from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from kedro.runner import AbstractRunner, Task

from bnstudy.errors import UserError
from bnstudy.third_party_warnings import hide_known_deprecations

try:
    from distributed import Client, LocalCluster, WorkerPlugin, get_worker, wait
except ImportError as missing:  # pragma: no cover - the dask extra is part of the dev install
    raise ImportError("bnstudy.runners needs Dask: pip install -c constraints.txt -e \".[dask]\" "
                      "(docs/scaling.md)") from missing

logger = logging.getLogger(__name__)

SCHEDULER_VARIABLE = "BNSTUDY_DASK_SCHEDULER"
"""The scheduler's address (``tcp://host:8786``) when ``--runner-params address=`` is not given."""

LOCAL_STORES = ("", "file", "sqlite")
"""MLflow store schemes that live in one process's files: a Dask run refuses them."""


class ClusterSetupError(UserError):
    """The cluster or the tracking cannot serve a distributed run; the message says the fix."""


@dataclass(frozen=True)
class NodeTask:
    """One Dask task: nodes that run in order in one process.

    Attributes:
        nodes: one node, or nodes joined by in-memory datasets, in the pipeline's order.
        after: the indices (in the plan) of the tasks that write this one's inputs.
        reloaded: its inputs read from the catalog's files, written by other tasks or runs.
        returned: its in-memory outputs that the pipeline returns: sent back to the driver.
    """

    nodes: tuple[Node, ...]
    after: frozenset[int]
    reloaded: tuple[str, ...]
    returned: tuple[str, ...]

    @property
    def label(self) -> str:
        return ", ".join(node.name for node in self.nodes)


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs from the driver to run a node as the driver would.

    Attributes:
        project: the driver's working directory, the project's root.
        plugins: the driver's hooks, ``(name, plugin)`` in the order they were registered.
        tracking_uri: the MLflow tracking server; None without an active run.
        run_id: the study's MLflow run, active in the driver.
        is_async: load and save a node's datasets in threads (Kedro's ``is_async``).
    """

    project: str
    plugins: tuple[tuple[str, Any], ...]
    tracking_uri: str | None
    run_id: str | None
    is_async: bool


@dataclass(frozen=True)
class Finished:
    """A task's answer: the worker that ran it and its in-memory outputs for the driver."""

    worker: str
    outputs: dict[str, Any]


class DaskRunner(AbstractRunner):
    """Runs a pipeline's nodes on a Dask cluster (module docstring; docs/scaling.md).

    Args:
        address: the scheduler's address; default ``$BNSTUDY_DASK_SCHEDULER``; neither: a
            ``LocalCluster`` on 127.0.0.1 for this run.
        n_workers: the LocalCluster's worker processes; default one per task that can run at
            once (a study: one per trained model), at most one per CPU core.
        is_async: load and save each node's datasets in threads (Kedro's option).
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None,
                 is_async: bool = False) -> None:
        super().__init__(is_async=is_async)
        self.address = address or os.environ.get(SCHEDULER_VARIABLE) or None
        self.n_workers = n_workers
        self.is_async = is_async

    def __repr__(self) -> str:  # the ``runner`` of Kedro's run parameters (an MLflow tag)
        return f"DaskRunner(address={self.address or 'LocalCluster'})"

    def _get_executor(self, max_workers: int) -> None:
        """None: Kedro 1.x's AbstractRunner requires the method; Dask schedules instead."""
        return None

    def _run(self, pipeline: Pipeline, catalog: Any, hook_manager: Any = None,
             run_id: str | None = None) -> None:
        """Submit each task of :func:`plan_tasks` when its inputs are written; raise the first
        failure once the running tasks have finished."""
        tasks = plan_tasks(pipeline, in_memory_datasets(pipeline, catalog))
        if not tasks:  # e.g. --only-missing-outputs with nothing missing: no cluster to start
            return
        uri, parent = tracking_of_this_run()
        setup = WorkerSetup(os.getcwd(), driver_plugins(hook_manager), uri, parent, self.is_async)
        workers = self.n_workers or min(os.cpu_count() or 1, parallel_width(tasks))
        with connect(self.address, workers) as client:
            def submit(task: NodeTask) -> Any:
                return client.submit(run_task, task, catalog, setup, run_id, pure=False,
                                     key=f"{task.label}-{run_id}")

            run_tasks(tasks, submit, catalog)


# ----------------------------------------------------------------------------- the plan


def in_memory_datasets(pipeline: Pipeline, catalog: Any) -> set[str]:
    """The pipeline's datasets that are ``MemoryDataset``s (declared, or Kedro's default for a
    dataset the catalog does not name)."""
    return {name for name in pipeline.datasets()
            if isinstance(catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset)}


def plan_tasks(pipeline: Pipeline, in_memory: set[str]) -> list[NodeTask]:
    """The pipeline's nodes as Dask tasks, in an order that runs each after those it reads.

    A node is a task of its own unless an in-memory dataset joins it to others: then the
    writer and its readers are one task, and so is every node on a path between two nodes of
    a task (the tasks' order would otherwise go in a circle).
    """
    depends = pipeline.node_dependencies
    group = {node: frozenset([node]) for node in pipeline.nodes}

    def merge(nodes: set[Node]) -> None:
        merged = frozenset().union(*(group[node] for node in nodes))
        group.update(dict.fromkeys(merged, merged))

    producer = {name: node for node in pipeline.nodes for name in node.outputs}
    for node in pipeline.nodes:
        merge({node, *(producer[name] for name in node.inputs if name in in_memory and name in producer)})
    while True:
        graph = {members: {group[parent] for node in members for parent in depends[node]} - {members}
                 for members in set(group.values())}
        try:
            order = list(TopologicalSorter(graph).static_order())
            break
        except CycleError as cycle:
            merge({node for members in cycle.args[1] for node in members})
    return _tasks_in_order(pipeline, order, graph, in_memory)


def _tasks_in_order(pipeline: Pipeline, order: list[frozenset[Node]],
                    graph: dict[frozenset[Node], set[frozenset[Node]]],
                    in_memory: set[str]) -> list[NodeTask]:
    index = {members: position for position, members in enumerate(order)}
    returned = pipeline.outputs() & in_memory
    tasks = []
    for members in order:
        nodes = tuple(node for node in pipeline.nodes if node in members)
        written = {name for node in nodes for name in node.outputs}
        read = {name for node in nodes for name in node.inputs} - written
        tasks.append(NodeTask(nodes, frozenset(index[parent] for parent in graph[members]),
                              tuple(sorted(read - in_memory)), tuple(sorted(written & returned))))
    return tasks


def parallel_width(tasks: list[NodeTask]) -> int:
    """The most tasks that are ready at once when each finishes in turn (at least 1)."""
    sorter = TopologicalSorter({index: task.after for index, task in enumerate(tasks)})
    sorter.prepare()
    width = 1
    while sorter.is_active():
        ready = sorter.get_ready()
        width = max(width, len(ready))
        sorter.done(*ready)
    return width


# ----------------------------------------------------------------------------- the driver


def tracking_of_this_run() -> tuple[str | None, str | None]:
    """``(tracking URI, run id)`` of the MLflow run active in the driver (kedro-mlflow's, the
    study's run), ``(None, None)`` without one.

    Raises:
        ClusterSetupError: the store is a local one (a SQLite file, a folder).
    """
    import mlflow

    active = mlflow.active_run()
    if active is None:
        return None, None
    return check_shared_store(mlflow.get_tracking_uri()), active.info.run_id


def check_shared_store(uri: str) -> str:
    """``uri``, if processes on other hosts can log to it (a server, a database server).

    Raises:
        ClusterSetupError: a local store (a SQLite file, a folder), with the fix.
    """
    if urlparse(uri).scheme in LOCAL_STORES:
        raise ClusterSetupError(
            f"MLflow tracks to {uri}, a local store: Dask workers run in other processes (on "
            "other hosts too) and cannot share it. Start a tracking server, e.g. `setsid mlflow "
            "server --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db &`, and "
            "run with MLFLOW_TRACKING_URI=http://127.0.0.1:5000 (docs/scaling.md).")
    return uri


def driver_plugins(hook_manager: Any) -> tuple[tuple[str, Any], ...]:
    """The hooks registered with the session's plugin manager, in order, each checked to be
    picklable (a worker receives copies)."""
    import cloudpickle
    from pluggy import PluginManager

    if not isinstance(hook_manager, PluginManager):
        return ()
    plugins = tuple((name, plugin) for name, plugin in hook_manager.list_name_plugin()
                    if plugin is not None)
    for name, plugin in plugins:
        try:
            cloudpickle.dumps(plugin)
        except Exception as error:  # noqa: BLE001 - any pickling failure has the same fix
            raise ClusterSetupError(
                f"The Kedro hook {type(plugin).__qualname__} ('{name}') cannot be sent to the "
                f"Dask workers ({error}). Leave its plugin out of this run "
                "(DISABLE_HOOKS_FOR_PLUGINS in settings.py) or make its state picklable.") from error
    return plugins


@contextmanager
def connect(address: str | None, n_workers: int) -> Iterator[Any]:
    """A client of the scheduler at ``address``, or of a LocalCluster of ``n_workers`` worker
    processes (one thread each) on 127.0.0.1, closed at the end; its workers, present and
    future, with :class:`QuietWorkers`."""
    if address:
        logger.info("Dask: connecting to the scheduler at %s (waiting for a worker)", address)
        with Client(address) as client:
            client.register_plugin(QuietWorkers())
            client.wait_for_workers(1)
            yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(QuietWorkers())
        logger.info("Dask: a LocalCluster of %d worker processes at %s", n_workers,
                    cluster.scheduler_address)
        yield client


class QuietWorkers(WorkerPlugin):
    """A worker hides the known deprecation notices of bnstudy's dependencies, as settings.py
    has the driver do (bnstudy.third_party_warnings), before it unpickles a first node."""

    name = "bnstudy-known-deprecations"

    def setup(self, worker: Any) -> None:
        hide_known_deprecations()


def run_tasks(tasks: list[NodeTask], submit: Any, catalog: Any) -> None:
    """Submit each task once those it reads from have finished; after a failure submit no
    more, let the running ones finish, then raise the failure (its worker's traceback)."""
    waiting, done, running = set(range(len(tasks))), set(), {}
    failed = None
    while waiting or running:
        if failed is None:
            for index in sorted(i for i in waiting if tasks[i].after <= done):
                running[submit(tasks[index])] = index
                waiting.discard(index)
        if not running:
            break
        for future in wait(list(running), return_when="FIRST_COMPLETED").done:
            index = running.pop(future)
            if future.status != "finished":  # "error", or "cancelled" (the scheduler lost it)
                failed = failed or future
                logger.error("Dask: %s failed: %s", tasks[index].label,
                             future.exception() if future.status == "error" else future.status)
                continue
            finished = future.result()
            for name, data in finished.outputs.items():
                catalog.save(name, data)
            done.add(index)
            logger.info("Dask: completed %s on %s (%d of %d tasks)", tasks[index].label,
                        finished.worker, len(done), len(tasks))
    if failed is not None:
        logger.warning("Dask: %d of %d tasks did not run: %s. Run the same command again: "
                       "finished outputs are kept, training resumes from its checkpoints.",
                       len(tasks) - len(done), len(tasks),
                       "; ".join(tasks[i].label for i in sorted(set(range(len(tasks))) - done)))
        failed.result()


# ----------------------------------------------------------------------------- the worker


def run_task(task: NodeTask, catalog: Any, setup: WorkerSetup, run_id: str | None) -> Finished:
    """Run ``task``'s nodes on this worker, in a thread of their own (the study's MLflow run
    is active there, and ends with the thread, not on the tracking server)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["outputs"] = run_nodes(task, catalog, setup, run_id)
        except BaseException as error:  # noqa: BLE001 - re-raised in the worker's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name=f"bnstudy-task {task.label}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return Finished(get_worker().address, outcome["outputs"])


def run_nodes(task: NodeTask, catalog: Any, setup: WorkerSetup, run_id: str | None) -> dict[str, Any]:
    """The nodes through Kedro's ``Task`` (hooks included), as the driver would run them;
    returns the in-memory outputs the driver keeps."""
    from bnstudy.core.backend import use_compilation_cache, use_cpu_flags

    here = os.path.realpath(os.getcwd())
    if here != os.path.realpath(setup.project):
        raise ClusterSetupError(
            f"A Dask worker runs in {here}, not in the project's root {setup.project}, where the "
            "catalog's relative paths (data/...) resolve. Start the workers there: `cd "
            f"{setup.project} && dask worker <scheduler address>` (docs/scaling.md).")
    use_cpu_flags()  # as bnstudy.xla_hooks does in the driver: before JAX starts here
    use_compilation_cache(setup.project)
    hooks = worker_hook_manager(setup.plugins)
    with active_run(setup.tracking_uri, setup.run_id):
        for name in task.reloaded:
            catalog.release(name)  # a dataset remembers the version it saw last: look again
        for node in task.nodes:
            Task(node=node, catalog=catalog, is_async=setup.is_async, hook_manager=hooks,
                 run_id=run_id).execute()
        return {name: catalog.load(name) for name in task.returned}


def worker_hook_manager(plugins: tuple[tuple[str, Any], ...]) -> Any:
    """A plugin manager with Kedro's hook specifications and ``plugins`` in their order."""
    from kedro.framework.hooks.markers import HOOK_NAMESPACE
    from kedro.framework.hooks.specs import (
        DataCatalogSpecs,
        DatasetSpecs,
        KedroContextSpecs,
        NodeSpecs,
        PipelineSpecs,
    )
    from pluggy import PluginManager

    manager = PluginManager(HOOK_NAMESPACE)
    for specs in (NodeSpecs, PipelineSpecs, DataCatalogSpecs, DatasetSpecs, KedroContextSpecs):
        manager.add_hookspecs(specs)
    for name, plugin in plugins:
        manager.register(plugin, name=name)
    return manager


@contextmanager
def active_run(tracking_uri: str | None, run_id: str | None) -> Iterator[None]:
    """The study's MLflow run active in this thread (nothing without one). Not ended after:
    the driver ends it; the thread's active-run stack goes with the thread."""
    if run_id is not None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.start_run(run_id=run_id)
    yield


__all__ = ["SCHEDULER_VARIABLE", "ClusterSetupError", "DaskRunner", "NodeTask", "plan_tasks"]
