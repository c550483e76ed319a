"""Shared fixtures: small CIFAR-10-shaped data in every source format, a local HTTP server,
the real CIFAR-10 archive when there is one, and a throw-away copy of the Kedro project for
session tests."""

from __future__ import annotations

import atexit
import functools
import http.server
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bnstudy.core.backend import use_compilation_cache, use_cpu_flags
from bnstudy.data import cifar10

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REAL_ARCHIVE = PROJECT_ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def real_cifar10_archive(environ: Mapping[str, str] = os.environ) -> Path:
    """The real CIFAR-10 for tests: ``BNSTUDY_CIFAR10_PATH`` when set, else the shared JPEG copy."""
    configured = environ.get("BNSTUDY_CIFAR10_PATH")
    # Absolute: the session tests run in a copy of the project, not where the path was given.
    return Path(configured).expanduser().absolute() if configured else DEFAULT_REAL_ARCHIVE


def real_cifar10_source(environ: Mapping[str, str] = os.environ) -> str:
    """Its source kind: ``BNSTUDY_CIFAR10_SOURCE`` when that names a local kind, else image_folder."""
    configured = environ.get("BNSTUDY_CIFAR10_SOURCE")
    return configured if configured in ("python_archive", "image_folder") else "image_folder"


def require_real_cifar10(environ: Mapping[str, str] = os.environ) -> Path:
    """The real archive's path; skip without it, but fail under CI, which must run these tests.

    Raises:
        pytest.fail.Exception: ``CI`` is set (and not ``false``/``0``) and there is no archive.
        pytest.skip.Exception: no archive outside CI.
    """
    path = real_cifar10_archive(environ)
    if path.exists():
        return path
    need = f"needs the real CIFAR-10 at {path} (set BNSTUDY_CIFAR10_PATH to its location)"
    if environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set but this test {need}", pytrace=False)
    pytest.skip(need)


# Read at import, before make_project_copy clears BNSTUDY_CIFAR10_PATH for the sessions.
SHARED_JPEG_ARCHIVE = real_cifar10_archive()
REAL_CIFAR10_SOURCE = real_cifar10_source()

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
use_cpu_flags()  # XLA as every study runs it (bnstudy.core.backend), before JAX starts
# One compilation cache for the whole test session: this process, its Kedro sessions in project
# copies and its `kedro run` subprocesses all read JAX_COMPILATION_CACHE_DIR, set here to the
# checkout's .jax_cache/ (BNSTUDY_JAX_CACHE=0 turns it off, e.g. to time cold compiles).
use_compilation_cache(PROJECT_ROOT)


def make_arrays(train_per_class: int = 4, test_per_class: int = 2, seed: int = 0) -> cifar10.Cifar10Arrays:
    """Random images with a known number per class, labels in class-major order."""
    rng = np.random.default_rng(seed)
    classes = len(cifar10.CLASS_NAMES)

    def split(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(classes, dtype=np.int32), per_class)
        images = rng.integers(0, 256, size=(labels.size, 32, 32, 3), dtype=np.uint8)
        return images, labels

    train_images, train_labels = split(train_per_class)
    test_images, test_labels = split(test_per_class)
    return cifar10.Cifar10Arrays(
        train_images, train_labels, test_images, test_labels, cifar10.CLASS_NAMES
    )


def write_image_folder(arrays: cifar10.Cifar10Arrays, root: Path, suffix: str = ".png") -> Path:
    """Write ``train/<class>/NNNN<suffix>`` and ``test/<class>/...`` under ``root``."""
    for split, images, labels in (
        ("train", arrays.train_images, arrays.train_labels),
        ("test", arrays.test_images, arrays.test_labels),
    ):
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / arrays.class_names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:04d}{suffix}")
    return root


def tar_folder(folder: Path, archive: Path, arcname: str = ".") -> Path:
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(folder, arcname=arcname)
    return archive


@pytest.fixture(scope="session")
def small_arrays() -> cifar10.Cifar10Arrays:
    """Shared by every test: read-only, so no test can change what another sees."""
    arrays = make_arrays()
    for array in (arrays.train_images, arrays.train_labels, arrays.test_images, arrays.test_labels):
        array.flags.writeable = False
    return arrays


@pytest.fixture(scope="session")
def python_archive(tmp_path_factory: pytest.TempPathFactory, small_arrays: cifar10.Cifar10Arrays) -> Path:
    """``small_arrays`` in the official format; a read-only file shared by every test."""
    path = cifar10.write_python_archive(
        small_arrays, tmp_path_factory.mktemp("archive") / "cifar-10-python.tar.gz"
    )
    path.chmod(0o444)
    return path


@pytest.fixture(scope="session")
def real_cifar10() -> Path:
    """The real CIFAR-10 archive (see :func:`require_real_cifar10`)."""
    return require_real_cifar10()


class _Server:
    """A static file server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, directory: Path):
        counter = self
        self.requests = 0

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(directory), **kwargs)

            def do_GET(self):  # noqa: N802 - http.server's naming
                counter.requests += 1
                super().do_GET()

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval: shutdown() waits up to one interval.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[_Server, Path]]:
    """``(server, served_directory)``: files put in the directory are served on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    server = _Server(served)
    yield server, served
    server.close()


@pytest.fixture
def unused_local_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def make_project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's configuration in ``tmp_path``, made the working directory.

    Session tests run there so their data, versions and mlflow.db never touch the checkout.
    The package itself is the installed (editable) one; ``src/`` is left empty.
    """
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    # An empty MLflow store with its tables already made: creating them takes seconds.
    shutil.copy(_empty_mlflow_db(), project / "mlflow.db")
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()
    enter_project(project, monkeypatch)
    return project


def enter_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``project`` (a :func:`make_project_copy`) the working directory, with its own
    MLflow store and no data-source variables (the test passes its source as parameters)."""
    monkeypatch.chdir(project)
    for variable in ("SOURCE", "PATH", "URL", "MD5"):
        monkeypatch.delenv(f"BNSTUDY_CIFAR10_{variable}", raising=False)
    # An absolute URI per project (conf/base/mlflow.yml reads MLFLOW_TRACKING_URI): MLflow
    # caches its store per URI string, so the relative default `sqlite:///mlflow.db` would
    # keep pointing at the first project's file for every later session in this process.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


# The --params of a test study: the offline JPEG copy (make_project_copy unsets the variables).
STUDY_SOURCE = {"data_ingestion": {"source": "image_folder", "path": str(SHARED_JPEG_ARCHIVE)}}


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> Path:
    """A project copy with one finished ``full_study`` run in the test environment (3 seeds,
    20 steps; about 2 minutes), shared by every test that reads a study's outputs: the
    end-to-end checks, the notebook and the browser tests. The working directory and the
    environment are restored once it has run (:func:`enter_project` enters it again)."""
    if not SHARED_JPEG_ARCHIVE.exists():
        pytest.skip(f"needs the offline CIFAR-10 copy at {SHARED_JPEG_ARCHIVE}")
    with pytest.MonkeyPatch.context() as monkeypatch:
        project = make_project_copy(tmp_path_factory.mktemp("study"), monkeypatch)
        run_session(project, "full_study", env="test", params=STUDY_SOURCE)
    return project


# The test study's roster with two more models and a study of its own (tests/pipelines/
# test_roster.py): candidate_fast joins full_study, lr_study extends it with candidate_slow.
ROSTER = """\
models:
  candidate_fast:
    normalization: batch
    training: {learning_rate: 0.07}
  candidate_slow:
    normalization: batch
    training: {learning_rate: 0.01}
studies:
  full_study:
    models: [baseline, candidate, candidate_fast]
    comparisons:
      - {reference: baseline, treatment: candidate}
      - {reference: candidate, treatment: candidate_fast}
  lr_study:
    extends: full_study
    models: [candidate_slow]
    comparisons:
      - {reference: candidate, treatment: candidate_slow}
"""
ROSTER_PIPELINES = "full_study,lr_study"


def roster_project(base: Path) -> Path:
    """A project copy in ``base`` with :data:`ROSTER` as the test environment's roster."""
    import yaml

    from bnstudy.roster import merged
    from tests.reliability.cli_helpers import new_project

    project = new_project(base)
    written = project / "conf" / "test" / "parameters_roster.yml"
    # over the test environment's own roster entries (its deep linear network's sizes)
    own = yaml.safe_load(written.read_text()) if written.exists() else {}
    written.write_text(yaml.safe_dump(merged(own, yaml.safe_load(ROSTER)), sort_keys=False))
    return project


CHECKPOINTS = Path("data") / "06_models" / "checkpoints"


def with_checkpoints_of(project: Path, finished: Path) -> Path:
    """``project`` with the checkpoints of the ``finished`` study's models: a model trained
    there with the same configuration (the checkpoint's hash: model, training, protocols,
    data) resumes at its last step instead of training again, with the same outputs bit for
    bit (the resume guarantee, tests/core/test_checkpoint.py and tests/reliability); any
    other model trains."""
    shutil.copytree(finished / CHECKPOINTS, project / CHECKPOINTS, dirs_exist_ok=True)
    return project


@pytest.fixture(scope="session")
def roster_study(tmp_path_factory, finished_study) -> Path:
    """:data:`ROSTER`'s two studies in one sequential ``kedro run`` (4 models, 3 seeds, 20
    steps): read by the roster tests and the reference the Dask runner's run must equal.
    ``baseline`` and ``candidate`` resume from the session's finished study's checkpoints
    (the same configurations); ``candidate_fast`` and ``candidate_slow`` train."""
    from tests.reliability.cli_helpers import kedro_env, run_kedro

    project = with_checkpoints_of(roster_project(tmp_path_factory.mktemp("roster")), finished_study)
    result = run_kedro(project, ["run", "--env", "test", "--pipelines", ROSTER_PIPELINES],
                       kedro_env(project), timeout_s=1500)
    assert result.returncode == 0, result.terminal[-4000:]
    return project


@functools.cache
def _empty_mlflow_db() -> Path:
    """An MLflow sqlite store with its schema migrated, made once per test process."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # In memory where there is a tmpfs: the schema migrations commit (and fsync) ~140 times.
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="bnstudy-mlflow-", dir=shm if shm.is_dir() else None))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "mlruns"))
    store.engine.dispose()
    return folder / "mlflow.db"


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_project_copy(tmp_path, monkeypatch)


@functools.cache
def _configure_project() -> None:
    """Point Kedro at the installed package, once per process: the package is installed
    (editable), so it needs no bootstrap from a src/ folder, and reconfiguring reloads the
    settings through dynaconf, which costs seconds a time."""
    from kedro.framework.project import configure_project

    configure_project("bnstudy")


def run_session(project: Path, pipeline: str, env: str = "test", params: dict | None = None) -> dict:
    """Run a Kedro pipeline in ``project`` as `kedro run` would."""
    from kedro.framework.session import KedroSession

    _configure_project()
    try:
        with KedroSession.create(project_path=project, env=env, runtime_params=params or {}) as session:
            return session.run(pipeline_names=[pipeline])
    finally:
        # kedro-mlflow's hook is a process-wide singleton; `kedro run` gets a fresh process
        # each time, tests don't, so close whatever run it left open.
        import mlflow

        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture(scope="session")
def viz_build(finished_study) -> Path:
    """``make viz-build`` of the finished study (``kedro viz build --include-previews`` and its
    ``api/metadata``, :mod:`bnstudy.viz_site`): the static site (``build/``)."""
    import subprocess
    import sys

    build = subprocess.run([sys.executable, "-m", "bnstudy.viz_site"],
                           cwd=finished_study,
                           capture_output=True, text=True, timeout=300, check=False,
                           env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"})
    assert build.returncode == 0, build.stdout + build.stderr
    return finished_study / "build"
