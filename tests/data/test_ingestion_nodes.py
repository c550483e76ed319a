"""The data_ingestion and preprocessing nodes without a Kedro session: parameters, the raw
cache key, and subsets read at ingestion against subsets drawn in preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from bnstudy.data import cifar10
from bnstudy.errors import ParameterError
from bnstudy.pipelines.data_ingestion.nodes import ingest_cifar10
from bnstudy.pipelines.preprocessing.nodes import (
    compute_channel_stats,
    load_raw_arrays,
    make_model_input_test,
    make_model_input_train,
)
from tests.conftest import write_image_folder
from tests.data.test_ingestion import BASE

CLASSES = list(cifar10.CLASS_NAMES)
SIZES = {"train_size": 20, "test_size": 10, "seed": 4}
NO_SUBSET = {"train_size": None, "test_size": None, "seed": 0}


def params(path, source="python_archive", **extra) -> dict:
    """conf/base's data_ingestion (its values live in the YAML alone) for a local source."""
    return {**BASE, "source": source, "path": str(path), "md5": None, "classes": CLASSES, **extra}


def ingest(path, preprocessing=NO_SUBSET, **extra):
    raw_cache, class_names, provenance = ingest_cifar10(params(path, **extra), preprocessing)
    lazy = {name: (lambda value=value: value) for name, value in raw_cache.items()}
    return raw_cache, class_names, provenance, lazy


def test_the_raw_cache_key_is_the_same_for_the_same_source_and_differs_otherwise(python_archive, tmp_path):
    key = ingest(python_archive)[2]["raw_cache_key"]
    copy = tmp_path / "copy.tar.gz"
    copy.write_bytes(python_archive.read_bytes())

    assert ingest(copy)[2]["raw_cache_key"] == key  # same bytes, another place
    assert ingest(python_archive, SIZES, subset_only=True)[2]["raw_cache_key"] != key
    assert ingest(python_archive, {**SIZES, "seed": 5}, subset_only=True)[2]["raw_cache_key"] != (
        ingest(python_archive, SIZES, subset_only=True)[2]["raw_cache_key"]
    )
    raw_cache = ingest(python_archive)[0]
    assert sorted(raw_cache) == [f"{key}/test", f"{key}/train"]


def test_subset_read_at_ingestion_gives_the_model_input_of_a_full_read(python_archive, tmp_path, small_arrays):
    tree = write_image_folder(small_arrays, tmp_path / "tree")
    outputs = {}
    for name, (path, source, subset_only) in {
        "full archive": (python_archive, "python_archive", False),
        "subset of archive": (python_archive, "python_archive", True),
        "subset of folder": (tree, "image_folder", True),
    }.items():
        _, _, provenance, lazy = ingest(path, SIZES, source=source, subset_only=subset_only)
        train, test = load_raw_arrays(lazy, provenance)
        stats = compute_channel_stats(train)
        outputs[name] = (
            make_model_input_train(train, stats, SIZES["train_size"], SIZES["seed"]),
            make_model_input_test(test, stats, SIZES["test_size"], SIZES["seed"]),
            provenance,
        )

    for name in ("subset of archive", "subset of folder"):
        for split in (0, 1):
            np.testing.assert_array_equal(outputs[name][split]["indices"], outputs["full archive"][split]["indices"])
            np.testing.assert_array_equal(outputs[name][split]["labels"], outputs["full archive"][split]["labels"])
        assert outputs[name][2]["num_train"] == 20
        assert outputs[name][2]["subset"] == SIZES
    assert outputs["full archive"][2]["num_train"] == 40 and outputs["full archive"][2]["subset"] is None


def test_preprocessing_asking_for_rows_the_subset_lacks_is_explained(python_archive):
    _, _, provenance, lazy = ingest(python_archive, SIZES, subset_only=True)
    train, _ = load_raw_arrays(lazy, provenance)
    stats = compute_channel_stats(train)

    with pytest.raises(ValueError, match=r"preprocessing\.train_size=20 with preprocessing\.seed=5 .*subset_only kept only 20 of the 40"):
        make_model_input_train(train, stats, 20, 5)
    with pytest.raises(ValueError, match=r"preprocessing\.test_size is 21, but the data has 20 images"):
        make_model_input_test(load_raw_arrays(lazy, provenance)[1], stats, 21, 4)


def test_provenance_points_at_an_entry_the_cache_lacks(python_archive):
    _, _, provenance, _ = ingest(python_archive)

    with pytest.raises(ValueError, match="no entries .* Run the data_ingestion pipeline again"):
        load_raw_arrays({"other/train": dict, "other/test": dict}, provenance)


@pytest.mark.parametrize("md5", [0, 1e5, "", "abc"])
def test_a_number_or_malformed_md5_is_an_error_naming_the_parameter(python_archive, md5):
    # the node's config (section_config, checked here as no preflight ran), whose md5
    # validator words the error
    with pytest.raises(ParameterError, match=r"data_ingestion\.md5 must be .*quote it"):
        ingest_cifar10({**params(python_archive), "md5": md5}, NO_SUBSET)


def test_download_without_md5_is_refused(tmp_path):
    download = {**BASE, "source": "download", "path": None, "url": "http://127.0.0.1:9/c.tar.gz",
                "md5": None, "download_dir": str(tmp_path), "timeout_s": 1, "classes": CLASSES}

    with pytest.raises(cifar10.Cifar10ParameterError, match="md5 is null, but a download is always verified"):
        ingest_cifar10(download, NO_SUBSET)


def test_md5_for_an_extracted_folder_is_refused_not_skipped(tmp_path, small_arrays):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, raw in cifar10.python_archive_members(small_arrays).items():
        (folder / name.split("/")[-1]).write_bytes(raw)

    with pytest.raises(cifar10.Cifar10ParameterError, match="is a directory.*set data_ingestion.md5 to null"):
        ingest_cifar10({**params(folder), "md5": "0" * 32}, NO_SUBSET)
    provenance = ingest_cifar10(params(folder), NO_SUBSET)[2]
    assert provenance["num_train"] == 40 and provenance["checksum"].startswith("tree_sha256:")


# Called without a Kedro run (no preflight in this process), the node checks its sections
# itself with the preflight's words: the parameter's full path and its value (a Kedro run
# refuses them before any node: tests/reliability/test_parameters.py).
@pytest.mark.parametrize(("extra", "preprocessing", "match"), [
    ({"subset_only": "yes"}, SIZES, r"data_ingestion\.subset_only = 'yes'"),
    ({"subset_only": True}, {**SIZES, "train_size": 2.5}, r"preprocessing\.train_size = 2\.5"),
    ({"subset_only": True}, {**SIZES, "test_size": 0}, r"preprocessing\.test_size = 0"),
])
def test_bad_subset_parameters_are_named(python_archive, extra, preprocessing, match):
    with pytest.raises(ParameterError, match=match):
        ingest_cifar10(params(python_archive, **extra), preprocessing)
