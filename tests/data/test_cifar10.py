"""The CIFAR-10 readers: formats, checksums, and the errors bad input must get."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bnstudy.data import cifar10
from tests.conftest import make_arrays, tar_folder, write_image_folder


def assert_same_arrays(actual: cifar10.Cifar10Arrays, expected: cifar10.Cifar10Arrays) -> None:
    np.testing.assert_array_equal(actual.train_images, expected.train_images)
    np.testing.assert_array_equal(actual.train_labels, expected.train_labels)
    np.testing.assert_array_equal(actual.test_images, expected.test_images)
    np.testing.assert_array_equal(actual.test_labels, expected.test_labels)
    assert actual.class_names == expected.class_names


class TestPythonArchive:
    def test_round_trip_preserves_pixels_layout_and_labels(self, python_archive, small_arrays):
        arrays = cifar10.read_python_archive(python_archive)

        assert arrays.train_images.shape == (40, 32, 32, 3)
        assert arrays.train_images.dtype == np.uint8
        assert arrays.train_labels.dtype == np.int32
        assert_same_arrays(arrays, small_arrays)

    def test_channel_major_rows_become_hwc_images(self, tmp_path):
        # One image whose red plane is 1, green 2, blue 3: the official rows hold the
        # 1024 red values first, so a wrong reshape mixes the channels up.
        arrays = make_arrays(train_per_class=1, test_per_class=1)
        image = np.zeros((32, 32, 3), np.uint8)
        image[..., 0], image[..., 1], image[..., 2] = 1, 2, 3
        arrays.train_images[0] = image
        path = cifar10.write_python_archive(arrays, tmp_path / "a.tar.gz")
        with tarfile.open(path) as archive:
            import pickle

            raw = pickle.loads(archive.extractfile("cifar-10-batches-py/data_batch_1").read(), encoding="bytes")
        row = raw[b"data"][0]
        assert (row[:1024] == 1).all() and (row[1024:2048] == 2).all() and (row[2048:] == 3).all()

        np.testing.assert_array_equal(cifar10.read_python_archive(path).train_images[0], image)

    def test_truncated_archive_is_a_clear_error(self, python_archive, tmp_path):
        truncated = tmp_path / "truncated.tar.gz"
        truncated.write_bytes(python_archive.read_bytes()[: python_archive.stat().st_size // 2])

        with pytest.raises(cifar10.Cifar10Error, match="truncated.tar.gz.*(truncated|corrupt)"):
            cifar10.read_python_archive(truncated)

    def test_label_out_of_range_names_the_batch(self, tmp_path):
        arrays = make_arrays(train_per_class=1, test_per_class=1)
        arrays.test_labels[3] = 10
        path = cifar10.write_python_archive(arrays, tmp_path / "bad.tar.gz")

        with pytest.raises(cifar10.Cifar10Error, match=r"test_batch: label 10 at index 3 is out of range \[0, 10\)"):
            cifar10.read_python_archive(path)

    def test_missing_batch_is_named(self, tmp_path):
        path = tmp_path / "partial.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            info = tarfile.TarInfo("cifar-10-batches-py/readme.html")
            info.size = 2
            archive.addfile(info, io.BytesIO(b"hi"))

        with pytest.raises(cifar10.Cifar10Error, match="data_batch_1"):
            cifar10.read_python_archive(path)

    def test_unexpected_class_list_is_rejected(self, python_archive):
        with pytest.raises(cifar10.Cifar10Error, match="expected"):
            cifar10.read_python_archive(python_archive, class_names=("a", "b"))


class TestDownload:
    def test_downloads_verifies_and_reuses(self, http_server, python_archive, tmp_path):
        server, served = http_server
        (served / python_archive.name).write_bytes(python_archive.read_bytes())
        md5 = cifar10.file_md5(python_archive)
        destination = tmp_path / "raw" / python_archive.name

        first = cifar10.download_archive(server.url(python_archive.name), destination, md5, progress=False)
        again = cifar10.download_archive(server.url(python_archive.name), destination, md5, progress=False)

        assert first == again == destination
        assert cifar10.file_md5(destination) == md5
        assert server.requests == 1  # the valid copy was reused, not fetched again
        assert not destination.with_name(destination.name + ".part").exists()

    def test_corrupted_download_gets_checksum_error_and_leaves_no_file(
        self, http_server, python_archive, tmp_path
    ):
        server, served = http_server
        corrupted = bytearray(python_archive.read_bytes())
        corrupted[100] ^= 0xFF
        (served / "cifar.tar.gz").write_bytes(bytes(corrupted))
        md5 = cifar10.file_md5(python_archive)
        destination = tmp_path / "raw" / "cifar.tar.gz"

        with pytest.raises(cifar10.ChecksumError, match=f"expected md5 {md5}, got [0-9a-f]{{32}}"):
            cifar10.download_archive(server.url("cifar.tar.gz"), destination, md5, progress=False)

        assert list(destination.parent.iterdir()) == []  # neither the archive nor a .part file

    def test_unreachable_url_names_url_and_offline_alternatives(self, unused_local_url, tmp_path):
        with pytest.raises(cifar10.DownloadError) as error:
            cifar10.download_archive(unused_local_url, tmp_path / "x.tar.gz", "0" * 32, timeout_s=5, progress=False)

        message = str(error.value)
        assert unused_local_url in message
        assert "python_archive" in message and "image_folder" in message
        assert not (tmp_path / "x.tar.gz").exists()
        assert not (tmp_path / "x.tar.gz.part").exists()

    def test_existing_invalid_archive_is_kept_and_reported(self, tmp_path):
        destination = tmp_path / "cifar.tar.gz"
        destination.write_bytes(b"not the archive")

        with pytest.raises(cifar10.ChecksumError, match="left in place"):
            cifar10.download_archive("http://127.0.0.1:9/none", destination, "0" * 32, progress=False)

        assert destination.read_bytes() == b"not the archive"


class TestImageFolder:
    @pytest.mark.parametrize("form", ["directory", "tar.gz", "nested tar.gz", "zip"])
    def test_reads_every_form_losslessly(self, tmp_path, small_arrays, form):
        folder = write_image_folder(small_arrays, tmp_path / "tree")
        if form == "directory":
            source = folder
        elif form == "tar.gz":
            source = tar_folder(folder, tmp_path / "tree.tar.gz")
        elif form == "nested tar.gz":
            source = tar_folder(folder, tmp_path / "tree.tgz", arcname="cifar10")
        else:
            source = tmp_path / "tree.zip"
            with zipfile.ZipFile(source, "w") as archive:
                for file in folder.rglob("*.png"):
                    archive.write(file, file.relative_to(folder).as_posix())

        arrays = cifar10.read_image_folder(source)

        # PNG is lossless and files are read in sorted order (class-major, then name),
        # which is the order make_arrays produced.
        assert_same_arrays(arrays, small_arrays)
        assert arrays.counts()["train"] == dict.fromkeys(cifar10.CLASS_NAMES, 4)

    def test_wrong_image_size_names_the_file(self, tmp_path, small_arrays):
        folder = write_image_folder(small_arrays, tmp_path / "tree")
        Image.new("RGB", (28, 28)).save(folder / "train" / "cat" / "0013.png")

        with pytest.raises(cifar10.Cifar10Error, match=r"train/cat/0013\.png is 28x28"):
            cifar10.read_image_folder(folder)

    def test_unknown_class_folder_is_named(self, tmp_path, small_arrays):
        folder = write_image_folder(small_arrays, tmp_path / "tree")
        (folder / "test" / "unicorn").mkdir()
        Image.new("RGB", (32, 32)).save(folder / "test" / "unicorn" / "0000.png")

        with pytest.raises(cifar10.Cifar10Error, match="unknown class folder 'test/unicorn'"):
            cifar10.read_image_folder(folder)

    def test_empty_split_is_named(self, tmp_path, small_arrays):
        folder = write_image_folder(small_arrays, tmp_path / "tree")
        for file in (folder / "test").rglob("*.png"):
            file.unlink()

        with pytest.raises(cifar10.Cifar10Error, match="'test' split is empty"):
            cifar10.read_image_folder(folder)

    def test_undecodable_image_names_the_file(self, tmp_path, small_arrays):
        folder = write_image_folder(small_arrays, tmp_path / "tree")
        (folder / "train" / "dog" / "0021.png").write_bytes(b"garbage")

        with pytest.raises(cifar10.Cifar10Error, match=r"train/dog/0021\.png"):
            cifar10.read_image_folder(folder)

    def test_truncated_archive_is_a_clear_error(self, tmp_path, small_arrays):
        archive = tar_folder(write_image_folder(small_arrays, tmp_path / "tree"), tmp_path / "t.tar.gz")
        archive.write_bytes(archive.read_bytes()[:2000])

        with pytest.raises(cifar10.Cifar10Error, match="truncated"):
            cifar10.read_image_folder(archive)


def test_file_digests_match_known_values(tmp_path: Path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert cifar10.file_md5(path) == "900150983cd24fb0d6963f7d28e17f72"
    assert cifar10.file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
