"""Core tests run on the CPU with tiny networks (a few convs of width 4-8, 8x8 images)."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def tiny_data(dtype=np.float32, num_train: int = 40, num_test: int = 21, side: int = 8, seed: int = 0):
    """Random normalized images and labels: 40 train (5 batches of 8), 21 test (a partial
    eval batch of 5 after one of 16)."""
    rng = np.random.default_rng(seed)
    x_train = rng.normal(size=(num_train, side, side, 3)).astype(dtype)
    y_train = rng.integers(0, 10, num_train).astype(np.int32)
    x_test = rng.normal(size=(num_test, side, side, 3)).astype(dtype)
    y_test = rng.integers(0, 10, num_test).astype(np.int32)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def tiny_arrays():
    return tiny_data()
