"""Real dataset metadata for kedro viz: the size of the version a run wrote.

kedro-viz's own ``DatasetStatsHook`` records rows, columns and file size in ``.viz/stats.json``
during a ``kedro run``, but only for pandas DataFrames, and it takes the size of the
dataset's ``filepath``: for a versioned dataset that is the folder holding the versions, so
every versioned table showed the size of a directory entry (4.1 KB). This hook runs after it
(``trylast``) and sets every file-backed dataset's size to that of the file of its newest
version: the datasets this run saved (with their version), and every other entry of the file
(kedro-viz keeps stale entries in memory across runs of one process and rewrites them). It
keeps kedro-viz's rows and columns.

Where each file lies comes from the catalog's configuration, through Kedro's public API: the
entry of a dataset name, factory patterns resolved (``catalog.config_resolver.resolve_pattern``),
gives its ``filepath`` and whether it is ``versioned``; Kedro saves a versioned dataset to
``<filepath>/<save_version>/<file name>``, with the run's ``save_version`` that the
``after_catalog_created`` hook receives.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io.core import get_protocol_and_path

logger = logging.getLogger(__name__)

STATS_FILE = Path(".viz") / "stats.json"  # kedro-viz's VIZ_METADATA_ARGS["path"]


def saved_file(config: dict[str, Any], save_version: str | None = None) -> Path | None:
    """The local file a dataset's catalog entry saved, as Kedro places it.

    Args:
        config: the dataset's resolved catalog entry (``type``, ``filepath``, ``versioned``...);
            a wrapper's (kedro-mlflow's ``MlflowArtifactDataset``) inner ``dataset`` is used
            when the entry itself has no ``filepath``.
        save_version: the run's save version; None, or no file saved under it: the newest
            version folder on disk.

    Returns:
        The file, or None: not a local file, or nothing saved.
    """
    inner = config.get("dataset")
    if "filepath" not in config and isinstance(inner, dict):
        return saved_file({**inner, "versioned": config.get("versioned", False)}, save_version)
    filepath = config.get("filepath")
    if not isinstance(filepath, str | Path):
        return None
    protocol, path = get_protocol_and_path(str(filepath))
    if protocol != "file":
        return None
    path = Path(path)
    if not config.get("versioned"):
        return path if path.is_file() else None
    if save_version and (path / save_version / path.name).is_file():
        return path / save_version / path.name
    # Kedro's version strings are UTC timestamps, so the newest sorts last.
    return next((file for file in sorted(path.glob(f"*/{path.name}"), reverse=True) if file.is_file()), None)


class VizStatsHooks:
    """Collects the saved file of every dataset of a run; merges their sizes into
    ``.viz/stats.json`` after kedro-viz has written it."""

    def __init__(self) -> None:
        self._catalog: Any = None
        self._save_version: str | None = None
        self._project: Path | None = None
        self._sizes: dict[str, dict[str, Any]] = {}

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project = Path(context.project_path)
        self._sizes = {}

    @hook_impl
    def after_catalog_created(self, catalog: Any, save_version: str | None) -> None:
        self._catalog = catalog
        self._save_version = save_version

    def _config(self, dataset_name: str) -> dict[str, Any]:
        """The dataset's catalog entry, factory patterns resolved ({} for a catalog without
        a configuration, one given its datasets as objects)."""
        resolver = getattr(self._catalog, "config_resolver", None)
        return resolver.resolve_pattern(dataset_name) if resolver is not None else {}

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        config = self._config(dataset_name)
        path = saved_file(config, self._save_version)
        if path is not None:
            entry: dict[str, Any] = {"file_size": path.stat().st_size}
            if config.get("versioned") and self._save_version and path.parent.name == self._save_version:
                entry["version"] = self._save_version
            self._sizes[dataset_name] = entry

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        if self._project is None or not self._sizes:
            return
        stats_path = self._project / STATS_FILE
        try:
            stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
            for name in set(stats) - set(self._sizes):
                path = saved_file(self._config(name))
                if path is not None:
                    stats[name]["file_size"] = path.stat().st_size
            for name, entry in self._sizes.items():
                stats[name] = {**stats.get(name, {}), **entry}
            stats_path.parent.mkdir(parents=True, exist_ok=True)
            stats_path.write_text(json.dumps(stats))
        except (OSError, ValueError) as error:  # metadata for a UI must not fail a run
            logger.warning("Could not write dataset sizes to %s: %s", stats_path, error)
