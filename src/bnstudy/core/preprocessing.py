"""Dataset preprocessing as pure NumPy functions: channel statistics, normalization, subsets.

No augmentation: the study trains on the images as they are, only standardized per channel.
"""

from __future__ import annotations

import numpy as np


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of images scaled to [0, 1].

    Sums are accumulated in float64 over chunks, so the result is exact to float64 rounding
    without materializing a float64 copy of the whole set.

    Args:
        images: ``[N, H, W, C] uint8``.
        chunk: images per accumulation chunk.

    Returns:
        ``(mean [C], std [C])`` as float64, in units of the [0, 1] pixel scale.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty [N, H, W, C] image array, got shape {images.shape}")
    channels = images.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].reshape(-1, channels).astype(np.float64) / 255.0
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    variance = np.maximum(total_sq / count - np.square(mean), 0.0)
    return mean, np.sqrt(variance)


def normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(images / 255 - mean) / std`` per channel, as float32.

    Args:
        images: ``[N, H, W, C] uint8``.
        mean, std: ``[C]`` in [0, 1] pixel units (from :func:`channel_stats`).

    Returns:
        ``[N, H, W, C] float32``.
    """
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (images.shape[-1],) or std.shape != mean.shape:
        raise ValueError(
            f"mean/std must have one value per channel ({images.shape[-1]}), got {mean.shape}, {std.shape}"
        )
    if np.any(std <= 0):
        raise ValueError(f"std must be positive per channel, got {std.tolist()}")
    scale = np.float32(1.0 / 255.0)
    return (images.astype(np.float32) * scale - mean) / std


def stratified_subset(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Indices of a class-stratified random subset of ``size`` examples, in ascending order.

    Each class gets ``size * class_fraction`` examples, rounded by largest remainder (ties
    to the lower label), so the subset's class proportions match the full set's as closely
    as integers allow. Deterministic given ``seed``.

    Args:
        labels: ``[N] int`` class labels.
        size: subset size, or ``None`` for all examples (returns ``arange(N)``).
        seed: seed of the NumPy generator that picks the examples.

    Raises:
        ValueError: ``size`` is not in ``[1, N]``.
    """
    labels = np.asarray(labels)
    if size is None:
        return np.arange(labels.shape[0])
    if not 1 <= size <= labels.shape[0]:
        raise ValueError(
            f"subset size must be between 1 and the number of examples ({labels.shape[0]}), "
            f"got {size}; set it to null to use all examples."
        )
    classes, class_counts = np.unique(labels, return_counts=True)
    exact = size * class_counts / labels.shape[0]
    quota = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - quota), kind="stable")
    quota[remainder_order[: size - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == cls), size=int(n), replace=False)
        for cls, n in zip(classes, quota, strict=True)
        if n > 0
    ]
    return np.sort(np.concatenate(chosen))
