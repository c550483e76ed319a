"""data_ingestion + preprocessing as Kedro sessions: every source, the raw cache, failed runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bnstudy.core.preprocessing import stratified_subset
from bnstudy.data import cifar10
from bnstudy.errors import ParameterError
from tests.conftest import REAL_CIFAR10_SOURCE, run_session, tar_folder, write_image_folder

OFFICIAL_MEAN = (0.4914, 0.4822, 0.4465)
OFFICIAL_STD = (0.2470, 0.2435, 0.2616)
# Every image, read whole: the small test archives hold fewer than conf/test's 320 / 100.
ALL = {"preprocessing": {"train_size": None, "test_size": None}}
RAW_CACHE = "data/02_intermediate/cifar10_raw"
PROVENANCE = "data/02_intermediate/cifar10_provenance.json"


def versions(project: Path, relative: str) -> list[str]:
    folder = project / relative
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def load_latest(project: Path, relative: str):
    folder = project / relative
    return load(folder / versions(project, relative)[-1] / folder.name)


def load(path: Path):
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    return json.loads(path.read_text())


def raw_files(project: Path) -> list[str]:
    """Every file of the raw cache, relative to it."""
    folder = project / RAW_CACHE
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def load_raw(project: Path, split: str) -> dict[str, np.ndarray]:
    """The raw arrays the latest provenance points at."""
    key = load_latest(project, PROVENANCE)["raw_cache_key"]
    return load(project / RAW_CACHE / key / f"{split}.npz")


def run_data(project: Path, params: dict) -> None:
    run_session(project, "data_ingestion", params=params)
    run_session(project, "preprocessing", params=params)


def archive_params(archive: Path, **extra) -> dict:
    return {"data_ingestion": {"source": "python_archive", "path": str(archive), "md5": None, **extra}, **ALL}


def test_download_from_local_http_server_verify_parse_and_preprocess(
    project_copy, http_server, python_archive, small_arrays
):
    server, served = http_server
    (served / python_archive.name).write_bytes(python_archive.read_bytes())
    params = {
        "data_ingestion": {
            "source": "download",
            "url": server.url(python_archive.name),
            "md5": cifar10.file_md5(python_archive),
        },
        **ALL,
    }

    run_data(project_copy, params)

    assert (project_copy / "data/01_raw" / python_archive.name).is_file()
    train = load_raw(project_copy, "train")
    np.testing.assert_array_equal(train["images"], small_arrays.train_images)
    np.testing.assert_array_equal(train["labels"], small_arrays.train_labels)
    provenance = load_latest(project_copy, PROVENANCE)
    assert provenance["source"] == "download" and provenance["md5"] == cifar10.file_md5(python_archive)
    assert provenance["counts_per_class"]["test"] == dict.fromkeys(cifar10.CLASS_NAMES, 2)
    model_input = load_latest(project_copy, "data/05_model_input/model_input_train.npz")
    assert model_input["images"].dtype == np.float32 and model_input["images"].shape == (40, 32, 32, 3)
    np.testing.assert_allclose(model_input["images"].mean(axis=(0, 1, 2)), 0.0, atol=1e-5)


def test_environment_variables_choose_the_download_url_and_md5(
    project_copy, http_server, python_archive, monkeypatch
):
    server, served = http_server
    (served / "mirror.tar.gz").write_bytes(python_archive.read_bytes())
    monkeypatch.setenv("BNSTUDY_CIFAR10_URL", server.url("mirror.tar.gz"))
    monkeypatch.setenv("BNSTUDY_CIFAR10_MD5", cifar10.file_md5(python_archive).upper())

    run_session(project_copy, "data_ingestion", params=ALL)

    provenance = load_latest(project_copy, PROVENANCE)
    assert provenance["url"] == server.url("mirror.tar.gz") and server.requests == 1
    assert cifar10.file_md5(project_copy / "data/01_raw/mirror.tar.gz") == cifar10.file_md5(python_archive)


def test_corrupted_download_fails_with_checksum_error(project_copy, http_server, python_archive):
    server, served = http_server
    corrupted = bytearray(python_archive.read_bytes())
    corrupted[-10] ^= 0x55
    (served / "cifar-10-python.tar.gz").write_bytes(bytes(corrupted))
    md5 = cifar10.file_md5(python_archive)
    params = {"data_ingestion": {"source": "download", "url": server.url("cifar-10-python.tar.gz"), "md5": md5}}

    with pytest.raises(cifar10.ChecksumError, match=f"Checksum mismatch.*expected md5 {md5}, got [0-9a-f]{{32}}"):
        run_session(project_copy, "data_ingestion", params=params)

    assert [p.name for p in (project_copy / "data/01_raw").iterdir()] == []
    assert raw_files(project_copy) == [] and versions(project_copy, PROVENANCE) == []


def test_unreachable_url_fails_clearly_naming_the_alternatives(project_copy, unused_local_url):
    params = {"data_ingestion": {"source": "download", "url": unused_local_url, "timeout_s": 5}}

    with pytest.raises(cifar10.DownloadError, match="BNSTUDY_CIFAR10_SOURCE=image_folder") as error:
        run_session(project_copy, "data_ingestion", params=params)

    assert unused_local_url in str(error.value)


@pytest.mark.parametrize("md5", [0, 1e5])  # more values: tests/data/test_ingestion_nodes.py
def test_md5_that_yaml_read_as_a_number_stops_the_run(project_copy, python_archive, md5):
    params = archive_params(python_archive, md5=md5)

    # refused by the parameter check before any node (bnstudy.parameters), in the data layer's words
    with pytest.raises(ParameterError, match=r"data_ingestion\.md5 must be .*quote it") as error:
        run_session(project_copy, "data_ingestion", params=params)

    assert repr(md5) in str(error.value)
    assert versions(project_copy, PROVENANCE) == []


def test_failed_run_keeps_earlier_versions_and_the_raw_cache(project_copy, python_archive, tmp_path):
    run_data(project_copy, archive_params(python_archive))
    before = (versions(project_copy, PROVENANCE), raw_files(project_copy))
    first = load_raw(project_copy, "train")

    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(python_archive.read_bytes()[:500])
    with pytest.raises(cifar10.Cifar10FormatError, match="broken.tar.gz"):
        run_session(project_copy, "data_ingestion", params=archive_params(broken))

    assert (versions(project_copy, PROVENANCE), raw_files(project_copy)) == before
    np.testing.assert_array_equal(load_raw(project_copy, "train")["images"], first["images"])


def test_repeated_ingestion_of_one_source_keeps_one_raw_copy(project_copy, python_archive, tmp_path):
    run_session(project_copy, "data_ingestion", params=archive_params(python_archive))
    run_session(project_copy, "data_ingestion", params=archive_params(python_archive))

    records = [load(project_copy / PROVENANCE / v / "cifar10_provenance.json") for v in versions(project_copy, PROVENANCE)]
    assert len(records) == 2 and records[0]["raw_cache_key"] == records[1]["raw_cache_key"]
    key = records[0]["raw_cache_key"]
    assert raw_files(project_copy) == [f"{key}/test.npz", f"{key}/train.npz"]

    # Another source adds its own entry, and preprocessing reads the latest one.
    other = cifar10.write_python_archive(
        cifar10.read_python_archive(python_archive, select=lambda split, labels: np.arange(0, labels.size, 2)),
        tmp_path / "half.tar.gz",
    )
    run_data(project_copy, archive_params(other))
    assert len(raw_files(project_copy)) == 4
    assert load_latest(project_copy, "data/03_primary/channel_stats.json")["num_images"] == 20


def test_local_archive_with_wrong_md5_is_rejected(project_copy, python_archive):
    params = {"data_ingestion": {"source": "python_archive", "path": str(python_archive)}, **ALL}

    with pytest.raises(cifar10.ChecksumError, match="expected c58f30108f718f92721af3b95e74349a"):
        run_session(project_copy, "data_ingestion", params=params)


def test_image_folder_archive_as_python_archive_is_the_wrong_format(project_copy, small_arrays, tmp_path):
    jpeg_tree = tar_folder(write_image_folder(small_arrays, tmp_path / "tree", ".jpg"), tmp_path / "jpeg.tar.gz")
    params = {"data_ingestion": {"source": "python_archive", "path": str(jpeg_tree)}, **ALL}

    with pytest.raises(cifar10.Cifar10FormatError, match="wrong format.*image-folder archive.*source=image_folder"):
        run_session(project_copy, "data_ingestion", params=params)


def test_unknown_source_kind_is_explained(project_copy):
    with pytest.raises(ParameterError, match=r"data_ingestion\.source = 'ftp' \(str\): must be one of"):
        run_session(project_copy, "data_ingestion", params={"data_ingestion": {"source": "ftp"}})


def test_environment_variables_choose_the_source(project_copy, python_archive, monkeypatch):
    monkeypatch.setenv("BNSTUDY_CIFAR10_SOURCE", "python_archive")
    monkeypatch.setenv("BNSTUDY_CIFAR10_PATH", str(python_archive))

    run_session(project_copy, "data_ingestion", params={"data_ingestion": {"md5": None}, **ALL})

    provenance = load_latest(project_copy, PROVENANCE)
    assert provenance["location"] == str(python_archive)


def test_subset_only_decodes_the_subset_preprocessing_keeps(project_copy, small_arrays, tmp_path):
    tree = write_image_folder(small_arrays, tmp_path / "tree")  # 4 train / 2 test per class
    sizes = {"train_size": 20, "test_size": 10, "seed": 3}
    source = {"source": "image_folder", "path": str(tree)}

    run_data(project_copy, {"data_ingestion": {**source, "subset_only": True}, "preprocessing": sizes,
                            # a batch and the curvature probe set must fit in the 20 images
                            "training": {"batch_size": 8, "curvature_probe_size": 16}})

    provenance = load_latest(project_copy, PROVENANCE)
    assert (provenance["num_train"], provenance["num_test"]) == (20, 10)
    assert provenance["source_counts_per_class"]["train"] == dict.fromkeys(cifar10.CLASS_NAMES, 4)
    model_input = load_latest(project_copy, "data/05_model_input/model_input_train.npz")
    expected_rows = stratified_subset(small_arrays.train_labels, 20, seed=3)  # what a full read keeps
    np.testing.assert_array_equal(model_input["indices"], expected_rows)
    np.testing.assert_array_equal(model_input["labels"], small_arrays.train_labels[expected_rows])
    np.testing.assert_array_equal(load_raw(project_copy, "train")["images"], small_arrays.train_images[expected_rows])


def test_subset_larger_than_the_data_names_the_parameter_and_the_count(project_copy, python_archive):
    too_many = {"preprocessing": {"train_size": 41, "test_size": None},
                "training": {"curvature_probe_size": 32}}  # the probe set fits in the 41 images
    read_all = {"data_ingestion": archive_params(python_archive, subset_only=False)["data_ingestion"], **too_many}
    read_subset = {"data_ingestion": {**read_all["data_ingestion"], "subset_only": True}, **too_many}

    with pytest.raises(cifar10.Cifar10ParameterError, match=r"preprocessing\.train_size is 41.* only 40 images"):
        run_session(project_copy, "data_ingestion", params=read_subset)
    run_session(project_copy, "data_ingestion", params=read_all)
    with pytest.raises(ValueError, match=r"preprocessing\.train_size is 41, but the data has 40 images"):
        run_session(project_copy, "preprocessing", params=read_all)


def test_real_cifar10_subset_has_the_full_counts_and_official_statistics(project_copy, real_cifar10):
    sizes = {"train_size": 5_000, "test_size": 1_000, "seed": 0}
    source = {"source": REAL_CIFAR10_SOURCE, "path": str(real_cifar10), "subset_only": True}

    run_data(project_copy, {"data_ingestion": source, "preprocessing": sizes})

    provenance = load_latest(project_copy, PROVENANCE)
    assert provenance["source_counts_per_class"]["train"] == dict.fromkeys(cifar10.CLASS_NAMES, 5_000)
    assert provenance["source_counts_per_class"]["test"] == dict.fromkeys(cifar10.CLASS_NAMES, 1_000)
    assert provenance["counts_per_class"]["train"] == dict.fromkeys(cifar10.CLASS_NAMES, 500)
    stats = load_latest(project_copy, "data/03_primary/channel_stats.json")
    assert stats["num_images"] == 5_000
    np.testing.assert_allclose(stats["mean"], OFFICIAL_MEAN, atol=0.01)
    np.testing.assert_allclose(stats["std"], OFFICIAL_STD, atol=0.01)
