"""The Dask runner (issue 23; bnstudy.runners, docs/scaling.md).

Fast: the plan (which nodes make one task, in what order), the refusals (a local MLflow store,
a worker outside the project), the workers' plugin manager. Slow: small pipelines on a
LocalCluster the runner starts (hooks on the workers, in-memory datasets, a failing node);
then the acceptance test: the two studies of tests/conftest.py's 4-model roster through a
2-worker LocalCluster and an ``mlflow server`` on 127.0.0.1, against the sequential run of the
same configuration (the roster tests' ``roster_study``), and the same cluster losing a worker
mid-training.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.json import JSONDataset

from bnstudy.runners import (
    SCHEDULER_VARIABLE,
    ClusterSetupError,
    DaskRunner,
    WorkerSetup,
    check_shared_store,
    driver_plugins,
    in_memory_datasets,
    parallel_width,
    plan_tasks,
    run_nodes,
    worker_hook_manager,
)
from tests.conftest import ROSTER_PIPELINES, roster_project, with_checkpoints_of
from tests.outputs import assert_same_outputs
from tests.pipelines.test_numbers_unchanged import newest
from tests.reliability.cli_helpers import KedroProcess, kedro_env, run_kedro

# ----------------------------------------------------------------------------- node functions
# Module-level, so the workers import them by name.


def increment(value: int) -> int:
    return value + 1


def add(left: int, right: int) -> int:
    return left + right


def split(value: int) -> tuple[int, int]:
    return value, value * 10


def explode(value: int) -> int:
    raise ValueError(f"the node meant to fail got {value}")


def slow_increment(value: int) -> int:
    time.sleep(2)  # still running when its sibling fails: the runner waits for it
    return value + 1


def _node(func, inputs, outputs, name: str) -> Node:
    return Node(func=func, inputs=inputs, outputs=outputs, name=name)


def _names(tasks) -> list[list[str]]:
    return [[node.name for node in task.nodes] for task in tasks]


# ----------------------------------------------------------------------------- the plan


def test_nodes_joined_by_an_in_memory_dataset_are_one_task_and_files_join_none():
    pipeline = Pipeline([
        _node(increment, "raw", "arrays", "read"),        # arrays: in memory
        _node(increment, "arrays", "model_input", "prepare"),
        _node(increment, "model_input", "trace_a", "train_a"),
        _node(increment, "model_input", "trace_b", "train_b"),
        _node(add, ["trace_a", "trace_b"], "report", "report"),
    ])
    tasks = plan_tasks(pipeline, {"arrays"})
    assert _names(tasks)[0] == ["read", "prepare"]
    assert sorted(_names(tasks)[1:3]) == [["train_a"], ["train_b"]] and _names(tasks)[3] == ["report"]
    assert [task.after for task in tasks] == [frozenset(), {0}, {0}, {1, 2}]
    assert tasks[0].reloaded == ("raw",) and tasks[3].reloaded == ("trace_a", "trace_b")
    assert parallel_width(tasks) == 2  # the two trainings: LocalCluster's default worker count


def test_a_file_path_between_two_nodes_of_a_task_joins_that_task_too():
    # first -> (memory) -> last, and first -> (file) -> middle -> (file) -> last: were middle
    # a task of its own, it would wait for the task it feeds.
    pipeline = Pipeline([
        _node(split, "raw", ["kept", "written"], "first"),
        _node(increment, "written", "read_back", "middle"),
        _node(add, ["kept", "read_back"], "out", "last"),
        _node(increment, "out", "later", "after"),
    ])
    tasks = plan_tasks(pipeline, {"kept"})
    assert _names(tasks) == [["first", "middle", "last"], ["after"]]
    assert tasks[0].reloaded == ("raw",) and tasks[1].after == {0}


def test_in_memory_outputs_the_pipeline_returns_go_back_to_the_driver(tmp_path):
    catalog = DataCatalog({"kept": JSONDataset(filepath=str(tmp_path / "kept.json")),
                           "declared": MemoryDataset()})
    pipeline = Pipeline([_node(split, "raw", ["kept", "declared"], "first"),
                         _node(increment, "kept", "free", "second")])  # free: not in the catalog
    assert in_memory_datasets(pipeline, catalog) == {"raw", "declared", "free"}
    tasks = plan_tasks(pipeline, in_memory_datasets(pipeline, catalog))
    assert [task.returned for task in tasks] == [("declared",), ("free",)]


def test_a_local_mlflow_store_is_refused_with_the_fix():
    for uri in ("sqlite:///mlflow.db", "/home/me/mlruns", "file:///tmp/mlruns"):
        with pytest.raises(ClusterSetupError, match=r"local store.*mlflow server --host 127\.0\.0\.1"):
            check_shared_store(uri)
    for uri in ("http://127.0.0.1:5000", "https://mlflow.example.org", "postgresql://db/mlflow"):
        assert check_shared_store(uri) == uri


def test_a_worker_outside_the_project_is_refused(tmp_path):
    setup = WorkerSetup(project=str(tmp_path / "project"), plugins=(), tracking_uri=None,
                        run_id=None, is_async=False)
    task = plan_tasks(Pipeline([_node(increment, "a", "b", "only")]), set())[0]
    with pytest.raises(ClusterSetupError, match=f"cd {tmp_path / 'project'} && dask worker"):
        run_nodes(task, DataCatalog(), setup, run_id=None)


class _Recorder:
    """A hook plugin that notes, in files, where and with what state each node ran."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.state = "built"

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        record = {"pid": os.getpid(), "state": self.state}
        (self.folder / f"{node.name}.json").write_text(json.dumps(record))


class _First:
    @hook_impl(tryfirst=True)
    def before_node_run(self) -> None:
        pass


def _kedro_hook_manager(*plugins):
    """A plugin manager as a Kedro session builds one, with ``plugins`` registered."""
    from kedro.framework.hooks import _create_hook_manager  # the session's own (tests only)

    manager = _create_hook_manager()
    for plugin in plugins:
        manager.register(plugin)
    return manager


def test_a_workers_plugin_manager_calls_copies_of_the_drivers_hooks_in_the_same_order(tmp_path):
    import cloudpickle

    driver = _kedro_hook_manager(_First(), _Recorder(tmp_path), _Recorder(tmp_path))
    copies = cloudpickle.loads(cloudpickle.dumps(driver_plugins(driver)))
    worker = worker_hook_manager(copies)
    order = [impl.plugin_name for impl in worker.hook.before_node_run.get_hookimpls()]
    assert order == [impl.plugin_name for impl in driver.hook.before_node_run.get_hookimpls()]
    assert len(order) == 3 and not set(worker.get_plugins()) & set(driver.get_plugins())


def test_an_empty_pipeline_starts_no_cluster(monkeypatch):
    monkeypatch.setenv(SCHEDULER_VARIABLE, "tcp://127.0.0.1:9")  # nothing listens: would fail
    assert DaskRunner().run(Pipeline([]), DataCatalog(), _kedro_hook_manager()) == {}


def test_the_scheduler_address_comes_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.setenv(SCHEDULER_VARIABLE, "tcp://10.0.0.5:8786")
    assert DaskRunner().address == "tcp://10.0.0.5:8786"
    assert DaskRunner(address="tcp://127.0.0.1:9999").address == "tcp://127.0.0.1:9999"
    monkeypatch.delenv(SCHEDULER_VARIABLE)
    assert DaskRunner().address is None and repr(DaskRunner()) == "DaskRunner(address=LocalCluster)"


# ----------------------------------------------------------------------------- small pipelines on a LocalCluster


def _live_children() -> set[int]:
    """This process's live children, but for multiprocessing's resource tracker: started with
    the first spawned process, it lives as long as this one (whatever the cluster does)."""
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True)
            if child.status() != psutil.STATUS_ZOMBIE
            and "multiprocessing.resource_tracker" not in " ".join(child.cmdline())}


def _json_catalog(folder: Path, names: list[str], **memory: object) -> DataCatalog:
    datasets = {name: JSONDataset(filepath=str(folder / f"{name}.json")) for name in names}
    return DataCatalog({**datasets, **{name: MemoryDataset(value) for name, value in memory.items()}})


@pytest.mark.slow
def test_a_pipeline_runs_on_a_local_cluster_with_the_drivers_hooks_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SCHEDULER_VARIABLE, raising=False)
    (tmp_path / "hooks").mkdir()
    catalog = _json_catalog(tmp_path, ["left", "right", "total"], raw=1)
    pipeline = Pipeline([
        _node(split, "raw", ["small", "big"], "split"),           # small, big: in memory
        _node(increment, "small", "left", "left"),
        _node(slow_increment, "big", "right", "right"),
        _node(add, ["left", "right"], "total", "total"),
        _node(increment, "total", "free", "free"),                # free: returned in memory
    ])
    recorder = _Recorder(tmp_path / "hooks")
    hooks = _kedro_hook_manager(recorder)
    recorder.state = "set by the driver"  # after registration, as pipeline hooks set state
    before = _live_children()

    outputs = DaskRunner(n_workers=2).run(pipeline, catalog, hooks, run_id="test")

    assert json.loads((tmp_path / "total.json").read_text()) == 2 + 11
    assert outputs["free"].load() == 14
    ran = {path.stem: json.loads(path.read_text()) for path in (tmp_path / "hooks").glob("*.json")}
    assert set(ran) == {"split", "left", "right", "total", "free"}
    assert {record["state"] for record in ran.values()} == {"set by the driver"}
    assert os.getpid() not in {record["pid"] for record in ran.values()}
    # the in-memory datasets kept split, left and right in one process
    assert ran["split"]["pid"] == ran["left"]["pid"] == ran["right"]["pid"]
    assert _live_children() <= before, "the LocalCluster left processes behind"


@pytest.mark.slow
def test_a_failing_node_fails_the_run_with_its_traceback_once_the_running_ones_finish(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SCHEDULER_VARIABLE, raising=False)
    catalog = _json_catalog(tmp_path, ["start", "kept", "lost", "never"], raw=1)
    pipeline = Pipeline([
        _node(increment, "raw", "start", "start"),
        _node(slow_increment, "start", "kept", "kept"),
        _node(explode, "start", "lost", "explode"),
        _node(add, ["kept", "lost"], "never", "never"),
    ])

    with pytest.raises(ValueError, match="the node meant to fail got 2") as failure:
        DaskRunner(n_workers=2).run(pipeline, catalog, _kedro_hook_manager(), run_id="test")

    frames = traceback.extract_tb(failure.value.__traceback__)
    assert any(frame.name == "explode" and frame.filename == __file__ for frame in frames)
    assert json.loads((tmp_path / "kept.json").read_text()) == 3  # it ran to its end
    assert not (tmp_path / "never.json").exists() and not (tmp_path / "lost.json").exists()


# ----------------------------------------------------------------------------- the acceptance test

# tests/conftest.py's roster: the test study with candidate_fast, and lr_study with candidate_slow.
MODELS = ("baseline", "candidate", "candidate_fast", "candidate_slow")
RUNNER = "--runner=bnstudy.runners.DaskRunner"
CLOCK_METRICS = {"run/wall_time_s"}  # a model run's one metric that is a clock (docs/tracking.md)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_members(group: int) -> list[int]:
    """The live (not zombie) processes of process group ``group``."""
    import psutil

    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


@contextmanager
def _session_process(command: list[str], cwd: Path, log: Path, **popen) -> Iterator[subprocess.Popen]:
    """``command`` in a session of its own (setsid). At the end it is asked to stop (its stdin
    closed if it reads one, else SIGTERM to its process group), and the test fails if any
    process of the group is left after 60 s (they are killed then)."""
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, **popen)
    try:
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        else:
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while (process.poll() is None or _group_members(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = _group_members(process.pid)
        if left:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert not left, f"{command[:3]} left processes {left} behind:\n{log.read_text()[-2000:]}"


@contextmanager
def mlflow_server(folder: Path, empty_store: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 over a copy of ``empty_store`` (a migrated SQLite file)
    in ``folder``, artifacts proxied to ``folder/artifacts``; yields its URI."""
    port = _free_port()
    shutil.copy(empty_store, folder / "mlflow.db")
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--artifacts-destination", str(folder / "artifacts")]
    log = folder / "mlflow-server.log"
    with _session_process(command, folder, log) as server:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
        yield uri


CLUSTER = """\
import sys
from distributed import LocalCluster

cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address=":0")  # any free port: 8787 may be taken
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # until the test closes stdin
cluster.close()
"""


@contextmanager
def dask_cluster(project: Path) -> Iterator[str]:
    """A LocalCluster of 2 worker processes on 127.0.0.1, started in ``project`` (its workers
    run there, as the runner asks); yields the scheduler's address."""
    log = project.parent / "cluster.log"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "KEDRO_DISABLE_TELEMETRY": "1",
           "COLUMNS": "1000"}  # the workers log as Kedro does (conf/logging.yml), a record a line
    with _session_process([sys.executable, "-c", CLUSTER], project, log,
                          stdin=subprocess.PIPE, env=env) as cluster:
        deadline = time.monotonic() + 300

        def address() -> str | None:  # the line the script prints (warnings may come first)
            return next((line.strip() for line in log.read_text().splitlines()
                         if line.startswith("tcp://")), None)

        while address() is None:
            assert cluster.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        yield address()


def _studies(uri: str) -> list[tuple[object, dict[str, object]]]:
    """``(parent run, {name: nested run})`` of each study run of the bnstudy experiment at
    ``uri``, oldest first."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("bnstudy").experiment_id],
                              order_by=["attributes.start_time ASC"])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    return [(parent, {run.info.run_name: run for run in runs
                      if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id})
            for parent in parents]


def _keys(run) -> dict[str, set[str]]:
    return {"params": set(run.data.params), "metrics": set(run.data.metrics), "tags": set(run.data.tags)}


def _trainings_by_worker(client, since: int = 0) -> dict[str, set[str]]:
    """Training node -> the workers that finished it, from the scheduler's task stream."""
    ran: dict[str, set[str]] = {}
    for record in client.get_task_stream()[since:]:
        node = str(record["key"]).split("-")[0]  # the runner's keys: <node>-<run id>
        if node.endswith(".train_model_node"):
            ran.setdefault(node, set()).add(record["worker"])
    return ran


@dataclass
class DaskStudy:
    """The study run through the Dask runner, and its sequential twin."""

    sequential: Path
    project: Path
    tracking: str
    client: object
    env: dict[str, str]


@pytest.fixture(scope="module")
def dask_study(tmp_path_factory, roster_study, finished_study) -> Iterator[DaskStudy]:
    """The roster's two studies through an ``mlflow server`` and a 2-worker LocalCluster; the
    same configuration's sequential run (Kedro's SequentialRunner, MLflow in its project's
    SQLite) is the session's ``roster_study``. As there, ``baseline`` and ``candidate`` resume
    from the finished study's checkpoints, and ``candidate_fast`` and ``candidate_slow`` train,
    one on each worker at once. Stops the cluster and the server after the tests (failing if
    any of their processes is left)."""
    from distributed import Client

    base = tmp_path_factory.mktemp("dask_study")
    project = with_checkpoints_of(roster_project(base), finished_study)
    with mlflow_server(base, project / "mlflow.db") as tracking, dask_cluster(project) as scheduler, \
            Client(scheduler) as client:
        env = kedro_env(project, MLFLOW_TRACKING_URI=tracking, **{SCHEDULER_VARIABLE: scheduler})
        client.get_task_stream()  # the scheduler records tasks from now on
        result = run_kedro(project, ["run", "--env", "test", "--pipelines", ROSTER_PIPELINES, RUNNER],
                           env, timeout_s=1500)
        assert result.returncode == 0, result.terminal[-4000:]
        yield DaskStudy(roster_study, project, tracking, client, env)


@pytest.mark.slow
def test_the_study_on_a_dask_cluster_equals_a_sequential_run(dask_study):
    # the traces and states, bit for bit; the report
    for model in MODELS:
        assert assert_same_outputs(dask_study.sequential, dask_study.project, model) >= 10, model
    report = newest(dask_study.project / "data" / "08_reporting" / "report.md").read_text()
    assert "candidate_fast against BN" in report

    # MLflow: one parent and 3 nested runs, as the sequential run has them
    [(parent, children)] = _studies(dask_study.tracking)
    [(expected_parent, expected_children)] = _studies(f"sqlite:///{dask_study.sequential / 'mlflow.db'}")
    assert set(children) == set(MODELS) == set(expected_children)
    assert _keys(parent) == _keys(expected_parent)
    assert parent.data.metrics == expected_parent.data.metrics
    for name in MODELS:
        run, expected = children[name], expected_children[name]
        assert _keys(run) == _keys(expected), name
        for key in set(expected.data.metrics) - CLOCK_METRICS:
            assert run.data.metrics[key] == expected.data.metrics[key], (name, key)
        assert run.info.status == expected.info.status == "FINISHED", name
    assert parent.info.status == "FINISHED"

    # both workers trained (the scheduler's task stream)
    trained = _trainings_by_worker(dask_study.client)
    assert set(trained) == {f"{model}.train_model_node" for model in MODELS}
    assert len(set().union(*trained.values())) == 2, trained


def _layer_files(project: Path) -> dict[Path, str]:
    """SHA-256 of every file in the data layers (data/01_raw ... data/08_reporting)."""
    return {path: hashlib.sha256(path.read_bytes()).hexdigest()
            for layer in (project / "data").glob("0[1-8]_*") for path in layer.rglob("*")
            if path.is_file()}


@pytest.mark.slow
def test_a_worker_killed_mid_training_is_replaced_and_the_training_resumes(dask_study):
    """SIGKILL the worker training candidate_fast once it has saved a checkpoint: Dask reruns
    the node on another worker, which resumes from that checkpoint; the run succeeds with the
    uninterrupted run's traces, and no earlier output changes."""
    project, client = dask_study.project, dask_study.client
    checkpoints = project / "data" / "06_models" / "checkpoints"
    shutil.rmtree(checkpoints)  # the study's are finished: without them, it trains again
    earlier = _layer_files(project)
    since = len(client.get_task_stream())
    run = KedroProcess(project, ["run", "--env", "test", RUNNER, "--namespaces", "candidate_fast",
                                 "--params", "checkpoints.every_s=0"], dask_study.env)
    try:
        deadline = time.monotonic() + 900
        while not [step for step in checkpoints.glob("*/config-*/*") if step.name.isdigit()]:
            assert run.process.poll() is None and time.monotonic() < deadline, run.stdout()[-3000:]
            time.sleep(0.2)
        busy = [worker for worker, keys in client.processing().items()
                if any(str(key).startswith("candidate_fast.train_model_node") for key in keys)]
        assert len(busy) == 1, client.processing()
        os.kill(client.run(os.getpid, workers=busy)[busy[0]], signal.SIGKILL)
        result = run.wait(900)
    finally:
        run.stop()

    assert result.returncode == 0, result.terminal[-4000:]
    assert assert_same_outputs(dask_study.sequential, project, "candidate_fast") >= 10
    assert busy[0] not in _trainings_by_worker(client, since)["candidate_fast.train_model_node"]
    worker_log = " ".join((project.parent / "cluster.log").read_text().split())
    assert re.search(r"resuming from the checkpoint after step \d+", worker_log), worker_log[-3000:]
    changed = [path for path, digest in earlier.items()
               if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest]
    assert not changed, f"earlier outputs changed: {changed[:5]}"
    parent, children = _studies(dask_study.tracking)[-1]
    assert set(children) == {"candidate_fast"} and children["candidate_fast"].info.status == "FINISHED"
    assert parent.info.status == "FINISHED"
