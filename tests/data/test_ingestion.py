"""bnstudy.data.ingestion with typed configs: the checksum errors say whose md5 was expected,
and a server whose file does not match is not "retried"."""

from __future__ import annotations

import pytest

from bnstudy.data import cifar10, ingestion
from bnstudy.parameters import DataIngestion, Preprocessing

ALL = Preprocessing(train_size=None, test_size=None, seed=0)  # every image
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"  # conf/base's data_ingestion.md5
OTHER_MD5 = "0123456789abcdef0123456789abcdef"
# conf/base's data_ingestion without its local source (the models have no defaults)
BASE = {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "md5": OFFICIAL_MD5,
        "download_dir": "data/01_raw", "timeout_s": 60,
        "classes": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                    "ship", "truck"), "subset_only": False}


def local(path, **fields) -> DataIngestion:
    return DataIngestion(**{**BASE, "source": "python_archive", "path": str(path), **fields})


def test_a_local_archive_not_matching_the_official_md5_says_what_to_fix(python_archive):
    with pytest.raises(cifar10.ChecksumError) as error:
        ingestion.ingest(local(python_archive), ALL)  # md5: conf/base's, the official archive's

    message = str(error.value)
    assert f"expected {OFFICIAL_MD5} (data_ingestion.md5)" in message
    assert cifar10.file_md5(python_archive) in message and "corrupt or truncated" in message


def test_a_users_md5_is_not_called_the_official_archives(python_archive):
    with pytest.raises(cifar10.ChecksumError) as error:
        ingestion.ingest(local(python_archive, md5=OTHER_MD5), ALL)

    message = str(error.value)
    assert f"expected {OTHER_MD5} (data_ingestion.md5)" in message
    assert "official" not in message
    assert "data_ingestion.path" in message and "null" in message  # the two fixes


def test_a_server_with_another_archive_is_told_to_check_url_and_md5_not_to_retry(
    http_server, python_archive, tmp_path
):
    server, served = http_server
    (served / "mirror.tar.gz").write_bytes(python_archive.read_bytes())  # not the md5's file
    config = DataIngestion(**{**BASE, "source": "download", "path": None,
                              "url": server.url("mirror.tar.gz"), "md5": OTHER_MD5,
                              "download_dir": str(tmp_path / "raw"), "timeout_s": 5})

    for _ in range(2):  # a second run fails the same way: retrying is no fix
        with pytest.raises(cifar10.ChecksumError) as error:
            ingestion.ingest(config, ALL)
        message = str(error.value)
        assert f"expected md5 {OTHER_MD5}, got {cifar10.file_md5(python_archive)}" in message
        assert "does not match data_ingestion.md5" in message and "data_ingestion.url" in message
        assert "run again to retry" not in message and "official" not in message.partition("\n")[0]
    assert server.requests == 2 and list((tmp_path / "raw").glob("*")) == []


def test_a_subset_reads_the_configs_attributes(python_archive):
    config = local(python_archive, md5=None, subset_only=True)

    raw_cache, _, provenance = ingestion.ingest(config, Preprocessing(train_size=20, test_size=10, seed=4))

    assert provenance["subset"] == {"train_size": 20, "test_size": 10, "seed": 4}
    assert (provenance["num_train"], provenance["num_test"]) == (20, 10)
    assert ingestion.subset_settings(config, ALL) is None
    assert ingestion.subset_settings(local(python_archive, subset_only=False),
                                     Preprocessing(train_size=20, test_size=None, seed=0)) is None
    assert sorted(raw_cache) == sorted(f"{provenance['raw_cache_key']}/{split}" for split in ("train", "test"))
