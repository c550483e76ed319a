"""Shared fixtures: small CIFAR-10-shaped data in every source format, a local HTTP server,
and a throw-away copy of the Kedro project for session tests."""

from __future__ import annotations

import http.server
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bnstudy.data import cifar10

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_JPEG_ARCHIVE = PROJECT_ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")


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


@pytest.fixture
def small_arrays() -> cifar10.Cifar10Arrays:
    return make_arrays()


@pytest.fixture
def python_archive(tmp_path: Path, small_arrays: cifar10.Cifar10Arrays) -> Path:
    return cifar10.write_python_archive(small_arrays, tmp_path / "cifar-10-python.tar.gz")


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
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
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
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("BNSTUDY_CIFAR10_SOURCE", raising=False)
    monkeypatch.delenv("BNSTUDY_CIFAR10_PATH", raising=False)
    # An absolute URI per project (conf/base/mlflow.yml reads MLFLOW_TRACKING_URI): MLflow
    # caches its store per URI string, so the relative default `sqlite:///mlflow.db` would
    # keep pointing at the first project's file for every later session in this process.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return project


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_project_copy(tmp_path, monkeypatch)


def run_session(project: Path, pipeline: str, env: str = "test", params: dict | None = None) -> dict:
    """Run a Kedro pipeline in ``project`` as `kedro run` would."""
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession

    # The package is installed (editable), so it needs no bootstrap from a src/ folder.
    configure_project("bnstudy")
    try:
        with KedroSession.create(project_path=project, env=env, runtime_params=params or {}) as session:
            return session.run(pipeline_names=[pipeline])
    finally:
        # kedro-mlflow's hook is a process-wide singleton; `kedro run` gets a fresh process
        # each time, tests don't, so close whatever run it left open.
        import mlflow

        while mlflow.active_run():
            mlflow.end_run()
