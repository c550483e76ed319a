"""Project command line: Kedro's ``run`` with the guarantees of docs/reliability.md.

Kedro takes a project's ``cli.py`` over its own commands, so ``kedro run``, ``bnstudy`` and
``python -m bnstudy`` all run through :func:`run` here. It is Kedro's ``run`` (same options,
same session) wrapped in:

* a project lock (``data/.bnstudy.lock``): a second concurrent run refuses at once;
* SIGINT/SIGTERM handlers: the run unwinds, its MLflow runs are marked KILLED, its
  unfinished files removed, and the process exits 130/143 (without interpreter shutdown);
* user errors (bad parameter, bad data, unreachable server, checksum mismatch) printed as
  one message plus the path of the log holding the traceback;
* ``--params`` that keep checksum values (``...md5=0000...``) as the string typed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import CONTEXT_SETTINGS

from bnstudy.reliability.errors import is_user_error, write_traceback
from bnstudy.reliability.hooks import RunRecordHooks
from bnstudy.reliability.interrupts import (
    RunInterrupted,
    end_interrupted_run,
    exit_now,
    interrupts_raise,
    remove_temporary_files,
)
from bnstudy.reliability.lock import project_lock
from bnstudy.reliability.params import split_params_keeping_strings


@click.group(context_settings=CONTEXT_SETTINGS, name=__file__)
def cli() -> None:
    """Command line tools for the bnstudy project."""


def _run_options() -> list[click.Parameter]:
    """Kedro's ``run`` options; ``--params`` with the parser that keeps checksums as text."""
    options = []
    for option in kedro_run.params:
        if option.name == "params":
            option = copy.copy(option)  # noqa: PLW2901 - Kedro's own stays untouched
            option.callback = split_params_keeping_strings
        options.append(option)
    return options


def _guarded_run(**options: Any) -> Any:
    """Kedro's run, inside the project lock, with interrupts and user errors handled."""
    from kedro.utils import find_kedro_project

    project_path = Path(find_kedro_project(Path.cwd()) or Path.cwd())
    try:
        with project_lock(project_path):
            return _run_interruptible(options, project_path)
    except Exception as error:
        if not is_user_error(error):
            raise
        log_path = write_traceback(error, project_path)
        click.secho(f"Error: {error}", err=True, fg="red")
        click.echo(f"The full traceback is in {log_path}", err=True)
        raise click.exceptions.Exit(1) from None


def _run_interruptible(options: dict[str, Any], project_path: Path) -> Any:
    """Run; on SIGINT/SIGTERM clean up and exit 128 + signal number (never returns then)."""
    data_dir = project_path / "data"
    try:
        with interrupts_raise():
            remove_temporary_files(data_dir)  # left by runs that were killed outright
            return kedro_run.callback(**options)
    except RunInterrupted as interrupt:
        record = _run_record_hooks()
        message = end_interrupted_run(interrupt, data_dir, record.run_id if record else None)
        click.secho(message, err=True, fg="yellow")
        exit_now(interrupt.exit_code)


def _run_record_hooks() -> RunRecordHooks | None:
    from kedro.framework.project import settings

    return next((hook for hook in settings.HOOKS if isinstance(hook, RunRecordHooks)), None)


run = click.Command(
    name="run",
    callback=_guarded_run,
    params=_run_options(),
    help=kedro_run.help,
    context_settings=CONTEXT_SETTINGS,
)
cli.add_command(run)
