"""Run ``kedro`` as a user does (a subprocess in a throw-away project) and read what it printed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SHARED_JPEG_ARCHIVE, make_project_copy

KEDRO = Path(sys.executable).parent / "kedro"
# A log record printed by Kedro's rich handler (a timestamp, or the indent of a record in the
# same second / a wrapped line) or by MLflow's own handler; anything else is a line of the
# command's own output (an error message, a traceback).
_LOG_LINE = re.compile(
    r"^(\[\d\d/\d\d/\d\d \d\d:\d\d:\d\d\]|\s{10,}|\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )"
)


@dataclass
class KedroResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def terminal(self) -> str:
        return self.stdout + self.stderr

    def user_lines(self) -> list[str]:
        """Printed lines that are not log records."""
        lines = self.terminal.splitlines()
        return [line for line in lines if line.strip() and not _LOG_LINE.match(line)]


def new_project(base: Path) -> Path:
    """A copy of the project in ``base`` (tests/conftest.py's make_project_copy), without
    leaving the test process in it."""
    with pytest.MonkeyPatch.context() as patch:
        return make_project_copy(base, patch)


def kedro_env(project: Path, **overrides: str) -> dict[str, str]:
    """The environment of a test-sized run on the offline data, tracking in the project."""
    if not SHARED_JPEG_ARCHIVE.exists():
        pytest.skip(f"offline CIFAR-10 copy not found at {SHARED_JPEG_ARCHIVE}")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(
        KEDRO_DISABLE_TELEMETRY="1",
        JAX_PLATFORMS="cpu",
        MPLBACKEND="Agg",
        COLUMNS="1000",  # one log record per line
        BNSTUDY_CIFAR10_SOURCE="image_folder",
        BNSTUDY_CIFAR10_PATH=str(SHARED_JPEG_ARCHIVE),
        MLFLOW_TRACKING_URI=tracking_uri(project),
    )
    env.update(overrides)
    return env


def tracking_uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


class KedroProcess:
    """``kedro <args>`` in ``project``, in its own process group, output to files."""

    def __init__(self, project: Path, args: list[str], env: dict[str, str]):
        self.project = project
        self._stdout = project.parent / "stdout.txt"
        self._stderr = project.parent / "stderr.txt"
        self.started = time.monotonic()
        with self._stdout.open("w") as out, self._stderr.open("w") as err:
            self.process = subprocess.Popen(
                [str(KEDRO), *args], cwd=project, env=env, stdout=out, stderr=err,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self._stdout.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[str], bool], timeout_s: float) -> None:
        """Poll stdout until ``predicate`` holds; fail if the process ends or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self.stdout()):
            if self.process.poll() is not None:
                tail = self.result().terminal[-3000:]
                pytest.fail(f"kedro ended early ({self.process.returncode}):\n{tail}")
            if time.monotonic() > deadline:
                pytest.fail(f"not seen within {timeout_s} s:\n{self.stdout()[-3000:]}")
            time.sleep(0.2)

    def wait(self, timeout_s: float) -> KedroResult:
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            tail = self.result().terminal[-3000:]
            pytest.fail(f"kedro still running after {timeout_s} s:\n{tail}")
        return self.result()

    def result(self) -> KedroResult:
        return KedroResult(
            self.process.returncode, self.stdout(), self._stderr.read_text(errors="replace"),
            time.monotonic() - self.started,
        )

    def stop(self) -> None:
        """Kill the whole process group, if anything of it is left."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run_kedro(
    project: Path, args: list[str], env: dict[str, str], timeout_s: float = 300
) -> KedroResult:
    """Run ``kedro <args>`` to the end (killed, and the test failed, after ``timeout_s``)."""
    process = KedroProcess(project, args, env)
    try:
        return process.wait(timeout_s)
    finally:
        process.stop()


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid
