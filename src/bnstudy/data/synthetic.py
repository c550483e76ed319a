"""The deep linear network's data (Santurkar et al. 2018, Appendix A.1): samples
x ~ N(0, I) of dimension d and targets y = A x for one matrix A with i.i.d. N(0, 1) entries,
all drawn from one seed.

The draws come from numpy's PCG64 generator seeded with the seed, in a fixed order (A, then
the training samples, then the test samples), so the same seed gives the same arrays on every
machine and the training set does not depend on the test set's size.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LinearRegressionData(NamedTuple):
    """Samples and targets of a linear map: x [N, d] float, y = x A^T [N, d]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    matrix: np.ndarray  # A [d, d]


def linear_regression(seed: int, num_train: int = 1000, num_test: int = 1000,
                      dimension: int = 10, dtype=np.float32) -> LinearRegressionData:
    """x ~ N(0, I_d) and y = A x with A_ij ~ N(0, 1) i.i.d., from ``seed``.

    The arrays are drawn in float64 and cast to ``dtype`` (the targets are computed before
    the cast, so float32 data is the rounded float64 data).

    Raises:
        ValueError: a size below 1 (a test set may be empty: ``num_test = 0``).
    """
    for name, value, least in (("num_train", num_train, 1), ("num_test", num_test, 0),
                               ("dimension", dimension, 1)):
        if int(value) != value or value < least:
            raise ValueError(f"linear_regression: {name} must be an integer >= {least}, "
                             f"got {value!r}")
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((dimension, dimension))
    x_train = rng.standard_normal((num_train, dimension))
    x_test = rng.standard_normal((num_test, dimension))
    return LinearRegressionData(*(np.asarray(a, dtype) for a in (
        x_train, x_train @ matrix.T, x_test, x_test @ matrix.T, matrix)))
