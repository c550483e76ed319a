"""One ``kedro run`` at a time per project: an exclusive ``flock`` on ``data/.bnstudy.lock``.

Two runs in one project would write the same versioned outputs and open two MLflow runs for
the same data. The lock belongs to the open file, so the operating system releases it when
the process ends in any way (exception, signal, ``os._exit``, SIGKILL): a crashed run never
leaves a stale lock behind. The file itself stays; it records who holds it, for the message.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from bnstudy.errors import ProjectBusyError

LOCK_PATH = Path("data") / ".bnstudy.lock"
"""Relative to the project root."""


@contextmanager
def project_lock(project_path: Path) -> Iterator[Path]:
    """Hold this project's run lock for the ``with`` block; refuse at once if it is taken.

    Raises:
        ProjectBusyError: another process holds the lock (its pid is in the message).
    """
    import fcntl

    path = Path(project_path) / LOCK_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ProjectBusyError(
            f"Another kedro run is already running in this project ({holder}); it holds "
            f"{path}. Wait for it to finish, or stop it (kill <pid>) and run again. Two runs "
            "in one project would overwrite each other's outputs."
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        started = datetime.now().isoformat(timespec="seconds")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n")
        handle.flush()
        yield path
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
