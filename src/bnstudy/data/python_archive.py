"""The official ``cifar-10-python.tar.gz`` layout: pickled batches of channel-major rows.

Read from the archive itself, from a zip of it, or from the extracted folder
(``cifar-10-batches-py/``). Every malformed input, whatever the library would have raised,
ends in a :class:`Cifar10FormatError` naming the file, the member and what was expected.

The batches are pickles, and unpickling runs whatever callables a file names; with
``md5: null`` or a mirror's md5 nothing vouches for the file, so they are read with
:class:`_BatchUnpickler`, which resolves only the few globals the official batches name.
"""

from __future__ import annotations

import io
import logging
import pickle
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from bnstudy.data.common import (
    CLASS_NAMES,
    IMAGE_SHAPE,
    OFFLINE_HINT,
    SPLITS,
    Cifar10Arrays,
    Cifar10Error,
    Cifar10FormatError,
)
from bnstudy.data.containers import open_container
from bnstudy.data.layout import check_split_labels, looks_like_image_folder, select_rows

logger = logging.getLogger(__name__)

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
_PIXELS = int(np.prod(IMAGE_SHAPE))


def read_python_archive(
    path: str | Path, class_names: tuple[str, ...] | None = None, select=None
) -> Cifar10Arrays:
    """Parse the official CIFAR-10 python archive (pickled batches) into arrays.

    Args:
        path: the ``.tar.gz`` (or ``.tar``/``.zip``, or the extracted directory).
        class_names: expected class names; if given, the archive's ``batches.meta`` must
            list exactly these, in this order.
        select: optional :data:`~bnstudy.data.common.RowSelector`: keep only these rows of
            each split (the arrays then record which, in ``subset``).

    Raises:
        Cifar10Error: the path does not exist.
        Cifar10FormatError: not a readable archive (e.g. truncated), an image-folder
            archive instead, a missing or unreadable batch, arrays of the wrong shape or
            type, labels that are not integers in range, an empty split.
    """
    path = Path(path)
    if not path.exists():
        raise Cifar10Error(f"CIFAR-10 archive not found: {path}. {OFFLINE_HINT}")
    with open_container(path) as container:
        names = container.names()
        located = _locate_members(path, names)
        raw = container.read_many(located.values())
    payload = {key: _unpickle(raw[name], path, name) for key, name in located.items()}
    found = _class_names(payload.get(META), path)
    if class_names is not None and tuple(class_names) != found:
        raise Cifar10FormatError(
            f"{path} lists classes {list(found)}, expected {list(class_names)}; "
            "fix data_ingestion.classes or use the right archive."
        )
    train = [_batch_arrays(payload[b], path, b, len(found)) for b in TRAIN_BATCHES]
    test_images, test_labels = _batch_arrays(payload[TEST_BATCH], path, TEST_BATCH, len(found))
    arrays = Cifar10Arrays(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=found,
    )
    for split in SPLITS:
        check_split_labels(arrays.labels(split), found, f"{path}: the '{split}' split")
    return arrays if select is None else select_rows(arrays, select)


def _locate_members(path: Path, names: list[str]) -> dict[str, str]:
    """``{batch or meta: member name}``; the batches may sit at any depth."""
    wanted = (*TRAIN_BATCHES, TEST_BATCH, META)
    located: dict[str, str] = {}
    for name in names:
        base = PurePosixPath(name).name
        if base in wanted:
            if base in located:
                raise Cifar10FormatError(
                    f"{path} holds two '{base}' members ({located[base]} and {name}); expected "
                    "one cifar-10-batches-py folder."
                )
            located[base] = name
    missing = [b for b in (*TRAIN_BATCHES, TEST_BATCH) if b not in located]
    if missing and looks_like_image_folder(names):
        raise Cifar10FormatError(_wrong_format(path))
    if missing:
        raise Cifar10FormatError(
            f"{path} lacks the batches {missing}; expected cifar-10-batches-py/data_batch_1..5 "
            "and test_batch (is this the python version of the archive?)."
        )
    return located


def _wrong_format(path: Path) -> str:
    return (
        f"{path} is in the wrong format for data_ingestion.source=python_archive: it is an "
        "image-folder archive (train/<class>/*, test/<class>/*), not the pickled batches of "
        "cifar-10-python.tar.gz. Use source=image_folder (BNSTUDY_CIFAR10_SOURCE=image_folder) "
        "for it."
    )


def reject_image_folder(path: str | Path) -> None:
    """Raise the wrong-format error if ``path`` holds an image-folder tree and no batches.

    For explaining a checksum mismatch: a readable archive of the other kind is a wrong
    choice of source, not a corrupt download. An unreadable path raises nothing here.
    """
    path = Path(path)
    try:
        with open_container(path) as container:
            names = container.names()
    except Cifar10FormatError:
        return
    has_batches = any(PurePosixPath(name).name in TRAIN_BATCHES for name in names)
    if looks_like_image_folder(names) and not has_batches:
        raise Cifar10FormatError(_wrong_format(path))


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a global outside :data:`_ADMITTED_GLOBALS`; nothing of it was run."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualified_name = f"{module}.{name}"


class _Latin1Bytes:
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocol 2 (always latin1).

    An instance without attributes, so a pickle's BUILD opcode cannot change it (it could
    set a plain function's ``__defaults__``, for every later load).
    """

    __slots__ = ()

    def __call__(self, text: str, encoding: str) -> bytes:
        if encoding != "latin1":
            raise _RefusedGlobal("_codecs", f"encode with encoding {encoding!r}")
        return text.encode("latin1")


_LATIN1_BYTES = _Latin1Bytes()


# The globals a batch may name, as the pickle spells them (before Python 2 names are mapped).
# The official batches (Python 2, protocol 2) name numpy 1's array reconstruction;
# numpy >= 2 writes the same function under numpy._core; Python 3 at protocol 2, as
# write_python_archive pickles, writes bytes as _codecs.encode(text, "latin1") and empty
# bytes as bytes(). Dicts, lists, str, int, float, bool and None are opcodes, never globals.
_ADMITTED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("__builtin__", "bytes"),
    ("builtins", "bytes"),
})


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles the official batches and refuses any other global before resolving it."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ADMITTED_GLOBALS:
            raise _RefusedGlobal(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _LATIN1_BYTES
        return super().find_class(module, name)


def _unpickle(raw: bytes, path: Path, member: str) -> dict:
    try:
        payload = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _RefusedGlobal as refused:
        raise Cifar10FormatError(
            f"{path}: member {member} refers to {refused.qualified_name}, which the official "
            "CIFAR-10 batches never do (they hold only dicts, lists, bytes, ints and numpy uint8 "
            "arrays); refused before anything it names is called, since unpickling it could "
            "run code chosen by whoever made the file. This is not the official "
            "cifar-10-python.tar.gz: use the official archive (data_ingestion.source=download), "
            "or check a local copy with data_ingestion.md5 set to the official md5 (the default "
            "in conf/base/parameters_data_ingestion.yml)."
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure means a corrupt member
        raise Cifar10FormatError(
            f"{path}: member {member} is not a readable pickle ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(payload, dict):
        raise Cifar10FormatError(
            f"{path}: member {member} holds a {type(payload).__name__}; expected a dict "
            "(b'data', b'labels', ... for a batch; b'label_names' for batches.meta)."
        )
    return {k.decode(errors="replace") if isinstance(k, bytes) else k: v for k, v in payload.items()}


def _class_names(meta: dict | None, path: Path) -> tuple[str, ...]:
    if meta is None:
        logger.warning("%s has no batches.meta; assuming the canonical CIFAR-10 classes", path)
        return CLASS_NAMES
    names = meta.get("label_names")
    if not isinstance(names, list | tuple) or not names or not all(
        isinstance(n, bytes | str) and n for n in names
    ):
        raise Cifar10FormatError(
            f"{path}: batches.meta's label_names is {names!r:.80}; expected a non-empty list of "
            "class names."
        )
    decoded = tuple(n.decode(errors="replace") if isinstance(n, bytes) else n for n in names)
    if len(set(decoded)) != len(decoded):
        raise Cifar10FormatError(f"{path}: batches.meta lists a class twice: {list(decoded)}")
    return decoded


def _batch_arrays(batch: dict, path: Path, name: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    where = f"{path}: batch {name}"
    if "data" not in batch or "labels" not in batch:
        raise Cifar10FormatError(f"{where} lacks 'data' or 'labels' (keys: {sorted(map(str, batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != _PIXELS or data.dtype != np.uint8:
        described = f"{data.shape} {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
        raise Cifar10FormatError(
            f"{where} has data {described}; expected an [N, {_PIXELS}] uint8 array "
            "(32x32 RGB images, channel-major)."
        )
    labels = _integer_labels(batch["labels"], where)
    if labels.shape != (data.shape[0],):
        raise Cifar10FormatError(f"{where} has {labels.size} labels for {data.shape[0]} images")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise Cifar10FormatError(
            f"{where}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of range "
            f"[0, {num_classes}) ({bad.size} such labels)."
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _integer_labels(raw: object, where: str) -> np.ndarray:
    """Labels as int64; anything but a flat list/array of integers is an error (a float
    label would otherwise be truncated silently)."""
    if isinstance(raw, np.ndarray):
        labels = raw
    elif isinstance(raw, list | tuple) and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in raw
    ):
        labels = np.asarray(raw, dtype=np.int64).reshape(len(raw))
    else:
        labels = None
    if labels is None or labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise Cifar10FormatError(f"{where} has labels {raw!r:.80}; expected a flat list of integers.")
    return labels.astype(np.int64)


# --------------------------------------------------------------------------- writing (tests, tools)


def write_python_archive(arrays: Cifar10Arrays, path: str | Path, num_train_batches: int = 5) -> Path:
    """Write arrays in the official ``cifar-10-python.tar.gz`` layout (pickled batches).

    Used to build small archives in the canonical format for tests; the inverse of
    :func:`read_python_archive`.
    """
    path = Path(path)
    with tarfile.open(path, "w:gz") as archive:
        for name, raw in python_archive_members(arrays, num_train_batches).items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return path


def python_archive_members(arrays: Cifar10Arrays, num_train_batches: int = 5) -> dict[str, bytes]:
    """``{member name: pickled bytes}`` of the official layout, batches.meta last."""
    train_splits = np.array_split(np.arange(len(arrays.train_labels)), num_train_batches)
    members: dict[str, dict] = {}
    for index, rows in enumerate(train_splits, start=1):
        members[f"data_batch_{index}"] = _python_batch(
            arrays.train_images[rows], arrays.train_labels[rows], f"training batch {index} of 5"
        )
    members[TEST_BATCH] = _python_batch(arrays.test_images, arrays.test_labels, "testing batch 1 of 1")
    members[META] = {
        b"label_names": [name.encode() for name in arrays.class_names],
        b"num_cases_per_batch": int(len(train_splits[0])),
        b"num_vis": _PIXELS,
    }
    return {f"cifar-10-batches-py/{name}": pickle.dumps(payload, protocol=2) for name, payload in members.items()}


def _python_batch(images: np.ndarray, labels: np.ndarray, label: str) -> dict:
    return {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1)),
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(images))],
    }
