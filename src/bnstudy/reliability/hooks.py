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

from bnstudy.parameters import CODE_DEFAULTS, validate_parameters, with_code_defaults
from bnstudy.reliability.params import check_overrides_exist
from bnstudy.reliability.tracking import (
    mark_stale_runs_killed,
    probe_tracking_server,
    process_tags,
)
from bnstudy.roster import model_settings

logger = logging.getLogger(__name__)

REPORT_DATASET = "study_report_md"
# The experiment tag the MLflow 3 UI reads to choose its view (GenAI or model training).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


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
        ``reporting.study_name``), the env, data source and seeds, this process's pid and host;
        and make the experiment open in MLflow's model-training view (not its GenAI view)."""
        import mlflow

        active = mlflow.active_run()
        if active is not None:
            self.run_id, self.experiment_id = active.info.run_id, active.info.experiment_id
            parameters = _parameters(catalog)
            mlflow.set_tags({**process_tags(),
                             **(study_tags(run_params, parameters) if parameters else {})})
            if parameters:
                mlflow.log_params(unwritten_defaults(parameters))
            mlflow.MlflowClient().set_experiment_tag(active.info.experiment_id, *EXPERIMENT_KIND)

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        """The run's last line: the report and the MLflow run, with how to open them."""
        logger.info(self.summary())

    def summary(self) -> str:
        """``Report: <path> | MLflow run <id>: <how to open it>`` (parts that exist)."""
        import mlflow

        parts = []
        if self._report is not None and self._report.exists():
            parts.append(f"Report: {_relative(self._report, self._project_path)}")
        if self.run_id is not None:
            uri = mlflow.get_tracking_uri()
            # the run's page in the UI's model-training view (MLflow 3 opens in its GenAI view)
            page = (f"/#/experiments/{self.experiment_id}/runs/{self.run_id}"
                    "?workflowType=machine_learning")
            opener = (
                f"open {uri.rstrip('/')}{page}" if uri.startswith(("http://", "https://"))
                else f"mlflow ui --backend-store-uri {uri}, then open http://127.0.0.1:5000{page}"
            )
            parts.append(f"MLflow run {self.run_id} (see it with: {opener})")
        return " | ".join(parts) or "Run complete (no report, tracking disabled)."


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
