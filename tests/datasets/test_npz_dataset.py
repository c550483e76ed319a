"""NpzDataset: round trips, versioning, and atomic saves."""

from __future__ import annotations

import numpy as np
import pytest
from kedro.io.core import DatasetError, Version

from bnstudy.datasets import NpzDataset


def test_nested_dict_round_trip_keeps_values_dtypes_and_structure(tmp_path):
    tree = {
        "conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3), "bias": np.zeros(3)},
        "labels": np.array([1, 2, 3], np.int32),
        "names": np.array(["a", "bb"]),
    }
    dataset = NpzDataset(filepath=str(tmp_path / "tree.npz"))

    dataset.save(tree)
    loaded = dataset.load()

    assert loaded.keys() == tree.keys() and loaded["conv_0"].keys() == tree["conv_0"].keys()
    np.testing.assert_array_equal(loaded["conv_0"]["kernel"], tree["conv_0"]["kernel"])
    assert loaded["conv_0"]["kernel"].dtype == np.float32
    assert loaded["labels"].dtype == np.int32
    assert loaded["names"].tolist() == ["a", "bb"]


def test_bare_array_round_trips_as_array(tmp_path):
    dataset = NpzDataset(filepath=str(tmp_path / "a.npz"), save_args={"compress": True})
    dataset.save(np.eye(3))
    np.testing.assert_array_equal(dataset.load(), np.eye(3))


def test_versions_are_never_overwritten(tmp_path):
    path = str(tmp_path / "v.npz")
    NpzDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save({"x": np.ones(2)})
    NpzDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save({"x": np.zeros(2)})

    latest = NpzDataset(filepath=path, version=Version(None, None)).load()
    first = NpzDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None)).load()

    np.testing.assert_array_equal(latest["x"], np.zeros(2))
    np.testing.assert_array_equal(first["x"], np.ones(2))
    with pytest.raises(DatasetError, match="must not exist if versioning is enabled"):
        NpzDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save({"x": np.ones(2)})


def test_failed_save_leaves_no_file(tmp_path):
    dataset = NpzDataset(filepath=str(tmp_path / "bad.npz"))

    with pytest.raises(DatasetError, match="object arrays"):
        dataset.save({"ok": np.ones(2), "bad": np.array([{"a": 1}], dtype=object)})

    assert list(tmp_path.iterdir()) == []
    assert not dataset.exists()


def test_keys_with_separator_are_rejected(tmp_path):
    with pytest.raises(DatasetError, match="must not contain '/'"):
        NpzDataset(filepath=str(tmp_path / "k.npz")).save({"a/b": np.ones(1)})
