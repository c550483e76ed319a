"""Kedro hooks of the reliability guarantees (docs/reliability.md), registered in settings.py.

Ordering: Kedro registers settings.HOOKS before plugin hooks and pluggy calls the last
registered first, so kedro-mlflow's ``MlflowHook`` would run before these. ``tryfirst`` puts
the preflight checks ahead of it (its ``after_context_created`` already talks to the tracking
server); ``trylast`` puts the bookkeeping after it (its run exists by then).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from bnstudy.datasets.mlflow_model_run_dataset import RUN_COLOR_TAG
from bnstudy.palette import STUDY_RUN_COLOR
from bnstudy.parameters import CODE_DEFAULTS, validate_parameters, with_code_defaults
from bnstudy.reliability.params import check_overrides_exist
from bnstudy.reliability.tracking import (
    end_failed_model_runs,
    mark_stale_runs_killed,
    nested_runs,
    probe_tracking_server,
    process_tags,
)
from bnstudy.roster import model_settings

logger = logging.getLogger(__name__)

REPORT_DATASET = "study_report_md"
# The experiment tag of MLflow 3's "experiment type". The 3.17 UI does not choose its view by
# it: the view comes from the URL's ``workflowType`` (else the browser's saved choice, first
# GenAI), so every link this project prints carries WORKFLOW (docs/tracking.md).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
WORKFLOW = "workflowType=machine_learning"
# kedro-mlflow tags the run with Kedro's run_params, where "run_id" is the Kedro session id:
# renamed to what it is.
SESSION_TAG = "kedro.session_id"


class PreflightHooks:
    """Checks that fail a run before its first node (and before any MLflow run exists)."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Unknown ``--params`` keys, then the tracking server's reachability."""
        loader = context.config_loader
        if loader.runtime_params:
            configured = _configured_parameters(loader)
            if configured is not None:
                check_overrides_exist(configured, loader.runtime_params)
        probe_tracking_server(_tracking_uri(loader))

    @hook_impl
    def after_catalog_created(self, parameters: dict[str, Any]) -> None:
        """The whole parameter tree (``--params`` included), before the first node."""
        validate_parameters(parameters["parameters"])  # Kedro's whole tree, always there


def _configured_parameters(loader: Any) -> dict[str, Any] | None:
    """The parameters without the run's ``--params`` (None if they cannot load so), with the
    keys conf/ leaves at the code's defaults (``training.learning_rate``: known, though not
    written), each model of the roster with the shared sections it may override
    (``models.<name>.training``)."""
    overrides = loader.runtime_params
    loader.runtime_params = {}
    try:
        params = loader["parameters"]
    except Exception:  # noqa: BLE001 - e.g. a ${runtime_params:} without default
        return None
    finally:
        loader.runtime_params = overrides
    params = with_code_defaults(params)
    models = params.get("models")
    if isinstance(models, dict):
        params["models"] = {name: model_settings(params, entry) if isinstance(entry, dict) else entry
                            for name, entry in models.items()}
    return params


def _tracking_uri(loader: Any) -> str | None:
    """server.mlflow_tracking_uri of mlflow.yml, as kedro-mlflow will read it."""
    import os

    from kedro.config import MissingConfigException

    loader.config_patterns.setdefault("mlflow", ["mlflow*", "mlflow*/**", "**/mlflow*"])
    try:
        server = loader["mlflow"].get("server") or {}
    except MissingConfigException:
        server = {}
    return server.get("mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")


class RunRecordHooks:
    """MLflow bookkeeping: stale runs KILLED, this run tagged with its process, and a final
    line that says where the report and the run are.

    Attributes:
        run_id: this process's MLflow run (the study's parent run), once it has started;
            the command line marks it KILLED when the run is interrupted.
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._failed_model: str | None = None
        self._report: Path | None = None
        self._project_path: Path | None = None

    @hook_impl(trylast=True)
    def after_context_created(self, context: Any) -> None:
        """After kedro-mlflow has set up tracking: mark dead processes' runs KILLED."""
        import mlflow

        self.run_id = None
        self._project_path = Path(context.project_path)
        mlflow_config = getattr(context, "mlflow", None)  # set by kedro-mlflow's hook
        name = mlflow_config.tracking.experiment.name if mlflow_config is not None else None
        found = mlflow.get_experiment_by_name(name) if name else None
        if found is not None:
            mark_stale_runs_killed(mlflow.MlflowClient(), found.experiment_id)

    @hook_impl
    def after_catalog_created(self, conf_catalog: dict[str, Any], save_version: str | None) -> None:
        """Remember where this run's report will be (the dataset's path, this version).
        An interactive session (``%load_ext kedro.ipython``) has no save version: no report."""
        entry = conf_catalog.get(REPORT_DATASET) or {}
        filepath = entry.get("filepath")
        if filepath and entry.get("versioned") and save_version is None:
            self._report = None
        elif filepath and entry.get("versioned"):
            self._report = Path(filepath) / save_version / Path(filepath).name
        else:
            self._report = Path(filepath) if filepath else None

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        """Name and tag the run kedro-mlflow has just started: ``<env>-<timestamp>`` (or
        ``reporting.study_name``), the env, data source and seeds, this process's pid and host,
        the Kedro session id as ``kedro.session_id`` (not kedro-mlflow's ``run_id``), and the
        study run's colour (a grey apart from every model's)."""
        import mlflow

        self._failed_model = None
        active = mlflow.active_run()
        if active is not None:
            self.run_id, self.experiment_id = active.info.run_id, active.info.experiment_id
            parameters = _parameters(catalog)
            client = mlflow.MlflowClient()
            session = run_params.get("run_id")
            if "run_id" in client.get_run(self.run_id).data.tags:
                client.delete_tag(self.run_id, "run_id")
            mlflow.set_tags({**process_tags(), RUN_COLOR_TAG: STUDY_RUN_COLOR,
                             **({SESSION_TAG: str(session)} if session else {}),
                             **(study_tags(run_params, parameters) if parameters else {})})
            if parameters:
                mlflow.log_params(unwritten_defaults(parameters))
            client.set_experiment_tag(active.info.experiment_id, *EXPERIMENT_KIND)

    @hook_impl
    def on_node_error(self, node: Any) -> None:
        """Remember the failing node's model (its namespace) for on_pipeline_error."""
        namespace = getattr(node, "namespace", None)
        self._failed_model = namespace.split(".")[0] if namespace else None

    @hook_impl
    def on_pipeline_error(self) -> None:
        """A failed run ends its model runs too: the failing model's FAILED, any other still
        open KILLED (kedro-mlflow ends only the study's run and the active ones)."""
        if self.run_id is None:
            return
        try:
            ended = end_failed_model_runs(self.run_id, self._failed_model)
        except Exception as error:  # noqa: BLE001 - the node's own error is the one to show
            logger.warning("Could not end the model runs of MLflow run %s: %s", self.run_id, error)
            return
        for name, status in ended.items():
            logger.info("MLflow model run '%s' ended %s.", name, status)

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        """The run's last lines: the report and the MLflow run with how to open it, then the
        link alone on a line of its own (written to stdout unwrapped, so it can be clicked)."""
        import sys

        line, link = self.summary()
        logger.info(line)
        if link:
            sys.stdout.write(f"{link}\n")
            sys.stdout.flush()

    def summary(self) -> tuple[str, str | None]:
        """``("Report: <path> | MLflow run <id>: <how to open it>", link)``: the parts that
        exist, and the UI link: the compare view of the model runs when there are two or
        more, else the run's own page, in the model-training view."""
        import mlflow

        parts = []
        if self._report is not None and self._report.exists():
            parts.append(f"Report: {_relative(self._report, self._project_path)}")
        link = None
        if self.run_id is not None:
            uri = mlflow.get_tracking_uri()
            remote = uri.startswith(("http://", "https://"))
            page, what = self._page()
            link = f"{uri.rstrip('/') if remote else 'http://127.0.0.1:5000'}{page}"
            opener = ("open the link below" if remote else
                      f"start the UI with `mlflow ui --backend-store-uri {uri}`, then open the link below")
            parts.append(f"MLflow run {self.run_id} ({what}: {opener})")
        return " | ".join(parts) or "Run complete (no report, tracking disabled).", link

    def _page(self) -> tuple[str, str]:
        """The UI page (after the host) and what it shows."""
        import json
        import urllib.parse

        import mlflow

        client = mlflow.MlflowClient()
        try:
            models = [run.info.run_id for run in nested_runs(client, client.get_run(self.run_id))]
        except Exception:  # noqa: BLE001 - a store that cannot list the runs: the run's page
            models = []
        if len(models) >= 2:
            runs = urllib.parse.quote(json.dumps(models))
            experiments = urllib.parse.quote(json.dumps([self.experiment_id]))
            return (f"/#/compare-runs?runs={runs}&experiments={experiments}&{WORKFLOW}",
                    f"its {len(models)} model runs compared")
        return f"/#/experiments/{self.experiment_id}/runs/{self.run_id}?{WORKFLOW}", "its page"


def study_tags(run_params: dict[str, Any], parameters: dict[str, Any]) -> dict[str, str]:
    """The study run's name and tags, so runs of different studies tell apart in the UI:
    ``mlflow.runName`` = ``reporting.study_name`` or ``<env>-<YYYYmmdd-HHMMSS>``, and
    ``bnstudy.env``, ``bnstudy.data_source``, ``bnstudy.seeds``."""
    from datetime import datetime

    env = run_params.get("env") or "local"
    name = parameters["reporting"]["study_name"] or f"{env}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    training = with_code_defaults(parameters)["training"]
    seeds = training["seeds"] or [training["seed"]]
    source = parameters["data_ingestion"]["source"]
    return {"mlflow.runName": str(name), "bnstudy.env": str(env), "bnstudy.data_source": str(source),
            "bnstudy.seeds": ",".join(str(seed) for seed in seeds)}


def unwritten_defaults(parameters: dict[str, Any]) -> dict[str, Any]:
    """The shared parameters conf/ leaves at the code's defaults, as the study run's params
    (``training.learning_rate``): kedro-mlflow logs the node inputs as written, so without
    these the run would not say which learning rate it used. The keys conf/ states are left to
    kedro-mlflow (a key logged twice must keep its value)."""
    return {f"{section}.{key}": list(value) if isinstance(value, tuple) else value
            for section, defaults in CODE_DEFAULTS.items()
            for key, value in defaults.items() if key not in (parameters.get(section) or {})}


def _parameters(catalog: Any) -> dict[str, Any]:
    """The run's whole parameter tree (the catalog's ``parameters`` entry), {} without one."""
    try:
        return catalog.load("parameters") or {}
    except Exception:  # noqa: BLE001 - a catalog without parameters: no study tags to add
        return {}


def _relative(path: Path, root: Path | None) -> str:
    try:
        return str(path.relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)
