"""What every CIFAR-10 reader shares: constants, error types, the arrays, checksums.

Plain Python and NumPy (no Kedro, no JAX).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = (32, 32, 3)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
MD5_PARAMETER = "data_ingestion.md5"
OFFLINE_HINT = (
    "To work offline, point the pipeline at a local copy instead, either\n"
    "  - the official archive: source kind 'python_archive' with path=<.../cifar-10-python.tar.gz>, or\n"
    "  - an image-folder tree or archive (train/<class>/*.jpg, test/<class>/*.jpg): source kind "
    "'image_folder' with path=<dir or .tar.gz>,\n"
    "e.g. BNSTUDY_CIFAR10_SOURCE=image_folder BNSTUDY_CIFAR10_PATH=../shared/datasets/cifar10-jpeg.tar.gz "
    "kedro run ... (see README, 'Data sources')."
)

# (split, labels of every image of that split in the source's order) -> the rows to keep,
# ascending. Lets a reader skip decoding what a subset would drop.
RowSelector = Callable[[str, np.ndarray], np.ndarray]


class Cifar10Error(ValueError):
    """The CIFAR-10 source is missing, corrupt or not in the expected form."""


class Cifar10FormatError(Cifar10Error):
    """The source exists but its content is not CIFAR-10 in the expected layout.

    Truncated or corrupt archives, missing or unexpected members, arrays of the wrong shape
    or type, labels out of range, undecodable images, empty splits, a source of the other
    kind. The message names the file (and member) and says what was expected.
    """


class Cifar10ParameterError(Cifar10Error):
    """A ``data_ingestion`` parameter has a value the data layer cannot use."""


class DownloadError(Cifar10Error):
    """The archive could not be downloaded."""


class ChecksumError(Cifar10Error):
    """A file's checksum is not the expected one."""


@dataclass(frozen=True)
class SourceRows:
    """Which images of a source split an array holds, when it holds a subset.

    Attributes:
        rows: ``[n] int64`` ascending rows of the source split (in the reader's order).
        source_labels: ``[N] int32`` labels of every image of the source split.
    """

    rows: np.ndarray
    source_labels: np.ndarray


@dataclass(frozen=True)
class Cifar10Arrays:
    """CIFAR-10 as arrays.

    Attributes:
        train_images: ``[N_train, 32, 32, 3] uint8`` RGB images.
        train_labels: ``[N_train] int32`` labels in ``[0, len(class_names))``.
        test_images: ``[N_test, 32, 32, 3] uint8``.
        test_labels: ``[N_test] int32``.
        class_names: names of the classes, index = label.
        subset: per split (``"train"``/``"test"``) that holds a selection of the source's
            images, which rows; a split not in it holds all of them, in order.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    subset: dict[str, SourceRows] | None = None

    def labels(self, split: str) -> np.ndarray:
        return self.train_labels if split == "train" else self.test_labels

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of images per split and class: ``{"train": {"airplane": 5000, ...}, ...}``."""
        return {split: self._per_class(self.labels(split)) for split in SPLITS}

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Like :meth:`counts`, but of the whole source when the arrays hold a subset."""
        subset = self.subset or {}
        return {
            split: self._per_class(subset[split].source_labels if split in subset else self.labels(split))
            for split in SPLITS
        }

    def _per_class(self, labels: np.ndarray) -> dict[str, int]:
        per_class = np.bincount(labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, per_class, strict=True)}


def checked_rows(select: RowSelector, split: str, labels: np.ndarray) -> np.ndarray | None:
    """``select(split, labels)`` as ascending unique int64 rows, or None when it keeps all."""
    rows = np.asarray(select(split, labels))
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise Cifar10ParameterError(f"row selection for '{split}' returned {rows!r}; expected [n] ints")
    rows = rows.astype(np.int64)
    if rows.size and (rows[0] < 0 or rows[-1] >= labels.size or np.any(np.diff(rows) <= 0)):
        raise Cifar10ParameterError(
            f"row selection for '{split}' must be ascending unique rows in [0, {labels.size})"
        )
    return None if rows.size == labels.size else rows


def file_md5(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex md5 digest of a file, read in chunks."""
    return _file_digest(path, hashlib.md5(), chunk_bytes)


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    return _file_digest(path, hashlib.sha256(), chunk_bytes)


def tree_sha256(path: str | Path) -> str:
    """sha256 over a directory's files: each relative posix name and its content's sha256.

    Independent of file-system order and timestamps, so two copies of the same tree agree.
    """
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(root).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _file_digest(path: str | Path, digest, chunk_bytes: int) -> str:
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


_MD5_PATTERN = re.compile(r"[0-9a-fA-F]{32}")


def checked_md5(value: object, parameter: str = MD5_PARAMETER, required: bool = False) -> str | None:
    """An md5 parameter as 32 lowercase hex digits; None only where no check is wanted.

    YAML reads an unquoted ``0`` or ``1e5`` as a number, and a falsy md5 must never turn the
    check off silently, so anything but ``None`` or a 32-hex-digit string is an error.

    Args:
        value: the parameter's value.
        parameter: its name, for the message.
        required: ``None`` is an error too (a download is always verified).

    Raises:
        Cifar10ParameterError: naming the parameter, the value and the fix.
    """
    fix = 'quote it in conf/<env>/parameters_data_ingestion.yml (md5: "c58f...") or set BNSTUDY_CIFAR10_MD5'
    if value is None:
        if required:
            raise Cifar10ParameterError(
                f"{parameter} is null, but a download is always verified: give the archive's md5 "
                f"as a string of 32 hex digits ({fix})."
            )
        return None
    if not isinstance(value, str):
        raise Cifar10ParameterError(
            f"{parameter} must be a string of 32 hex digits, got {value!r} "
            f"({type(value).__name__}): YAML reads an unquoted 0, 1e5 or 0123... as a number. "
            f"Fix: {fix}."
        )
    if not _MD5_PATTERN.fullmatch(value):
        raise Cifar10ParameterError(
            f"{parameter} must be 32 hex digits, got {value!r} ({len(value)} characters). "
            f"Fix: {fix}; null means 'no check' (local python_archive only)."
        )
    return value.lower()
