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

    @pytest.mark.parametrize("form", ["zip", "extracted folder"])
    def test_zip_and_extracted_folder_read_like_the_archive(self, python_archive, small_arrays, tmp_path, form):
        with tarfile.open(python_archive) as archive:
            members = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}
        if form == "zip":
            source = tmp_path / "cifar.zip"
            with zipfile.ZipFile(source, "w") as archive:
                for name, raw in members.items():
                    archive.writestr(name, raw)
        else:
            source = tmp_path / "extracted"
            for name, raw in members.items():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                (source / name).write_bytes(raw)

        assert_same_arrays(cifar10.read_python_archive(source), small_arrays)

    def test_image_folder_archive_is_the_wrong_format_not_a_corrupt_one(self, tmp_path, small_arrays):
        jpeg_tree = tar_folder(write_image_folder(small_arrays, tmp_path / "tree", ".jpg"), tmp_path / "j.tar.gz")

        with pytest.raises(cifar10.Cifar10FormatError, match="wrong format.*image-folder archive.*source=image_folder"):
            cifar10.read_python_archive(jpeg_tree)
        with pytest.raises(cifar10.Cifar10FormatError, match="wrong format"):
            cifar10.reject_image_folder(jpeg_tree)

    def test_reject_image_folder_passes_archives_of_batches_and_unreadable_files(self, python_archive, tmp_path):
        garbage = tmp_path / "garbage.tar.gz"
        garbage.write_bytes(b"\x1f\x8b not really gzip")

        cifar10.reject_image_folder(python_archive)  # no error: the right kind
        cifar10.reject_image_folder(garbage)  # no error: unreadable is the checksum's to report

    def test_select_keeps_the_chosen_rows_and_records_them(self, python_archive, small_arrays):
        arrays = cifar10.read_python_archive(python_archive, select=lambda split, labels: np.arange(1, labels.size, 3))

        rows = np.arange(1, 40, 3)
        np.testing.assert_array_equal(arrays.train_images, small_arrays.train_images[rows])
        np.testing.assert_array_equal(arrays.subset["train"].rows, rows)
        np.testing.assert_array_equal(arrays.subset["train"].source_labels, small_arrays.train_labels)
        assert arrays.source_counts()["train"] == dict.fromkeys(cifar10.CLASS_NAMES, 4)
        assert sum(arrays.counts()["train"].values()) == rows.size


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

    def test_download_uses_pooch_with_the_known_md5_and_a_progress_bar(
        self, http_server, python_archive, tmp_path, monkeypatch
    ):
        import pooch

        server, served = http_server
        (served / "c.tar.gz").write_bytes(python_archive.read_bytes())
        md5 = cifar10.file_md5(python_archive)
        calls = []
        real_retrieve = pooch.retrieve
        monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: calls.append(k) or real_retrieve(*a, **k))

        cifar10.download_archive(server.url("c.tar.gz"), tmp_path / "raw" / "c.tar.gz", md5.upper())

        assert calls[0]["known_hash"] == f"md5:{md5}" and calls[0]["path"] == tmp_path / "raw"
        assert calls[0]["downloader"].progressbar is True

    @pytest.mark.parametrize("md5", [0, 1e5, None, "", "xyz", "0" * 31])
    def test_md5_must_be_32_hex_digits_and_is_never_skipped(self, tmp_path, md5):
        with pytest.raises(cifar10.Cifar10ParameterError, match=r"data_ingestion\.md5 .*(quote it|null)") as error:
            cifar10.download_archive("http://127.0.0.1:9/c.tar.gz", tmp_path / "c.tar.gz", md5, progress=False)

        assert repr(md5) in str(error.value) or md5 is None
        assert list(tmp_path.iterdir()) == []

    def test_url_that_is_not_http_or_ftp_is_explained(self, tmp_path, python_archive):
        with pytest.raises(cifar10.Cifar10ParameterError, match="file:///x.tar.gz.*not an http"):
            cifar10.download_archive("file:///x.tar.gz", tmp_path / "x.tar.gz", "0" * 32, progress=False)

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

    def test_python_archive_as_image_folder_suggests_python_archive(self, python_archive):
        with pytest.raises(cifar10.Cifar10FormatError, match="holds no images.*use source=python_archive"):
            cifar10.read_image_folder(python_archive)

    def test_truncated_archive_is_a_clear_error(self, tmp_path, small_arrays):
        archive = tar_folder(write_image_folder(small_arrays, tmp_path / "tree"), tmp_path / "t.tar.gz")
        archive.write_bytes(archive.read_bytes()[:2000])

        with pytest.raises(cifar10.Cifar10Error, match="truncated"):
            cifar10.read_image_folder(archive)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("C58F30108F718F92721AF3B95E74349A", "c58f30108f718f92721af3b95e74349a")],
)
def test_checked_md5_accepts_null_and_hex_strings(value, expected):
    assert cifar10.checked_md5(value) == expected


@pytest.mark.parametrize("value", [0, 1e5, 123, True, "", "c58f", "g" * 32, " " + "0" * 32])
def test_checked_md5_rejects_numbers_and_malformed_strings_naming_the_parameter(value):
    with pytest.raises(cifar10.Cifar10ParameterError) as error:
        cifar10.checked_md5(value)

    message = str(error.value)
    assert message.startswith("data_ingestion.md5 must be") and repr(value) in message
    assert "quote it" in message


def test_tree_checksum_depends_on_names_and_content_only(tmp_path: Path):
    for copy in ("a", "b"):
        (tmp_path / copy / "train").mkdir(parents=True)
        (tmp_path / copy / "train" / "x.png").write_bytes(b"1")
    same = cifar10.tree_sha256(tmp_path / "a") == cifar10.tree_sha256(tmp_path / "b")
    (tmp_path / "b" / "train" / "x.png").write_bytes(b"2")

    assert same and cifar10.tree_sha256(tmp_path / "a") != cifar10.tree_sha256(tmp_path / "b")


def test_file_digests_match_known_values(tmp_path: Path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert cifar10.file_md5(path) == "900150983cd24fb0d6963f7d28e17f72"
    assert cifar10.file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
