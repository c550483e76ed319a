"""Ctrl-C and SIGTERM end a run cleanly: an exception unwinds it, then the command line marks
its MLflow runs KILLED, removes its half-written files and exits with 128 + signal number.

Python's default SIGTERM kills the process with no cleanup at all, and a KeyboardInterrupt
that unwinds to interpreter shutdown can crash there (exit 139) while XLA's threads are still
up; :func:`bnstudy.cli` therefore ends interrupted runs with ``os._exit`` after its cleanup.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from bnstudy.reliability.tracking import mark_run_killed, process_is_alive

logger = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A swallowed interrupt is sent again this long after: time for the hook that saw it to return.
REDELIVERY_DELAY_S = 0.01
# bnstudy.datasets.FileDataset writes `<file>.tmp-<pid>` and renames it when complete.
_TEMPORARY_NAME = re.compile(r"\.tmp-(\d+)$")


class RunInterrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """Raised in the main thread by SIGINT or SIGTERM.

    A ``BaseException``, like ``KeyboardInterrupt``: ``except Exception`` blocks in nodes,
    runners and hooks let it pass, so the run unwinds to the command line.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise RunInterrupted(signum)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`RunInterrupted` (main thread only).

    A signal handler's exception is raised wherever the main thread happens to be. Where that
    is a garbage-collector callback (JAX registers one), a ``__del__`` or a weakref callback,
    Python swallows it ("Exception ignored in ...", through :data:`sys.unraisablehook`) and
    the run would go on as if no signal had come (seen in CI: a SIGTERM'd ``kedro run`` went
    on to its next nodes). Within the block such a swallowed :class:`RunInterrupted` is
    delivered again, from another thread a moment later (:data:`REDELIVERY_DELAY_S`): sent from
    within the hook it would raise in the hook, where it is swallowed too. It then raises at
    the next line the main thread runs (again and again if that too swallows it), so the run
    ends.
    """
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in HANDLED_SIGNALS}
    previous_hook = sys.unraisablehook

    def redeliver(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, RunInterrupted):
            logger.debug("%s was raised where Python ignores exceptions (%r); delivering it again",
                         unraisable.exc_value, unraisable.object)
            resend = threading.Timer(REDELIVERY_DELAY_S, os.kill,
                                     args=(os.getpid(), unraisable.exc_value.signum))
            resend.daemon = True
            resend.start()
            return
        previous_hook(unraisable)

    sys.unraisablehook = redeliver
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def remove_temporary_files(data_dir: Path, pid: int | None = None) -> list[Path]:
    """Remove the atomic savers' ``*.tmp-<pid>`` leftovers under ``data_dir``.

    Args:
        data_dir: the project's ``data`` folder.
        pid: remove only this process's files; None: the files of every process that is gone.

    Returns:
        The removed paths.
    """
    removed = []
    for path in Path(data_dir).rglob("*.tmp-*"):
        match = _TEMPORARY_NAME.search(path.name)
        if match is None or not path.is_file():
            continue
        owner = int(match.group(1))
        if owner == pid or (pid is None and not process_is_alive(owner)):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.info("Removed %d unfinished file(s): %s", len(removed), [str(p) for p in removed])
    return removed


def end_interrupted_run(interrupt: RunInterrupted, data_dir: Path, run_id: str | None) -> str:
    """Mark this process's MLflow runs KILLED and remove its temporary files.

    A second Ctrl-C (or SIGTERM) during this cleanup exits at once. Returns a one-line summary.
    """
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, lambda number, _frame: os._exit(128 + number))
    try:
        killed = mark_run_killed(run_id)
        runs = f"MLflow run(s) {', '.join(killed)} marked KILLED" if killed else "no MLflow run"
    except Exception as error:  # noqa: BLE001 - the exit must happen whatever MLflow does
        logger.exception("Could not mark the MLflow run KILLED")
        runs = f"MLflow run {run_id} NOT marked KILLED ({type(error).__name__}: {error})"
    removed = remove_temporary_files(data_dir, pid=os.getpid())
    return (
        f"Interrupted by {signal.Signals(interrupt.signum).name}: {runs}; "
        f"{len(removed)} unfinished file(s) removed. This run's outputs are incomplete."
    )


def exit_now(code: int) -> NoReturn:
    """Flush logs and standard streams, then leave without interpreter shutdown."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
