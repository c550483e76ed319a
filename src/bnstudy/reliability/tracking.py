"""MLflow bookkeeping that survives failures: a reachability probe, process tags on every run,
and marking runs KILLED (stale runs of dead processes, and this run when it is interrupted).
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bnstudy.errors import TrackingServerUnreachable

logger = logging.getLogger(__name__)

PID_TAG = "bnstudy.pid"
HOST_TAG = "bnstudy.host"
PROCESS_START_TAG = "bnstudy.process_start"  # /proc start time: tells a reused pid apart
PARENT_TAG = "mlflow.parentRunId"
PROBE_TIMEOUT_S = 2.0


def probe_tracking_server(uri: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast when ``uri`` is an HTTP tracking server that does not answer.

    Any HTTP answer counts as reachable (even 401 or 404: the server is there); only a
    refused connection, a timeout or an unresolvable host fails. Other schemes (sqlite,
    file paths, databricks) are not probed.

    Raises:
        TrackingServerUnreachable: naming the setting the URI came from and the fixes.
    """
    if not uri or not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingServerUnreachable(
            f"MLflow tracking server {uri} is unreachable ({reason}; probed {uri}/health with a "
            f"{timeout_s:g} s timeout). {_uri_origin(uri)} Start the server (e.g. `mlflow server "
            "--host 127.0.0.1 --port <port>`), or track locally: unset MLFLOW_TRACKING_URI to "
            "use the default sqlite:///mlflow.db in the project root."
        ) from None


def _uri_origin(uri: str) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI") == uri:
        return (
            "The URI comes from the environment variable MLFLOW_TRACKING_URI (read by "
            "conf/base/mlflow.yml, server.mlflow_tracking_uri)."
        )
    return (
        "The URI comes from server.mlflow_tracking_uri in conf/<env>/mlflow.yml (the default "
        "reads the environment variable MLFLOW_TRACKING_URI)."
    )


def process_tags() -> dict[str, str]:
    """Tags that identify this process, so a later run can tell whether it is still alive."""
    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    start = _process_start(os.getpid())
    if start is not None:
        tags[PROCESS_START_TAG] = start
    return tags


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _process_start(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22: starttime


def process_is_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` (started at ``start``, if known) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to another user
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: trust kill(0)
    if fields[0] == "Z":
        return False  # killed, not yet reaped by its parent
    return start is None or _process_start(pid) == start


def _is_stale(run: Any, running: dict[str, Any], host: str, client: Any, depth: int = 0) -> bool:
    tags = run.data.tags
    if tags.get(HOST_TAG) == host and PID_TAG in tags:
        return not process_is_alive(int(tags[PID_TAG]), tags.get(PROCESS_START_TAG))
    parent_id = tags.get(PARENT_TAG)
    if not parent_id or depth > 8:
        return False
    # A nested model run lives only while its parent runs: under an ended parent, or under
    # a stale one, it is stale too.
    if parent_id in running:
        return _is_stale(running[parent_id], running, host, client, depth + 1)
    try:
        return client.get_run(parent_id).info.status != "RUNNING"
    except Exception:  # noqa: BLE001 - a parent MLflow cannot find tells nothing
        return False


def mark_stale_runs_killed(client: Any, experiment_id: str) -> list[str]:
    """Set KILLED on RUNNING runs of ``experiment_id`` whose process is gone.

    A run is stale when it carries this host's name and the pid of a process that no longer
    exists (or is a different process now), or when it is nested under a stale or ended run.
    Runs of other hosts, or without process tags, are left alone: nothing tells if they live.

    Returns:
        The ids of the runs marked KILLED.
    """
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'")
    by_id = {run.info.run_id: run for run in running}
    host = socket.gethostname()
    stale = [run for run in running if _is_stale(run, by_id, host, client)]
    for run in stale:
        client.set_terminated(run.info.run_id, status="KILLED")
        logger.warning(
            "MLflow run %s ('%s', pid %s) was still RUNNING but its process is gone "
            "(killed?): marked KILLED.",
            run.info.run_id,
            run.info.run_name,
            run.data.tags.get(PID_TAG, "of its parent run"),
        )
    return [run.info.run_id for run in stale]


def mark_run_killed(run_id: str | None) -> list[str]:
    """End this process's MLflow runs as KILLED: the active (nested) runs, then ``run_id``
    and any run nested under it that is still RUNNING. Returns the ids marked."""
    import mlflow

    killed = []
    while mlflow.active_run() is not None:
        killed.append(mlflow.active_run().info.run_id)
        mlflow.end_run(status="KILLED")
    if run_id is None:
        return killed
    client = mlflow.MlflowClient()
    parent = client.get_run(run_id)
    for run in [parent, *nested_runs(client, parent, running_only=True)]:
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status="KILLED")
            killed.append(run.info.run_id)
    return sorted(set(killed))


def nested_runs(client: Any, parent: Any, *, running_only: bool = False,
                run_name: str | None = None) -> list[Any]:
    """The runs nested under ``parent`` (an MLflow ``Run``): every one, only the RUNNING ones,
    or only those named ``run_name`` (a model run is named after its model), oldest first."""
    filters = [f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"]
    if running_only:
        filters.append("attributes.status = 'RUNNING'")
    if run_name is not None:
        filters.append(f"tags.`mlflow.runName` = '{run_name}'")
    return client.search_runs([parent.info.experiment_id], filter_string=" and ".join(filters),
                              order_by=["attributes.start_time ASC"])


def end_failed_model_runs(parent_id: str, failed_model: str | None) -> dict[str, str]:
    """After a node failed: the RUNNING model run of ``failed_model`` (the failing node's
    namespace) ends FAILED, and any other model run still RUNNING under ``parent_id`` ends
    KILLED (it was stopped by another model's failure, not by its own). Returns
    ``{run name: status}`` of the runs it ended."""
    import mlflow

    client = mlflow.MlflowClient()
    ended = {}
    for run in nested_runs(client, client.get_run(parent_id), running_only=True):
        status = "FAILED" if run.info.run_name == failed_model else "KILLED"
        client.set_terminated(run.info.run_id, status=status)
        ended[run.info.run_name] = status
    return ended
