"""Untrusted python archives: a batch whose pickle names any global beyond what the official
batches need is refused before it runs, and the official (Python 2) batches still load."""

from __future__ import annotations

import builtins
import io
import pathlib
import pickle
import pickletools
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bnstudy.data import cifar10
from bnstudy.pipelines.data_ingestion.nodes import ingest_cifar10
from tests.conftest import make_arrays
from tests.data.test_ingestion import BASE  # conf/base's section: the YAML holds its defaults

NO_SUBSET = {"train_size": None, "test_size": None, "seed": 0}


class CreatesFile:
    """Unpickling this calls ``function(*args)``, which creates a file if the loader runs it."""

    def __init__(self, function, *args) -> None:
        self.call = (function, args)

    def __reduce__(self):
        return self.call


# How a payload creates the file at ``path``: (function, its arguments).
EXEC = lambda path: (builtins.exec, f"open({str(path)!r}, 'w').close()")  # noqa: E731
OPEN = lambda path: (builtins.open, str(path), "w")  # noqa: E731
TOUCH = lambda path: (pathlib.Path.touch, path)  # noqa: E731


def write_tar_gz(members: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return path


def snapshot(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize(
    ("member", "payload", "protocol", "refused"),
    [
        ("data_batch_1", EXEC, 2, "__builtin__.exec"),  # protocol 2 spells builtins the Python 2 way
        ("batches.meta", OPEN, 4, "io.open"),
        ("test_batch", TOUCH, 4, "pathlib.Path.touch"),
    ],
    ids=["exec", "open", "touch"],
)
def test_a_batch_that_would_run_code_is_refused_naming_member_and_global(
    tmp_path, member, payload, protocol, refused
):
    members = cifar10.python_archive_members(make_arrays(1, 1))
    name = f"cifar-10-batches-py/{member}"
    batch = pickle.loads(members[name], encoding="bytes")  # noqa: S301 - our own archive
    control = tmp_path / "control"
    # The payload is live: an unrestricted loader creates its file.
    pickle.loads(pickle.dumps(CreatesFile(*payload(control)), protocol=protocol))  # noqa: S301
    assert control.exists()
    canary = tmp_path / "canary"
    batch[b"data" if member != "batches.meta" else b"num_vis"] = CreatesFile(*payload(canary))
    members[name] = pickle.dumps(batch, protocol=protocol)
    folder = tmp_path / "raw"
    folder.mkdir()
    archive = write_tar_gz(members, folder / "cifar-10-python.tar.gz")
    before = snapshot(tmp_path)
    params = {**BASE, "source": "python_archive", "path": str(archive), "md5": None}

    with pytest.raises(cifar10.Cifar10FormatError) as error:
        ingest_cifar10(params, NO_SUBSET)

    message = str(error.value)
    assert f"member {name} refers to {refused}," in message
    assert "not the official cifar-10-python.tar.gz" in message and "data_ingestion.md5" in message
    assert not canary.exists()
    assert snapshot(tmp_path) == before  # nothing written: no cache, no extracted member


def test_bytes_through_a_codec_other_than_latin1_is_refused(tmp_path):
    members = cifar10.python_archive_members(make_arrays(1, 1))
    name = "cifar-10-batches-py/data_batch_2"
    # What Python 3 writes for bytes at protocol 2 is _codecs.encode(text, "latin1"); the
    # same global with another codec (here zlib) is not a plain bytes literal.
    members[name] = members[name].replace(b"X\x06\x00\x00\x00latin1", b"X\x04\x00\x00\x00zlib", 1)
    archive = write_tar_gz(members, tmp_path / "a.tar.gz")

    with pytest.raises(cifar10.Cifar10FormatError, match=rf"member {name} refers to _codecs\.encode with encoding 'zlib'"):
        cifar10.read_python_archive(archive)


# --------------------------------------------------------------------------- the official format


def py2_str(raw: bytes) -> bytes:
    """A Python 2 ``str`` at protocol 2: SHORT_BINSTRING or BINSTRING."""
    return b"U" + bytes([len(raw)]) + raw if len(raw) < 256 else b"T" + struct.pack("<i", len(raw)) + raw


def py2_int(value: int) -> bytes:
    return b"K" + bytes([value]) if value < 256 else b"M" + struct.pack("<H", value) if value < 65536 else b"J" + struct.pack("<i", value)


def py2_value(value) -> bytes:
    """A value as Python 2's cPickle (protocol 2) and numpy 1 wrote the official batches."""
    if isinstance(value, bytes):
        return py2_str(value)
    if isinstance(value, int):
        return py2_int(value)
    if isinstance(value, list):
        return b"](" + b"".join(py2_value(v) for v in value) + b"e"
    assert value.dtype == np.uint8 and value.ndim == 2
    dtype = (b"cnumpy\ndtype\n" + py2_str(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b") + b"\x87R"
            + b"(K\x01" + py2_int(value.shape[0]) + py2_int(value.shape[1]) + b"\x86" + dtype
            + b"\x89" + py2_str(value.tobytes()) + b"tb")


def py2_pickle(payload: dict) -> bytes:
    return b"\x80\x02}(" + b"".join(py2_str(k) + py2_value(v) for k, v in payload.items()) + b"u."


def test_batches_in_the_official_python2_encoding_load(tmp_path):
    arrays = make_arrays(2, 1)
    official = {
        name: py2_pickle(pickle.loads(raw, encoding="bytes"))  # noqa: S301 - our own archive
        for name, raw in cifar10.python_archive_members(arrays).items()
    }
    batch_globals = {arg for op, arg, _ in pickletools.genops(official["cifar-10-batches-py/data_batch_1"])
                     if op.name == "GLOBAL"}
    meta_ops = {op.name for op, _, _ in pickletools.genops(official["cifar-10-batches-py/batches.meta"])}
    archive = write_tar_gz(official, tmp_path / "cifar-10-python.tar.gz")

    loaded = cifar10.read_python_archive(archive, class_names=cifar10.CLASS_NAMES)

    # numpy 1's name for the reconstructor (numpy 2 writes numpy._core), Python 2 strings
    assert batch_globals == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert "GLOBAL" not in meta_ops and "SHORT_BINSTRING" in meta_ops
    np.testing.assert_array_equal(loaded.train_images, arrays.train_images)
    np.testing.assert_array_equal(loaded.train_labels, arrays.train_labels)
    np.testing.assert_array_equal(loaded.test_images, arrays.test_images)
    np.testing.assert_array_equal(loaded.test_labels, arrays.test_labels)
    assert loaded.class_names == cifar10.CLASS_NAMES
