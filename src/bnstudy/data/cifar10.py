"""Reading CIFAR-10 from its official archive or from an image-folder tree.

Plain Python and NumPy (no Kedro, no JAX), so it can be used from a script or a notebook.
Three sources are supported:

* the official archive ``cifar-10-python.tar.gz`` downloaded from its home page
  (:func:`download_archive`) and verified against its published md5;
* a local copy of that archive (:func:`read_python_archive`);
* an image-folder tree ``train/<class>/*.{png,jpg}``, ``test/<class>/*``, as a directory or
  a ``.tar``/``.tar.gz``/``.tgz``/``.zip`` archive of one (:func:`read_image_folder`).
  Class folders are matched to labels by alphabetical order, which for CIFAR-10 is also the
  canonical label order 0..9.

Every reader returns a :class:`Cifar10Arrays`: images ``[N, 32, 32, 3] uint8`` (HWC, RGB)
and labels ``[N] int32`` for the train and test splits, plus the class names.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

logger = logging.getLogger(__name__)

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
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
_PYTHON_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_PYTHON_TEST_BATCH = "test_batch"
_OFFLINE_HINT = (
    "To work offline, point the pipeline at a local copy instead, either\n"
    "  - the official archive: source kind 'python_archive' with path=<.../cifar-10-python.tar.gz>, or\n"
    "  - an image-folder tree or archive (train/<class>/*.jpg, test/<class>/*.jpg): source kind "
    "'image_folder' with path=<dir or .tar.gz>,\n"
    "e.g. BNSTUDY_CIFAR10_SOURCE=image_folder BNSTUDY_CIFAR10_PATH=../shared/datasets/cifar10-jpeg.tar.gz "
    "kedro run ... (see README, 'Data sources')."
)


class Cifar10Error(ValueError):
    """The CIFAR-10 source is missing, corrupt or not in the expected form."""


class DownloadError(Cifar10Error):
    """The archive could not be downloaded."""


class ChecksumError(Cifar10Error):
    """A file's checksum is not the expected one."""


@dataclass(frozen=True)
class Cifar10Arrays:
    """CIFAR-10 as arrays.

    Attributes:
        train_images: ``[N_train, 32, 32, 3] uint8`` RGB images.
        train_labels: ``[N_train] int32`` labels in ``[0, len(class_names))``.
        test_images: ``[N_test, 32, 32, 3] uint8``.
        test_labels: ``[N_test] int32``.
        class_names: names of the classes, index = label.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of images per split and class: ``{"train": {"airplane": 5000, ...}, ...}``."""
        out = {}
        for split, labels in (("train", self.train_labels), ("test", self.test_labels)):
            per_class = np.bincount(labels, minlength=len(self.class_names))
            out[split] = {name: int(n) for name, n in zip(self.class_names, per_class, strict=True)}
        return out


def file_md5(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex md5 digest of a file, read in chunks."""
    return _file_digest(path, hashlib.md5(), chunk_bytes)


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    return _file_digest(path, hashlib.sha256(), chunk_bytes)


def _file_digest(path: str | Path, digest, chunk_bytes: int) -> str:
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_archive(
    url: str,
    destination: str | Path,
    md5: str,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``destination`` and verify its md5; reuse a valid existing copy.

    The bytes go to ``<destination>.part`` first and are renamed only once the checksum
    matches, so a failed or interrupted download never leaves a file that could be mistaken
    for a good one, and an existing valid archive is never touched.

    Args:
        url: where to download from (``http(s)://`` or ``file://``).
        destination: final path of the archive.
        md5: expected hex md5 of the archive.
        timeout_s: socket timeout for the connection and each read.
        progress: show a tqdm progress bar.

    Returns:
        ``destination``.

    Raises:
        DownloadError: the URL could not be reached or the transfer broke off.
        ChecksumError: the downloaded bytes do not have the expected md5.
    """
    destination = Path(destination)
    if destination.exists():
        actual = file_md5(destination)
        if actual == md5:
            logger.info("Reusing %s (md5 %s verified)", destination, md5)
            return destination
        raise ChecksumError(
            f"{destination} exists but its md5 is {actual}, expected {md5}. It was left in place; "
            f"delete it (or move it away) to download a fresh copy from {url}."
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    logger.info("Downloading %s to %s", url, destination)
    try:
        _stream_to_file(url, partial, timeout_s, progress)
        actual = file_md5(partial)
        if actual != md5:
            raise ChecksumError(
                f"Checksum mismatch for {url}: expected md5 {md5}, got {actual} "
                f"({partial.stat().st_size:,} bytes). The download is corrupt or truncated and "
                f"was deleted; run again to retry, or use a local copy.\n{_OFFLINE_HINT}"
            )
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("Downloaded and verified %s (md5 %s)", destination, md5)
    return destination


def _stream_to_file(url: str, target: Path, timeout_s: float, progress: bool) -> None:
    from tqdm.auto import tqdm  # imported here: only downloads need it

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            total = int(response.headers.get("Content-Length") or 0) or None
            with (
                open(target, "wb") as handle,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=PurePosixPath(url).name,
                    disable=not progress,
                ) as bar,
            ):
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    handle.write(chunk)
                    bar.update(len(chunk))
            if total is not None and target.stat().st_size != total:
                raise DownloadError(
                    f"Download of {url} broke off after {target.stat().st_size:,} of "
                    f"{total:,} bytes; the partial file was deleted. Run again to retry.\n"
                    f"{_OFFLINE_HINT}"
                )
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        if isinstance(error, Cifar10Error):
            raise
        raise DownloadError(
            f"Could not download CIFAR-10 from {url}: {error}.\n{_OFFLINE_HINT}"
        ) from error


# --------------------------------------------------------------------------- python archive


def read_python_archive(
    path: str | Path, class_names: tuple[str, ...] | None = None
) -> Cifar10Arrays:
    """Parse the official ``cifar-10-python.tar.gz`` (pickled batches) into arrays.

    Args:
        path: the archive.
        class_names: expected class names; if given, the archive's ``batches.meta`` must
            list exactly these, in this order.

    Raises:
        Cifar10Error: the file is missing, not a readable tar archive (e.g. truncated), or
            lacks a batch, or a batch has the wrong shape or out-of-range labels.
    """
    path = Path(path)
    if not path.is_file():
        raise Cifar10Error(f"CIFAR-10 archive not found: {path}. {_OFFLINE_HINT}")
    batches: dict[str, dict] = {}
    meta: dict | None = None
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = PurePosixPath(member.name).name
                if not member.isfile():
                    continue
                if name in _PYTHON_TRAIN_BATCHES or name == _PYTHON_TEST_BATCH:
                    batches[name] = _unpickle(archive.extractfile(member).read(), path, member.name)
                elif name == "batches.meta":
                    meta = _unpickle(archive.extractfile(member).read(), path, member.name)
    except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise Cifar10Error(
            f"{path} is not a readable CIFAR-10 python archive ({type(error).__name__}: {error}). "
            "It may be truncated or corrupt: delete it and download it again, or check the path."
        ) from error
    missing = [b for b in (*_PYTHON_TRAIN_BATCHES, _PYTHON_TEST_BATCH) if b not in batches]
    if missing:
        raise Cifar10Error(
            f"{path} lacks the batches {missing}; expected cifar-10-batches-py/data_batch_1..5 "
            "and test_batch (is this the python version of the archive?)."
        )
    names = _meta_class_names(meta, path)
    if class_names is not None and tuple(class_names) != names:
        raise Cifar10Error(
            f"{path} lists classes {list(names)}, expected {list(class_names)}; "
            "fix data_ingestion.classes or use the right archive."
        )
    train = [_python_batch_arrays(batches[b], path, b, len(names)) for b in _PYTHON_TRAIN_BATCHES]
    test_images, test_labels = _python_batch_arrays(
        batches[_PYTHON_TEST_BATCH], path, _PYTHON_TEST_BATCH, len(names)
    )
    return Cifar10Arrays(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=names,
    )


def _unpickle(raw: bytes, path: Path, member: str) -> dict:
    try:
        return pickle.loads(raw, encoding="bytes")  # noqa: S301 - the official format is pickle
    except Exception as error:  # noqa: BLE001 - any failure means a corrupt member
        raise Cifar10Error(f"{path}: member {member} is not a readable pickle: {error}") from error


def _decode_keys(mapping: dict) -> dict[str, object]:
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in mapping.items()}


def _meta_class_names(meta: dict | None, path: Path) -> tuple[str, ...]:
    if meta is None:
        logger.warning("%s has no batches.meta; assuming the canonical CIFAR-10 classes", path)
        return CLASS_NAMES
    names = _decode_keys(meta).get("label_names")
    if not names:
        raise Cifar10Error(f"{path}: batches.meta has no label_names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _python_batch_arrays(
    batch: dict, path: Path, name: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    batch = _decode_keys(batch)
    if "data" not in batch or "labels" not in batch:
        raise Cifar10Error(f"{path}: batch {name} lacks 'data' or 'labels'")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    pixels = int(np.prod(IMAGE_SHAPE))
    if data.ndim != 2 or data.shape[1] != pixels or data.dtype != np.uint8:
        raise Cifar10Error(
            f"{path}: batch {name} has data of shape {data.shape} and dtype {data.dtype}; "
            f"expected [N, {pixels}] uint8 (32x32 RGB images, channel-major)."
        )
    if labels.shape != (data.shape[0],):
        raise Cifar10Error(
            f"{path}: batch {name} has {labels.shape[0]} labels for {data.shape[0]} images"
        )
    _check_labels(labels, num_classes, f"{path}: batch {name}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise Cifar10Error(
            f"{where}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of range "
            f"[0, {num_classes}) ({bad.size} such labels)."
        )


# --------------------------------------------------------------------------- image folders


def read_image_folder(path: str | Path, class_names: tuple[str, ...] = CLASS_NAMES) -> Cifar10Arrays:
    """Read ``train/<class>/*`` and ``test/<class>/*`` images from a directory or archive.

    The tree may sit at the top of the directory/archive or one folder down (as when an
    archive holds ``cifar10/train/...``). Files are read in sorted order, so the result is
    deterministic. Labels are the index of the class folder in ``class_names``, which must be
    sorted alphabetically (the canonical CIFAR-10 order is).

    Args:
        path: a directory, or a ``.tar``, ``.tar.gz``, ``.tgz`` or ``.zip`` archive.
        class_names: the expected class folders, in label order.

    Raises:
        Cifar10Error: missing path, an unknown or missing class folder, an empty split, an
            image that is not 32x32 RGB or can't be decoded (the message names the file).
    """
    from PIL import Image  # imported here: only image folders need Pillow

    path = Path(path)
    if not path.exists():
        raise Cifar10Error(f"Image folder or archive not found: {path}. {_OFFLINE_HINT}")
    if list(class_names) != sorted(class_names):
        raise Cifar10Error(
            f"class_names must be in alphabetical order (label = alphabetical index), got {list(class_names)}"
        )
    files = sorted(_iter_image_files(path), key=lambda item: item[0])
    if not files:
        raise Cifar10Error(
            f"{path} holds no images under train/<class>/ or test/<class>/ "
            f"(suffixes {', '.join(IMAGE_SUFFIXES)})."
        )
    root = _common_root(path, [name for name, _ in files])
    label_of = {name: index for index, name in enumerate(class_names)}
    images: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    labels: dict[str, list[int]] = {split: [] for split in SPLITS}
    seen_classes: dict[str, set[str]] = {split: set() for split in SPLITS}
    for name, read_bytes in files:
        parts = PurePosixPath(name).parts[len(root) :]
        if len(parts) != 3 or parts[0] not in SPLITS:
            logger.debug("Skipping %s (not under train/<class>/ or test/<class>/)", name)
            continue
        split, class_name, _ = parts
        if class_name not in label_of:
            raise Cifar10Error(
                f"{path}: unknown class folder '{split}/{class_name}' (file {name}); expected one "
                f"of {list(class_names)}. Fix the tree or data_ingestion.classes."
            )
        try:
            with Image.open(io.BytesIO(read_bytes())) as image:
                image.load()
                size, mode = image.size, image.mode
                array = np.asarray(image.convert("RGB"))
        except Exception as error:  # noqa: BLE001 - any decoder failure names the file
            raise Cifar10Error(f"{path}: cannot decode image {name}: {error}") from error
        if size != IMAGE_SHAPE[:2] or mode not in ("RGB", "L", "P", "RGBA"):
            raise Cifar10Error(
                f"{path}: image {name} is {size[0]}x{size[1]} {mode}; expected 32x32 RGB."
            )
        images[split].append(array)
        labels[split].append(label_of[class_name])
        seen_classes[split].add(class_name)
    for split in SPLITS:
        if not images[split]:
            raise Cifar10Error(
                f"{path}: the '{split}' split is empty; expected images under {split}/<class>/."
            )
        missing = sorted(set(class_names) - seen_classes[split])
        if missing:
            raise Cifar10Error(f"{path}: the '{split}' split has no images for classes {missing}.")
    return Cifar10Arrays(
        train_images=np.stack(images["train"]),
        train_labels=np.asarray(labels["train"], dtype=np.int32),
        test_images=np.stack(images["test"]),
        test_labels=np.asarray(labels["test"], dtype=np.int32),
        class_names=tuple(class_names),
    )


def _common_root(path: Path, names: list[str]) -> tuple[str, ...]:
    """The folder prefix above ``train/`` and ``test/`` (empty, or one folder)."""
    for name in names:
        parts = PurePosixPath(name).parts
        for depth in (0, 1):
            if len(parts) == depth + 3 and parts[depth] in SPLITS:
                return parts[:depth]
    raise Cifar10Error(
        f"{path}: no train/<class>/<image> or test/<class>/<image> files found "
        f"(first file: {names[0]})."
    )


def _iter_image_files(path: Path) -> Iterator[tuple[str, object]]:
    """Yield ``(relative posix name, callable returning the bytes)`` for every image file."""
    is_image = lambda name: PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES  # noqa: E731
    if path.is_dir():
        for file in path.rglob("*"):
            if file.is_file() and is_image(file.name):
                yield file.relative_to(path).as_posix(), file.read_bytes
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and is_image(info.filename):
                    yield info.filename, (lambda raw=archive.read(info): raw)
    else:
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    if member.isfile() and is_image(member.name):
                        raw = archive.extractfile(member).read()
                        yield member.name.removeprefix("./"), (lambda raw=raw: raw)
        except (tarfile.TarError, EOFError, OSError) as error:
            raise Cifar10Error(
                f"{path} is neither a directory nor a readable .tar/.tar.gz/.zip archive "
                f"({type(error).__name__}: {error}); it may be truncated."
            ) from error


# --------------------------------------------------------------------------- writing (tests, tools)


def write_python_archive(arrays: Cifar10Arrays, path: str | Path, num_train_batches: int = 5) -> Path:
    """Write arrays in the official ``cifar-10-python.tar.gz`` layout (pickled batches).

    Used to build small archives in the canonical format for tests; the inverse of
    :func:`read_python_archive`.
    """
    path = Path(path)
    train_splits = np.array_split(np.arange(len(arrays.train_labels)), num_train_batches)
    members: dict[str, dict] = {}
    for index, rows in enumerate(train_splits, start=1):
        members[f"data_batch_{index}"] = _python_batch(
            arrays.train_images[rows], arrays.train_labels[rows], f"training batch {index} of 5"
        )
    members["test_batch"] = _python_batch(arrays.test_images, arrays.test_labels, "testing batch 1 of 1")
    meta = {
        b"label_names": [name.encode() for name in arrays.class_names],
        b"num_cases_per_batch": int(len(train_splits[0])),
        b"num_vis": int(np.prod(IMAGE_SHAPE)),
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in [*members.items(), ("batches.meta", meta)]:
            raw = pickle.dumps(payload, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return path


def _python_batch(images: np.ndarray, labels: np.ndarray, label: str) -> dict:
    return {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1)),
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(images))],
    }
