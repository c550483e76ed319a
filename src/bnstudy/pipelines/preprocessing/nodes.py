"""Thin Kedro adapters around :mod:`bnstudy.core.preprocessing`."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bnstudy.core import preprocessing

logger = logging.getLogger(__name__)


def compute_channel_stats(train: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-channel mean and std of the whole training set, in [0, 1] pixel units.

    Computed on all training images (before any subset), so every run on the same data
    normalizes identically whatever its ``train_size``.
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


def make_model_input(
    split: dict[str, np.ndarray], channel_stats: dict[str, Any], size: int | None, seed: int
) -> dict[str, np.ndarray]:
    """A stratified subset of one split (``size`` null: all of it), normalized to float32.

    Returns:
        ``{"images": [n, 32, 32, 3] float32, "labels": [n] int32, "indices": [n] int64}``;
        ``indices`` are the rows of the source split that were kept.
    """
    indices = preprocessing.stratified_subset(split["labels"], size, seed)
    images = preprocessing.normalize(
        split["images"][indices], np.asarray(channel_stats["mean"]), np.asarray(channel_stats["std"])
    )
    labels = split["labels"][indices].astype(np.int32)
    logger.info("Model input: %d images, per class %s", len(labels), np.bincount(labels).tolist())
    return {"images": images, "labels": labels, "indices": indices.astype(np.int64)}
