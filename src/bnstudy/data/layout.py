"""Checks and selections shared by the readers, on labels and member names only."""

from __future__ import annotations

import numpy as np

from bnstudy.data.common import (
    IMAGE_SUFFIXES,
    SPLITS,
    Cifar10Arrays,
    Cifar10FormatError,
    RowSelector,
    SourceRows,
    checked_rows,
)


def is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]  # str methods: pathlib is slow for 60,000 names
    dot = base.rfind(".")
    return 0 < dot < len(base) - 1 and base[dot:].lower() in IMAGE_SUFFIXES


def image_folder_root(names: list[str]) -> tuple[str, ...] | None:
    """The folder above ``train/`` and ``test/`` (none, or one folder), or None if no
    image sits at ``[<root>/]<split>/<class>/<file>``."""
    for name in names:
        parts = tuple(name.split("/"))
        for depth in (0, 1):
            if len(parts) == depth + 3 and parts[depth] in SPLITS and is_image_name(name):
                return parts[:depth]
    return None


def looks_like_image_folder(names: list[str]) -> bool:
    """Whether member names look like an image-folder tree (``train/<class>/*.jpg``)."""
    return image_folder_root(names) is not None


def check_split_labels(labels: np.ndarray, class_names: tuple[str, ...], where: str) -> None:
    """A split must hold at least one image of every class.

    Raises:
        Cifar10FormatError: naming ``where`` and the classes without images.
    """
    if labels.size == 0:
        raise Cifar10FormatError(f"{where} is empty; expected images of the classes {list(class_names)}.")
    present = np.bincount(labels, minlength=len(class_names)) > 0
    missing = [name for name, seen in zip(class_names, present, strict=True) if not seen]
    if missing:
        raise Cifar10FormatError(f"{where} has no images for classes {missing}.")


def select_rows(arrays: Cifar10Arrays, select: RowSelector) -> Cifar10Arrays:
    """Keep the rows ``select`` picks from each split (after reading everything).

    The image-folder reader applies the same selection before decoding; this is its
    equivalent for sources that must be read whole.
    """
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    subset: dict[str, SourceRows] = {}
    for split in SPLITS:
        images = arrays.train_images if split == "train" else arrays.test_images
        labels = arrays.labels(split)
        rows = checked_rows(select, split, labels)
        if rows is None:
            kept[split] = images, labels
        else:
            kept[split] = images[rows], labels[rows]
            subset[split] = SourceRows(rows=rows, source_labels=labels)
    return Cifar10Arrays(
        train_images=kept["train"][0],
        train_labels=kept["train"][1],
        test_images=kept["test"][0],
        test_labels=kept["test"][1],
        class_names=arrays.class_names,
        subset=subset or None,
    )
