"""Real dataset metadata for kedro viz: the size of the version a run wrote.

kedro-viz's own ``DatasetStatsHook`` records rows, columns and file size in ``.viz/stats.json``
during a ``kedro run``, but only for pandas DataFrames, and it takes the size of the
dataset's ``filepath``: for a versioned dataset that is the folder holding the versions, so
every versioned table showed the size of a directory entry (4.1 KB). This hook runs after it
(``trylast``) and sets every file-backed dataset's size to that of the file of its newest
version: the datasets this run saved (with their version), and every other entry of the file
(kedro-viz keeps stale entries in memory across runs of one process and rewrites them). It
keeps kedro-viz's rows and columns.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

STATS_FILE = Path(".viz") / "stats.json"  # kedro-viz's VIZ_METADATA_ARGS["path"]


def saved_file(dataset: Any) -> Path | None:
    """The local file a file-backed dataset's newest version lives in (None: not a local file,
    or nothing saved)."""
    try:
        path = dataset._get_load_path() if getattr(dataset, "_version", None) else dataset._filepath
    except Exception:  # noqa: BLE001 - not a file dataset, or no version yet
        return None
    if getattr(dataset, "_protocol", "file") not in ("file", None):
        return None
    path = Path(str(path))
    return path if path.is_file() else None


class VizStatsHooks:
    """Collects the saved file of every dataset of a run; merges their sizes into
    ``.viz/stats.json`` after kedro-viz has written it."""

    def __init__(self) -> None:
        self._catalog: Any = None
        self._project: Path | None = None
        self._sizes: dict[str, dict[str, Any]] = {}

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project = Path(context.project_path)
        self._sizes = {}

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        dataset = self._catalog.get(dataset_name) if self._catalog is not None else None
        path = saved_file(dataset) if dataset is not None else None
        if path is not None:
            entry = {"file_size": path.stat().st_size}
            version = getattr(getattr(dataset, "_version", None), "save", None)
            if version:
                entry["version"] = version
            self._sizes[dataset_name] = entry

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        if self._project is None or not self._sizes:
            return
        stats_path = self._project / STATS_FILE
        try:
            stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
            for name in set(stats) - set(self._sizes):
                path = saved_file(self._catalog.get(name))
                if path is not None:
                    stats[name]["file_size"] = path.stat().st_size
            for name, entry in self._sizes.items():
                stats[name] = {**stats.get(name, {}), **entry}
            stats_path.parent.mkdir(parents=True, exist_ok=True)
            stats_path.write_text(json.dumps(stats))
        except (OSError, ValueError) as error:  # metadata for a UI must not fail a run
            logger.warning("Could not write dataset sizes to %s: %s", stats_path, error)
