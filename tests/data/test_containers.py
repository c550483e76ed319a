"""Directory/tar/zip access: the fast tar scanner against tarfile, and damage it must catch."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from bnstudy.data import cifar10

LONG_DIR = "train/" + "d" * 120  # > 100 characters: a ustar prefix field, a GNU long name
MEMBERS = {
    "train/cat/0000.png": b"a" * 700,
    "train/cat/0001.png": b"",
    f"{LONG_DIR}/x.png": b"b" * 513,
    "test/dog/0000.png": bytes(range(256)) * 3,
}


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w", tar_format: int = tarfile.GNU_FORMAT) -> Path:
    with tarfile.open(path, mode, format=tar_format) as archive:
        folder = tarfile.TarInfo("train")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
        link = tarfile.TarInfo("train/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "cat/0000.png"
        archive.addfile(link)
    return path


def read_all(path: Path) -> dict[str, bytes]:
    with cifar10.open_container(path) as container:
        return container.read_many(container.names())


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT])
def test_tar_members_match_tarfile_in_every_format_and_compression(tmp_path, mode, tar_format):
    path = write_tar(tmp_path / "a.tar", MEMBERS, mode, tar_format)

    assert read_all(path) == MEMBERS  # regular files only: no folder, no symlink


def test_pax_headers_fall_back_to_tarfile(tmp_path):
    members = {"train/cat/\u00e9t\u00e9.png": b"x" * 10, "train/" + "e" * 300 + ".png": b"y"}

    assert read_all(write_tar(tmp_path / "p.tar", members, tar_format=tarfile.PAX_FORMAT)) == members


@pytest.mark.parametrize("form", ["directory", "zip"])
def test_directory_and_zip_give_the_same_members(tmp_path, form):
    if form == "directory":
        path = tmp_path / "tree"
        for name, raw in MEMBERS.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(raw)
    else:
        path = tmp_path / "a.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("train/cat/", b"")  # a folder entry: not a file
            for name, raw in MEMBERS.items():
                archive.writestr(f"./{name}", raw)

    assert read_all(path) == MEMBERS


def test_plain_tar_cut_between_members_is_truncated(tmp_path):
    # tarfile itself lists the first members of such a file without complaint.
    path = write_tar(tmp_path / "a.tar", MEMBERS)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(path.read_bytes()[: 512 * 4])  # folder header, cat/0000 header + 2 data blocks
    with tarfile.open(cut) as archive:
        assert [m.name for m in archive.getmembers()] == ["train", "train/cat/0000.png"]

    with pytest.raises(cifar10.Cifar10FormatError, match="cut.tar.*(truncated|ends)"):
        read_all(cut)


def test_corrupt_header_in_the_middle_is_reported(tmp_path):
    raw = bytearray(write_tar(tmp_path / "a.tar", MEMBERS).read_bytes())
    second_header = 512 * 4  # after the folder header and cat/0000 (header + 2 data blocks)
    raw[second_header + 10] ^= 0x20
    (tmp_path / "bad.tar").write_bytes(bytes(raw))

    with pytest.raises(cifar10.Cifar10FormatError, match=f"header at byte {second_header} is corrupt"):
        read_all(tmp_path / "bad.tar")


@pytest.mark.parametrize("content", [b"", b"hello", b"\x1f\x8b\x08\x00garbage", b"PK\x03\x04garbage", bytes(700)])
def test_files_that_are_no_archive_are_a_format_error(tmp_path, content):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(content)

    with pytest.raises(cifar10.Cifar10FormatError, match="x.tar.gz"):
        read_all(path)
