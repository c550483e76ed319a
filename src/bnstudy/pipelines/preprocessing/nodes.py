"""Thin Kedro adapters around :mod:`bnstudy.core.preprocessing`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from bnstudy.core import preprocessing

logger = logging.getLogger(__name__)


def load_raw_arrays(
    raw_cache: dict[str, Callable[[], dict[str, np.ndarray]]], provenance: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The train and test arrays of the latest ingestion, from the raw cache.

    Args:
        raw_cache: the partitions of ``cifar10_raw_cache`` (``<key>/train``, ``<key>/test``
            for every source ingested so far), loaded lazily.
        provenance: the ingestion's record; its ``raw_cache_key`` names the entry.
    """
    key = provenance.get("raw_cache_key")
    missing = [f"{key}/{split}" for split in ("train", "test") if f"{key}/{split}" not in raw_cache]
    if missing:
        raise ValueError(
            f"cifar10_raw_cache has no entries {missing}, which the latest cifar10_provenance "
            f"(source {provenance.get('location')!r}) points at; it holds {sorted(raw_cache)}. "
            "Run the data_ingestion pipeline again to rebuild them."
        )
    return raw_cache[f"{key}/train"](), raw_cache[f"{key}/test"]()


def compute_channel_stats(train: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-channel mean and std of the ingested training images, in [0, 1] pixel units.

    Computed on every image of ``cifar10_train_raw``, before ``train_size`` picks a subset:
    the whole training set, so that every run on the same data normalizes identically
    whatever its ``train_size`` (with ``data_ingestion.subset_only``, only the subset was
    ingested, and the statistics are those of the subset).
    """
    mean, std = preprocessing.channel_stats(train["images"])
    logger.info(
        "Training-set channel mean %s, std %s",
        np.round(mean, 4).tolist(),
        np.round(std, 4).tolist(),
    )
    return {
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "num_images": int(train["images"].shape[0]),
    }


def make_model_input_train(
    split: dict[str, np.ndarray], channel_stats: dict[str, Any], size: int | None, seed: int
) -> dict[str, np.ndarray]:
    """:func:`make_model_input` of the training split (``preprocessing.train_size``)."""
    return make_model_input(split, channel_stats, size, seed, parameter="preprocessing.train_size")


def make_model_input_test(
    split: dict[str, np.ndarray], channel_stats: dict[str, Any], size: int | None, seed: int
) -> dict[str, np.ndarray]:
    """:func:`make_model_input` of the test split (``preprocessing.test_size``)."""
    return make_model_input(split, channel_stats, size, seed, parameter="preprocessing.test_size")


def make_model_input(
    split: dict[str, np.ndarray],
    channel_stats: dict[str, Any],
    size: int | None,
    seed: int,
    parameter: str = "preprocessing.train_size",
) -> dict[str, np.ndarray]:
    """A stratified subset of one split (``size`` null: all of it), normalized to float32.

    The subset is drawn from the labels of the whole source split, so it is the same
    whether ingestion kept every image or (``data_ingestion.subset_only``) only these.

    Args:
        split: ``{"images", "labels"}``, plus ``rows`` and ``source_labels`` when it holds
            a subset of the source split.
        channel_stats: from :func:`compute_channel_stats`.
        size: number of images to keep, or None for all.
        seed: picks the subset.
        parameter: the name of ``size``'s parameter, for errors.

    Returns:
        ``{"images": [n, 32, 32, 3] float32, "labels": [n] int32, "indices": [n] int64}``;
        ``indices`` are the rows of the source split that were kept.
    """
    indices, held = _kept_rows(split, size, seed, parameter)
    images = preprocessing.normalize(
        split["images"][held], np.asarray(channel_stats["mean"]), np.asarray(channel_stats["std"])
    )
    labels = split["labels"][held].astype(np.int32)
    logger.info("Model input: %d images, per class %s", len(labels), np.bincount(labels).tolist())
    return {"images": images, "labels": labels, "indices": indices.astype(np.int64)}


def _kept_rows(
    split: dict[str, np.ndarray], size: int | None, seed: int, parameter: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows of the source split, positions of those rows in split["images"])``."""
    source_labels = split.get("source_labels", split["labels"])
    available = int(source_labels.shape[0])
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= available):
        raise ValueError(
            f"{parameter} is {size!r}, but the data has {available} images in this split; set "
            f"{parameter} to an integer from 1 to {available}, or null for all of them."
        )
    rows = preprocessing.stratified_subset(source_labels, size, seed)
    if "rows" not in split:
        return rows, rows
    held_rows = split["rows"]
    positions = np.minimum(np.searchsorted(held_rows, rows), held_rows.size - 1)
    if not np.array_equal(held_rows[positions], rows):
        raise ValueError(
            f"{parameter}={size} with preprocessing.seed={seed} needs images that the ingested "
            f"data does not hold: data_ingestion.subset_only kept only {held_rows.size} of the "
            f"{available} images of this split (those of an earlier train_size/test_size/seed). "
            "Run the data_ingestion pipeline again with these parameters, or set "
            "data_ingestion.subset_only to false."
        )
    return rows, positions
