"""ModelResultsDataset: a manifest that pins each of a model's outputs at a version, by digest.

Members here are real datasets on disk (Parquet tables, npz trees, a JSON record), saved at
two versions; a reader of the manifest must get the version the manifest names, each loaded
only when read, and refuse a file that changed under it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io.core import DatasetError, Version

from bnstudy.datasets import ModelResults, ModelResultsDataset
from bnstudy.datasets.results_dataset import content_digest
from bnstudy.pipelines.analysis.nodes import traces_by_kind
from tests.conftest import PROJECT_ROOT


def _members(root: Path) -> dict[str, dict]:
    return {
        "training_trace": {"type": "bnstudy.datasets.TableDataset", "versioned": True,
                           "filepath": str(root / "training_trace.parquet")},
        "final_state": {"type": "bnstudy.datasets.NpzDataset", "versioned": True,
                        "filepath": str(root / "final_state.npz")},
        "run_record": {"type": "bnstudy.datasets.PreviewedJSONDataset", "versioned": True,
                       "filepath": str(root / "run_record.json")},
    }


def _outputs(scale: float) -> dict:
    return {"training_trace": pd.DataFrame({"seed": [0, 0, 1], "step": [0, 1, 0],
                                            "train_loss": np.array([2.3, 2.1, 2.2]) * scale}),
            "final_state": {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3) * scale}},
            "run_record": {"seeds": [0, 1], "scale": scale}}


def _save_members(root: Path, version: str, outputs: dict) -> None:
    from kedro.io import AbstractDataset

    for name, config in _members(root).items():
        AbstractDataset.from_config(name, dict(config), save_version=version).save(outputs[name])


def _manifest(root: Path, version: str, outputs: dict, run_id: str | None = None) -> ModelResultsDataset:
    dataset = ModelResultsDataset(filepath=str(root / "results.json"), members=_members(root),
                                  version=Version(None, version))
    dataset.save({"digests": {name: content_digest(value) for name, value in outputs.items()},
                  "mlflow_run": {"run_name": "baseline", "run_id": run_id, "status": "FINISHED"}})
    return ModelResultsDataset(filepath=str(root / "results.json"), members=_members(root),
                               version=Version(version, None))


def test_loads_every_output_at_the_version_the_manifest_pins_not_the_latest(tmp_path):
    first, second = _outputs(1.0), _outputs(10.0)
    _save_members(tmp_path, "2026-01-01T00.00.00.000Z", first)
    results = _manifest(tmp_path, "2026-01-01T00.00.00.000Z", first, run_id="abc").load()
    _save_members(tmp_path, "2026-01-02T00.00.00.000Z", second)  # a later run's outputs

    assert isinstance(results, ModelResults) and set(results) == set(first)
    pd.testing.assert_frame_equal(results["training_trace"], first["training_trace"])
    np.testing.assert_array_equal(results["final_state"]["params"]["w"], first["final_state"]["params"]["w"])
    assert results["run_record"] == first["run_record"]
    assert set(results.versions.values()) == {"2026-01-01T00.00.00.000Z"}
    assert results.mlflow_run["run_id"] == "abc"


def test_an_output_loads_only_when_read(tmp_path):
    outputs = _outputs(1.0)
    _save_members(tmp_path, "2026-01-01T00.00.00.000Z", outputs)
    results = _manifest(tmp_path, "2026-01-01T00.00.00.000Z", outputs).load()
    for state in (tmp_path / "final_state.npz").rglob("*.npz"):
        state.unlink()  # never read below
    assert "final_state" in results and "ics_trace" not in results  # asking loads nothing
    grouped = traces_by_kind({"results:baseline": results})  # as every analysis node reads them
    assert grouped["run_record"]["baseline"]["seeds"] == [0, 1]
    assert results["run_record"]["seeds"] == [0, 1]
    with pytest.raises(DatasetError):
        results["final_state"]


def test_a_changed_file_is_refused_with_what_to_do(tmp_path):
    outputs = _outputs(1.0)
    version = "2026-01-01T00.00.00.000Z"
    _save_members(tmp_path, version, outputs)
    results = _manifest(tmp_path, version, outputs).load()
    record = tmp_path / "run_record.json" / version / "run_record.json"
    record.write_text(json.dumps({"seeds": [0, 1], "scale": 2.0}))
    with pytest.raises(DatasetError, match="'run_record' at version .* changed after the run.*Rerun"):
        results["run_record"]
    with pytest.raises(KeyError, match="no output 'ics_trace'; it has final_state, run_record"):
        results["ics_trace"]


def test_digests_must_name_exactly_the_members_and_members_must_be_versioned(tmp_path):
    dataset = ModelResultsDataset(filepath=str(tmp_path / "results.json"), members=_members(tmp_path),
                                  version=Version(None, None))
    with pytest.raises(DatasetError, match=r"missing \['run_record'\], unknown \['ics_trace'\]"):
        dataset.save({"digests": {"training_trace": "x", "final_state": "y", "ics_trace": "z"}})
    assert not dataset.exists(), "nothing was written"
    with pytest.raises(DatasetError, match="'training_trace' has no saved version.*run the model's training"):
        dataset.save({"digests": dict.fromkeys(_members(tmp_path), "x")})
    with pytest.raises(DatasetError, match=r"No results manifest of .*kedro run --nodes \S+\.collect_results_node"):
        dataset.load()
    members = {**_members(tmp_path), "run_record": {**_members(tmp_path)["run_record"], "versioned": False}}
    dataset = ModelResultsDataset(filepath=str(tmp_path / "results.json"), members=members)
    with pytest.raises(DatasetError, match="'run_record' is not versioned"):
        dataset.save({"digests": dict.fromkeys(members, "x")})


def test_content_digest_tells_a_changed_value_dtype_or_shape():
    frame = _outputs(1.0)["training_trace"]
    assert content_digest(frame) == content_digest(frame.copy())
    changed = frame.copy()
    changed.loc[2, "train_loss"] += 1e-12
    assert content_digest(changed) != content_digest(frame)
    assert content_digest(frame.astype({"step": "int32"})) != content_digest(frame)
    array = np.arange(6.0)
    assert content_digest(array) != content_digest(array.reshape(2, 3))
    assert content_digest(array) != content_digest(array.astype(np.float32))
    assert content_digest({"a": 1, "b": [2]}) == content_digest({"b": [2], "a": 1})


def test_the_catalogs_members_are_the_training_outputs_at_their_own_entries_paths():
    """conf/base's ``{model}.results`` lists every training output, each with the type and
    file of the output's own catalog entry (the anchors), so the manifest pins the files the
    training wrote."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from bnstudy.pipelines.training.pipeline import TRAINING_OUTPUTS

    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT, env="test") as session:
        catalog = session.load_context().catalog
        results = catalog.get("candidate.results")
        described = {name: catalog.get(f"candidate.{name}") for name in TRAINING_OUTPUTS}
    members = results._describe()["members"]
    assert sorted(members) == sorted(TRAINING_OUTPUTS)
    for name, dataset in described.items():
        member = results._members[name]
        assert type(dataset).__module__ + "." + type(dataset).__qualname__ == _qualified(member["type"]), name
        assert Path(member["filepath"]) == Path(str(dataset._filepath)), name


def _qualified(type_name: str) -> str:
    import importlib

    module, _, name = type_name.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return f"{cls.__module__}.{cls.__qualname__}"
