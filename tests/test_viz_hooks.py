"""VizStatsHooks: kedro-viz's sizes replaced by those of the files a run saved, found from the
catalog's configuration (factory patterns included), not from the datasets' private state."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
from kedro.io import DataCatalog

from bnstudy.viz_hooks import STATS_FILE, VizStatsHooks, saved_file

OLD, EARLIER, NOW = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z", "2026-01-03T00.00.00.000Z"


def _catalog(root, save_version: str) -> DataCatalog:
    config = {
        "{model}.trace": {"type": "pandas.ParquetDataset", "filepath": f"{root}/data/{{model}}/trace.parquet",
                          "versioned": True},
        "summary": {"type": "json.JSONDataset", "filepath": f"{root}/data/summary.json"},
        "remote": {"type": "json.JSONDataset", "filepath": "s3://bucket/remote.json", "versioned": True},
        "scratch": {"type": "MemoryDataset"},
    }
    return DataCatalog.from_config(config, save_version=save_version)


def test_the_sizes_are_of_the_saved_version_and_of_the_newest_for_stale_entries(tmp_path):
    # Arrange: an earlier run saved b.trace twice (the later is larger); kedro-viz wrote folder sizes.
    earlier = _catalog(tmp_path, OLD)
    earlier.save("b.trace", pd.DataFrame({"x": [1]}))
    _catalog(tmp_path, EARLIER).save("b.trace", pd.DataFrame({"x": list(range(100))}))
    stats_path = tmp_path / STATS_FILE
    stats_path.parent.mkdir()
    stats_path.write_text(json.dumps({"a.trace": {"rows": 3, "columns": 1, "file_size": 4096},
                                      "b.trace": {"rows": 100, "columns": 1, "file_size": 4096},
                                      "scratch": {"rows": 2}}))
    catalog = _catalog(tmp_path, NOW)
    hooks = VizStatsHooks()
    hooks.after_context_created(SimpleNamespace(project_path=tmp_path))
    hooks.after_catalog_created(catalog, NOW)

    # Act: this run saves a.trace and the unversioned summary.
    catalog.save("a.trace", pd.DataFrame({"x": [1, 2, 3]}))
    hooks.after_dataset_saved("a.trace")
    catalog.save("summary", {"loss": 1.5})
    hooks.after_dataset_saved("summary")
    catalog.save("scratch", [1, 2])
    hooks.after_dataset_saved("scratch")
    hooks.after_pipeline_run()

    # Assert
    stats = json.loads(stats_path.read_text())
    a_file = tmp_path / "data" / "a" / "trace.parquet" / NOW / "trace.parquet"
    b_newest = tmp_path / "data" / "b" / "trace.parquet" / EARLIER / "trace.parquet"
    assert stats["a.trace"] == {"rows": 3, "columns": 1, "file_size": a_file.stat().st_size, "version": NOW}
    assert stats["b.trace"] == {"rows": 100, "columns": 1, "file_size": b_newest.stat().st_size}
    assert b_newest.stat().st_size != (tmp_path / "data/b/trace.parquet" / OLD / "trace.parquet").stat().st_size
    assert stats["summary"] == {"file_size": (tmp_path / "data" / "summary.json").stat().st_size}
    assert stats["scratch"] == {"rows": 2}  # in memory: no file, kedro-viz's entry untouched


def test_a_remote_an_unsaved_and_a_wrapped_entry(tmp_path):
    catalog = _catalog(tmp_path, NOW)
    assert saved_file(catalog.config_resolver.resolve_pattern("remote"), NOW) is None  # not local
    assert saved_file(catalog.config_resolver.resolve_pattern("c.trace"), NOW) is None  # nothing saved
    catalog.save("summary", {"loss": 1.5})
    wrapped = {"type": "kedro_mlflow.io.artifacts.MlflowArtifactDataset",
               "dataset": {"type": "json.JSONDataset", "filepath": str(tmp_path / "data" / "summary.json")}}
    assert saved_file(wrapped) == tmp_path / "data" / "summary.json"
