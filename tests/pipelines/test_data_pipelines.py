"""data_ingestion + preprocessing as Kedro sessions: every source, versioning, failed runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bnstudy.data import cifar10
from tests.conftest import SHARED_JPEG_ARCHIVE, run_session

OFFICIAL_MEAN = (0.4914, 0.4822, 0.4465)
OFFICIAL_STD = (0.2470, 0.2435, 0.2616)
ALL = {"preprocessing": {"train_size": None, "test_size": None}}


def versions(project: Path, relative: str) -> list[str]:
    folder = project / relative
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def load_latest(project: Path, relative: str):
    folder = project / relative
    latest = folder / versions(project, relative)[-1] / folder.name
    if latest.suffix == ".npz":
        with np.load(latest) as data:
            return {k: data[k] for k in data.files}
    return json.loads(latest.read_text())


def run_data(project: Path, params: dict) -> None:
    run_session(project, "data_ingestion", params=params)
    run_session(project, "preprocessing", params=params)


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
    train = load_latest(project_copy, "data/02_intermediate/cifar10_train.npz")
    np.testing.assert_array_equal(train["images"], small_arrays.train_images)
    np.testing.assert_array_equal(train["labels"], small_arrays.train_labels)
    provenance = load_latest(project_copy, "data/02_intermediate/cifar10_provenance.json")
    assert provenance["source"] == "download" and provenance["md5"] == cifar10.file_md5(python_archive)
    assert provenance["counts_per_class"]["test"] == dict.fromkeys(cifar10.CLASS_NAMES, 2)
    model_input = load_latest(project_copy, "data/05_model_input/model_input_train.npz")
    assert model_input["images"].dtype == np.float32 and model_input["images"].shape == (40, 32, 32, 3)
    np.testing.assert_allclose(model_input["images"].mean(axis=(0, 1, 2)), 0.0, atol=1e-5)


def test_corrupted_download_fails_with_checksum_error(project_copy, http_server, python_archive):
    server, served = http_server
    corrupted = bytearray(python_archive.read_bytes())
    corrupted[-10] ^= 0x55
    (served / "cifar-10-python.tar.gz").write_bytes(bytes(corrupted))
    params = {
        "data_ingestion": {
            "source": "download",
            "url": server.url("cifar-10-python.tar.gz"),
            "md5": cifar10.file_md5(python_archive),
        }
    }

    with pytest.raises(cifar10.ChecksumError, match="Checksum mismatch"):
        run_session(project_copy, "data_ingestion", params=params)

    assert [p.name for p in (project_copy / "data/01_raw").iterdir()] == []
    assert versions(project_copy, "data/02_intermediate/cifar10_train.npz") == []


def test_unreachable_url_fails_clearly_naming_the_alternatives(project_copy, unused_local_url):
    params = {"data_ingestion": {"source": "download", "url": unused_local_url, "timeout_s": 5}}

    with pytest.raises(cifar10.DownloadError, match="BNSTUDY_CIFAR10_SOURCE=image_folder"):
        run_session(project_copy, "data_ingestion", params=params)


def test_failed_run_keeps_earlier_versions(project_copy, python_archive, tmp_path):
    good = {"data_ingestion": {"source": "python_archive", "path": str(python_archive), "md5": None}, **ALL}
    run_data(project_copy, good)
    before = versions(project_copy, "data/02_intermediate/cifar10_train.npz")
    first = load_latest(project_copy, "data/02_intermediate/cifar10_train.npz")

    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(python_archive.read_bytes()[:500])
    bad = {"data_ingestion": {"source": "python_archive", "path": str(broken), "md5": None}}
    with pytest.raises(cifar10.Cifar10Error, match="broken.tar.gz"):
        run_session(project_copy, "data_ingestion", params=bad)

    assert versions(project_copy, "data/02_intermediate/cifar10_train.npz") == before
    np.testing.assert_array_equal(
        load_latest(project_copy, "data/02_intermediate/cifar10_train.npz")["images"], first["images"]
    )


def test_second_run_adds_a_version(project_copy, python_archive):
    params = {"data_ingestion": {"source": "python_archive", "path": str(python_archive), "md5": None}}
    run_session(project_copy, "data_ingestion", params=params)
    run_session(project_copy, "data_ingestion", params=params)

    assert len(versions(project_copy, "data/02_intermediate/cifar10_train.npz")) == 2


def test_local_archive_with_wrong_md5_is_rejected(project_copy, python_archive):
    params = {"data_ingestion": {"source": "python_archive", "path": str(python_archive)}}

    with pytest.raises(cifar10.ChecksumError, match="expected c58f30108f718f92721af3b95e74349a"):
        run_session(project_copy, "data_ingestion", params=params)


def test_unknown_source_kind_is_explained(project_copy):
    with pytest.raises(cifar10.Cifar10Error, match="must be one of"):
        run_session(project_copy, "data_ingestion", params={"data_ingestion": {"source": "ftp"}})


def test_environment_variables_choose_the_source(project_copy, python_archive, monkeypatch):
    monkeypatch.setenv("BNSTUDY_CIFAR10_SOURCE", "python_archive")
    monkeypatch.setenv("BNSTUDY_CIFAR10_PATH", str(python_archive))

    run_session(project_copy, "data_ingestion", params={"data_ingestion": {"md5": None}})

    provenance = load_latest(project_copy, "data/02_intermediate/cifar10_provenance.json")
    assert provenance["location"] == str(python_archive)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_JPEG_ARCHIVE.exists(), reason="needs ../shared/datasets/cifar10-jpeg.tar.gz")
def test_shared_jpeg_archive_gives_full_cifar10_with_official_statistics(project_copy):
    params = {"data_ingestion": {"source": "image_folder", "path": str(SHARED_JPEG_ARCHIVE)}, **ALL}

    run_data(project_copy, params)

    provenance = load_latest(project_copy, "data/02_intermediate/cifar10_provenance.json")
    assert (provenance["num_train"], provenance["num_test"]) == (50_000, 10_000)
    assert provenance["counts_per_class"]["train"] == dict.fromkeys(cifar10.CLASS_NAMES, 5_000)
    assert provenance["counts_per_class"]["test"] == dict.fromkeys(cifar10.CLASS_NAMES, 1_000)
    stats = load_latest(project_copy, "data/03_primary/channel_stats.json")
    np.testing.assert_allclose(stats["mean"], OFFICIAL_MEAN, atol=0.01)
    np.testing.assert_allclose(stats["std"], OFFICIAL_STD, atol=0.01)
