"""User errors (:mod:`bnstudy.errors`): shown as one message instead of a traceback.

The command line (:mod:`bnstudy.cli`) prints a user error as ``Error: <message>`` plus the path
of the log file that holds the full traceback; anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import logging
import traceback
from datetime import datetime
from pathlib import Path

import bnstudy
from bnstudy.errors import UserError

__all__ = ["TRACEBACK_LOGGER", "is_user_error", "write_traceback"]

TRACEBACK_LOGGER = "bnstudy.traceback"
"""conf/logging.yml routes this logger to the info log file only (never to the terminal)."""

_PACKAGE_DIR = Path(bnstudy.__file__).resolve().parent


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is a user's mistake (short message) rather than a bug (traceback).

    User errors: :class:`bnstudy.errors.UserError` and its kinds, the data layer's
    ``Cifar10Error`` (a ``ValueError``), any ``ValueError`` raised by bnstudy's own code (the
    configs' validation), and Kedro's missing-configuration and missing-dataset errors.
    """
    from kedro.config import MissingConfigException
    from kedro.io.core import DatasetNotFoundError

    from bnstudy.data.cifar10 import Cifar10Error

    if isinstance(error, (UserError, Cifar10Error, MissingConfigException, DatasetNotFoundError)):
        return True
    if isinstance(error, ValueError):
        frames = traceback.extract_tb(error.__traceback__)
        return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE_DIR)
    return False


def write_traceback(error: BaseException, project_path: Path) -> Path:
    """Log ``error`` with its traceback to a file only; return that file's path.

    The file is the handler conf/logging.yml gives the ``bnstudy.traceback`` logger (the info
    log); without one (a custom logging configuration), ``logs/bnstudy-<timestamp>.log``.
    """
    log = logging.getLogger(TRACEBACK_LOGGER)
    files = [h for h in log.handlers if isinstance(h, logging.FileHandler)]
    if not files:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = project_path / "logs" / f"bnstudy-{stamp}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf8")
        handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(message)s"))
        log.addHandler(handler)
        log.propagate = False
        files = [handler]
    log.error("%s: %s", type(error).__name__, error, exc_info=error)
    for handler in files:
        handler.flush()
    return Path(files[0].baseFilename)
