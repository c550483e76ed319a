"""Fuzzing ingestion with malformed sources: every one must end in a Cifar10FormatError that
names the source, never in a library's own exception, and must leave nothing behind.

Each example takes a small valid source (3 classes, 2 train and 1 test image per class),
applies one defect that certainly breaks it, writes it as a folder, tar, tar.gz or zip, and
runs the ingestion node on it. Derandomized, so CI sees the same 2 x 200 cases every run.
"""

from __future__ import annotations

import functools
import io
import pickle
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from bnstudy.data import cifar10
from bnstudy.pipelines.data_ingestion.nodes import ingest_cifar10
from tests.data.test_ingestion import BASE  # conf/base's section (the YAML holds its values)

CLASSES = ("cat", "dog", "frog")
FORMS = ("dir", "tar", "tar.gz", "zip")
FUZZ = settings(max_examples=200, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def valid_arrays() -> cifar10.Cifar10Arrays:
    rng = np.random.default_rng(0)
    train_labels = np.repeat(np.arange(3, dtype=np.int32), 2)
    test_labels = np.arange(3, dtype=np.int32)
    images = rng.integers(0, 256, size=(9, 32, 32, 3), dtype=np.uint8)
    return cifar10.Cifar10Arrays(images[:6], train_labels, images[6:], test_labels, CLASSES)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@functools.cache
def image_members() -> dict[str, bytes]:
    arrays = valid_arrays()
    return {
        f"{split}/{CLASSES[label]}/{index:04d}.png": png(Image.fromarray(image))
        for split, images, labels in (("train", arrays.train_images, arrays.train_labels),
                                      ("test", arrays.test_images, arrays.test_labels))
        for index, (image, label) in enumerate(zip(images, labels, strict=True))
    }


@functools.cache
def python_payloads() -> dict[str, dict]:
    """The official members, unpickled (so defects can edit them)."""
    members = cifar10.python_archive_members(valid_arrays())
    return {name: pickle.loads(raw, encoding="bytes") for name, raw in members.items()}  # noqa: S301


def write_source(members: dict[str, bytes], form: str, folder: Path) -> Path:
    if form == "dir":
        for name, raw in members.items():
            (folder / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / "src" / name).write_bytes(raw)
        return folder / "src"
    path = folder / f"src.{form}"
    if form == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            for name, raw in members.items():
                archive.writestr(name, raw)
        return path
    with tarfile.open(path, "w:gz" if form == "tar.gz" else "w") as archive:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return path


def truncation_point(draw, members: dict[str, bytes], form: str, path: Path) -> int:
    """A cut that loses content: before a plain tar's end-of-archive marker (its record
    padding after that marker holds nothing), anywhere in a compressed tar or a zip."""
    if form == "tar":
        end = sum(512 + -(-len(raw) // 512) * 512 for raw in members.values()) + 1024
    else:
        end = path.stat().st_size
    return draw(st.integers(0, end - 1))


# --------------------------------------------------------------------------- image-folder defects


def pick(draw, members: dict, prefix: str = "") -> str:
    return draw(st.sampled_from(sorted(name for name in members if name.startswith(prefix))))


def image_defect(draw, members: dict[str, bytes]) -> str:
    defect = draw(st.sampled_from([
        "truncated image", "garbage image", "wrong size", "wrong mode", "unknown class",
        "missing class", "empty split", "no images", "too deep",
    ]))
    name = pick(draw, members)
    if defect == "truncated image":
        members[name] = members[name][: draw(st.integers(0, len(members[name]) * 4 // 5))]
    elif defect == "garbage image":
        members[name] = draw(st.binary(max_size=64))
    elif defect == "wrong size":
        size = draw(st.tuples(st.integers(1, 40), st.integers(1, 40)).filter(lambda s: s != (32, 32)))
        members[name] = png(Image.new("RGB", size))
    elif defect == "wrong mode":
        members[name] = png(Image.new(draw(st.sampled_from(["1", "LA", "I;16"])), (32, 32)))
    elif defect == "unknown class":
        split, _, file = name.split("/")
        members[f"{split}/{draw(st.sampled_from(['zebra', 'Cat', 'cats', 'x y']))}/{file}"] = members.pop(name)
    elif defect in ("missing class", "empty split"):
        split, class_name, _ = name.split("/")
        prefix = f"{split}/{class_name}/" if defect == "missing class" else f"{split}/"
        for other in [n for n in members if n.startswith(prefix)]:
            del members[other]
    elif defect == "no images":
        for other in list(members):
            members[other.replace(".png", ".txt")] = members.pop(other)
    else:
        for other in list(members):
            members[f"a/b/{other}"] = members.pop(other)
    return defect


# --------------------------------------------------------------------------- python-archive defects

BATCHES = [f"cifar-10-batches-py/{b}" for b in (*[f"data_batch_{i}" for i in range(1, 6)], "test_batch")]
META = "cifar-10-batches-py/batches.meta"


def bad_data(draw, rows: int):
    return draw(st.sampled_from([
        np.zeros((rows, 3071), np.uint8), np.zeros((rows, 3072), np.int64), np.zeros((rows, 3072), np.float32),
        np.zeros(3072, np.uint8), np.zeros((rows, 32, 32, 3), np.uint8), np.zeros((rows + 1, 3072), np.uint8),
        [[0] * 3072] * rows, b"data", None,
    ]))


def bad_labels(draw, rows: int):
    wrong = draw(st.one_of(st.integers(3, 300), st.integers(-300, -1)))
    return draw(st.sampled_from([
        [wrong] * rows, [1.5] * rows, [1.0] * rows, [True] * rows, ["a"] * rows, [[0]] * rows,
        [0] * (rows + 1), None, np.full(rows, 0.0), np.array([[0]] * rows), np.array(["x"] * rows),
    ]))


def python_defect(draw, payloads: dict[str, object]) -> str:
    defect = draw(st.sampled_from([
        "missing batch", "duplicate batch", "truncated pickle", "not a dict", "bad data", "bad labels",
        "missing key", "bad meta", "empty split", "missing class",
    ]))
    name = draw(st.sampled_from(BATCHES))
    batch = dict(payloads[name])
    rows = len(batch[b"labels"])
    if defect == "missing batch":
        del payloads[name]
    elif defect == "duplicate batch":
        payloads["copy/" + name.split("/")[-1]] = batch
    elif defect == "truncated pickle":
        raw = pickle.dumps(batch, protocol=2)
        payloads[name] = raw[: draw(st.integers(0, len(raw) - 1))]  # bytes: written as they are
    elif defect == "not a dict":
        payloads[draw(st.sampled_from([name, META]))] = draw(st.sampled_from([[1, 2], 3, "batch", None]))
    elif defect in ("bad data", "bad labels", "missing key"):
        if defect == "missing key":
            del batch[draw(st.sampled_from([b"data", b"labels"]))]
        else:
            batch[b"data" if defect == "bad data" else b"labels"] = (bad_data if defect == "bad data" else bad_labels)(draw, rows)
        payloads[name] = batch
    elif defect == "bad meta":
        payloads[META] = {b"label_names": draw(st.sampled_from(
            [[], [b"cat", b"dog"], [b"frog", b"dog", b"cat"], [b"cat", b"cat", b"dog"], [1, 2, 3], 7, None]
        ))}
    elif defect == "empty split":
        for train_batch in BATCHES[:5] if name != BATCHES[5] else [name]:
            payloads[train_batch] = {**payloads[train_batch], b"data": np.zeros((0, 3072), np.uint8), b"labels": []}
    else:  # every test image labelled 0: the split has no dog or frog
        payloads[BATCHES[5]] = {**payloads[BATCHES[5]], b"labels": [0, 0, 0]}
    return defect


def python_members(payloads: dict[str, object]) -> dict[str, bytes]:
    return {name: value if isinstance(value, bytes) else pickle.dumps(value, protocol=2)
            for name, value in payloads.items()}


# --------------------------------------------------------------------------- the property


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def assert_clear_format_error(source: str, members: dict[str, bytes], form: str, draw) -> None:
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        path = write_source(members, form, folder)
        if draw(st.booleans()) and form != "dir":
            cut = truncation_point(draw, members, form, path)
            path.write_bytes(path.read_bytes()[:cut])
            event(f"{form} cut at byte {cut}" if cut < 4 else f"{form} cut")
        before = snapshot(folder)
        params = {**BASE, "source": source, "path": str(path), "md5": None,
                  "classes": list(CLASSES)}

        with pytest.raises(cifar10.Cifar10FormatError) as error:
            ingest_cifar10(params, {"train_size": None, "test_size": None, "seed": 0})

        assert str(path) in str(error.value)
        assert snapshot(folder) == before  # nothing written, nothing left half-done


@FUZZ
@given(data=st.data())
def test_malformed_image_folders_end_in_a_clear_format_error(data):
    members = dict(image_members())
    defect = image_defect(data.draw, members)
    form = data.draw(st.sampled_from(FORMS))
    event(f"{defect} as {form}")

    assert_clear_format_error("image_folder", members, form, data.draw)


@FUZZ
@given(data=st.data())
def test_malformed_python_archives_end_in_a_clear_format_error(data):
    payloads = dict(python_payloads())
    defect = python_defect(data.draw, payloads)
    form = data.draw(st.sampled_from(FORMS))
    event(f"{defect} as {form}")

    assert_clear_format_error("python_archive", python_members(payloads), form, data.draw)
