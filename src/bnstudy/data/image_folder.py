"""Image-folder trees ``train/<class>/*``, ``test/<class>/*``: directory, tar or zip.

The layout (which files, which labels) is read from the member list alone, so a reader that
keeps a subset decodes only the images it keeps.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnstudy.data.common import (
    CLASS_NAMES,
    IMAGE_SHAPE,
    IMAGE_SUFFIXES,
    OFFLINE_HINT,
    SPLITS,
    Cifar10Arrays,
    Cifar10Error,
    Cifar10FormatError,
    RowSelector,
    SourceRows,
    checked_rows,
)
from bnstudy.data.containers import open_container
from bnstudy.data.layout import check_split_labels, image_folder_root, is_image_name

logger = logging.getLogger(__name__)

_DECODABLE_MODES = ("RGB", "L", "P", "RGBA")


@dataclass(frozen=True)
class SplitFiles:
    """One split of an image-folder tree: member names in sorted order and their labels."""

    names: list[str]
    labels: np.ndarray


def read_image_folder(
    path: str | Path, class_names: tuple[str, ...] = CLASS_NAMES, select: RowSelector | None = None
) -> Cifar10Arrays:
    """Read ``train/<class>/*`` and ``test/<class>/*`` images from a directory or archive.

    The tree may sit at the top of the directory/archive or one folder down (as when an
    archive holds ``cifar10/train/...``). Files are read in sorted order, so the result is
    deterministic. Labels are the index of the class folder in ``class_names``, which must be
    sorted alphabetically (the canonical CIFAR-10 order is).

    Args:
        path: a directory, or a ``.tar``, ``.tar.gz``, ``.tgz`` or ``.zip`` archive.
        class_names: the expected class folders, in label order.
        select: optional :data:`~bnstudy.data.common.RowSelector`, called with each split's
            labels (from the file names, before decoding); only the rows it returns are
            decoded, and the arrays record them in ``subset``.

    Raises:
        Cifar10Error: missing path, class names out of order.
        Cifar10FormatError: not a readable archive (e.g. truncated), an unknown or missing
            class folder, an empty split, an image that is not 32x32 RGB or can't be
            decoded (the message names the file).
    """
    path = Path(path)
    if not path.exists():
        raise Cifar10Error(f"Image folder or archive not found: {path}. {OFFLINE_HINT}")
    if list(class_names) != sorted(class_names):
        raise Cifar10Error(
            f"class_names must be in alphabetical order (label = alphabetical index), got {list(class_names)}"
        )
    with open_container(path) as container:
        splits = image_folder_layout(path, container.names(), tuple(class_names))
        rows = {
            split: None if select is None else checked_rows(select, split, files.labels)
            for split, files in splits.items()
        }
        kept = {split: _kept_names(files, rows[split]) for split, files in splits.items()}
        raw = container.read_many(name for names in kept.values() for name in names)
    images = {split: _decode_all(path, kept[split], raw) for split in SPLITS}
    labels = {
        split: files.labels if rows[split] is None else files.labels[rows[split]]
        for split, files in splits.items()
    }
    subset = {
        split: SourceRows(rows=rows[split], source_labels=files.labels)
        for split, files in splits.items()
        if rows[split] is not None
    }
    return Cifar10Arrays(
        train_images=images["train"],
        train_labels=labels["train"],
        test_images=images["test"],
        test_labels=labels["test"],
        class_names=tuple(class_names),
        subset=subset or None,
    )


def image_folder_layout(path: Path, names: list[str], class_names: tuple[str, ...]) -> dict[str, SplitFiles]:
    """The files and labels of each split, from member names alone.

    Raises:
        Cifar10FormatError: no image tree, an unknown class folder, an empty split or a
            class without images.
    """
    images = [name for name in names if is_image_name(name)]
    root = image_folder_root(images)
    if root is None:
        first = f" (first file: {names[0]})" if names else ""
        hint = (
            " It holds the pickled batches of the python archive: use source=python_archive "
            "(BNSTUDY_CIFAR10_SOURCE=python_archive) for it."
            if any(name.rsplit("/", 1)[-1] == "data_batch_1" for name in names) else ""
        )
        raise Cifar10FormatError(
            f"{path} holds no images under train/<class>/ or test/<class>/ "
            f"(suffixes {', '.join(IMAGE_SUFFIXES)}){first}.{hint}"
        )
    label_of = {name: index for index, name in enumerate(class_names)}
    per_split: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
    for name in sorted(images):
        all_parts = tuple(name.split("/"))
        parts = all_parts[len(root) :]
        if len(parts) != 3 or parts[0] not in SPLITS or all_parts[: len(root)] != root:
            logger.debug("Skipping %s (not under train/<class>/ or test/<class>/)", name)
            continue
        split, class_name, _ = parts
        if class_name not in label_of:
            raise Cifar10FormatError(
                f"{path}: unknown class folder '{split}/{class_name}' (file {name}); expected one "
                f"of {list(class_names)}. Fix the tree or data_ingestion.classes."
            )
        per_split[split].append((name, label_of[class_name]))
    layout = {}
    for split, files in per_split.items():
        if not files:
            raise Cifar10FormatError(
                f"{path}: the '{split}' split is empty; expected images under {split}/<class>/."
            )
        labels = np.asarray([label for _, label in files], dtype=np.int32)
        check_split_labels(labels, class_names, f"{path}: the '{split}' split")
        layout[split] = SplitFiles(names=[name for name, _ in files], labels=labels)
    return layout


def _kept_names(files: SplitFiles, rows: np.ndarray | None) -> list[str]:
    return files.names if rows is None else [files.names[row] for row in rows]


def _decode_all(path: Path, names: list[str], raw: dict[str, bytes]) -> np.ndarray:
    if not names:
        return np.zeros((0, *IMAGE_SHAPE), np.uint8)
    return np.stack([decode_image(path, name, raw[name]) for name in names])


def decode_image(path: Path, name: str, raw: bytes) -> np.ndarray:
    """One image file as ``[32, 32, 3] uint8`` RGB.

    Raises:
        Cifar10FormatError: it can't be decoded, or is not a 32x32 RGB/gray/palette image.
    """
    from PIL import Image  # imported here: only image folders need Pillow

    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            size, mode = image.size, image.mode
            array = np.asarray(image.convert("RGB")) if mode in _DECODABLE_MODES else None
    except Exception as error:  # noqa: BLE001 - any decoder failure names the file
        raise Cifar10FormatError(
            f"{path}: cannot decode image {name} ({type(error).__name__}: {error}); replace or "
            "delete the file."
        ) from error
    if size != IMAGE_SHAPE[:2] or array is None:
        raise Cifar10FormatError(
            f"{path}: image {name} is {size[0]}x{size[1]} {mode}; expected 32x32 RGB."
        )
    return array
