"""Guarantee 3: one `kedro run` at a time per project; the second refuses at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bnstudy.errors import ProjectBusyError
from bnstudy.reliability.lock import LOCK_PATH, project_lock
from tests.reliability.cli_helpers import kedro_env, new_project, run_kedro


def test_second_holder_is_refused_and_the_lock_is_released_after(tmp_path):
    with project_lock(tmp_path) as path:
        assert path == tmp_path / LOCK_PATH
        assert f"pid {os.getpid()}" in path.read_text()
        with pytest.raises(ProjectBusyError, match=f"pid {os.getpid()}"):
            with project_lock(tmp_path):
                pass
    with project_lock(tmp_path):  # released on exit
        pass


def test_lock_is_released_on_exceptions(tmp_path):
    with pytest.raises(RuntimeError):
        with project_lock(tmp_path):
            raise RuntimeError("boom")
    with project_lock(tmp_path):
        pass


def test_lock_of_a_killed_process_is_free(tmp_path):
    """SIGKILL leaves no stale lock: the operating system drops it with the process."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from bnstudy.reliability.lock import "
         "project_lock\nwith project_lock(Path(sys.argv[1])):\n print('held', flush=True); "
         "time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ProjectBusyError, match=f"pid {holder.pid}"):
            with project_lock(tmp_path):
                pass
        holder.kill()
        holder.wait()
        with project_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_kedro_run_refuses_while_another_run_holds_the_project(tmp_path):
    project = new_project(tmp_path)
    env = kedro_env(project)

    with project_lock(project):  # this test process plays the first run
        start = time.monotonic()
        result = run_kedro(project, ["run", "--env", "test"], env, timeout_s=60)
        elapsed = time.monotonic() - start

    assert result.returncode == 1
    assert elapsed < 30
    assert "Kedro project" not in result.stdout  # refused before a session started
    lines = result.user_lines()
    assert len(lines) <= 3, lines
    assert lines[0].startswith("Error: Another kedro run is already running in this project")
    assert f"pid {os.getpid()}" in lines[0]
