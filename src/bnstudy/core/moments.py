"""The moment set: a few points with the mean and covariance of a full batch, on which a deep
linear network's full-batch training and every measurement of it are the same functions of the
parameters as on the whole batch.

Why it is exact. The deep linear network (``ModelConfig.family == "dln"``) maps a sample by
linear layers and, optionally, a normalization over the batch. For the kinds in
:data:`MOMENT_NORMALIZATIONS` that normalization is an affine map per feature whose centre and
scale are the batch's mean and second central moment (BatchNorm: (z - mean) / sqrt(var + eps),
then gamma, beta; the mean-centred l2 normalization: the same without eps), and the running
statistics are averages of them. So, on a batch x_1..x_n, the network is an affine map
f(x) = M x + b whose M and b depend on the batch only through its mean and covariance. The
objective, the mean over samples of ||f(x_i) - y_i||^2, is the mean of a quadratic function of
z_i = (x_i, y_i), hence a function of the mean and covariance of the z_i alone. Any set of points
with the same mean and covariance (both with 1/n, as BatchNorm's batch statistics) therefore
gives the same loss at every parameter value: the same gradient, the same Hessian, the same ICS
(Santurkar's G and G'), probes and curvature, in exact arithmetic. Floating point differs by
rounding only (tests/core/test_moments.py: float64, to 1e-10 relative).

:func:`moment_set` builds 2r such points from the r principal directions of the centred z:
mu +- sqrt(r) s_j / sqrt(n) v_j (a thin SVD, z - mu = U S V^T): their mean is mu, and their
covariance (1/2r) sum_j 2 r s_j^2 / n v_j v_j^T = V S^2 V^T / n, the batch's. For the paper's
data (y = A x, x in R^10), r = 10: 20 points in place of 1,000, and a step costs a tenth
(docs/performance.md). Directions whose singular value is below ``rtol`` x the largest carry
at most rtol^2 of the variance (float32 rounding of y = A x leaves such directions) and are
dropped.

What it does not cover, and so refuses (:func:`moment_set_problem`): the l1 and l-infinity
normalizations (their scale is a mean absolute deviation or a maximum, not a moment), the noisy
kinds (noise drawn per sample), minibatches (a minibatch's moments are not the full batch's),
and a curvature probe set that is not the full batch. The activation snapshots (histograms,
moments and norms of every layer's pre-activations) are of the samples, not of the points:
training passes the whole training set to them (``x_snapshot``).
"""

from __future__ import annotations

import numpy as np

MOMENT_NORMALIZATIONS = ("none", "batch", "l2")
"""The normalizations whose batch statistics are the batch's mean and second moment only."""

MOMENT_RTOL = 1e-6
"""Principal directions below this fraction of the largest singular value are dropped."""


def moment_set(x: np.ndarray, y: np.ndarray, rtol: float = MOMENT_RTOL
               ) -> tuple[np.ndarray, np.ndarray]:
    """(x', y'): 2r points with the mean and the (1/n) covariance of the rows of [x, y].

    Args:
        x: [n, d] samples; y: [n, k] their targets.
        rtol: singular values below ``rtol`` x the largest are dropped (see the module).

    Returns:
        x' [2r, d] and y' [2r, k] in the dtype of ``x`` and ``y``, computed in float64: the
        first r points are mu + sqrt(r) s_j / sqrt(n) v_j, the next r the same with minus.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"moment_set needs x [n, d] and y [n, k] with n >= 2 rows each, got "
                         f"x {list(x.shape)} and y {list(y.shape)}")
    z = np.concatenate([x, y], axis=1).astype(np.float64)
    n, mean = z.shape[0], z.mean(axis=0)
    _, singular, directions = np.linalg.svd(z - mean, full_matrices=False)
    keep = singular > rtol * singular[0] if singular[0] > 0 else singular > 0
    rank = int(keep.sum())
    if rank == 0:  # every row equal: the one point is the batch
        points = mean[None]
    else:
        offsets = (np.sqrt(rank / n) * singular[keep])[:, None] * directions[keep]
        points = np.concatenate([mean + offsets, mean - offsets])
    width = x.shape[1]
    return points[:, :width].astype(x.dtype), points[:, width:].astype(y.dtype)


def moment_set_problem(family: str, normalization: str, batch_size: int, num_train: int,
                       curvature_probe_size: int | None) -> str | None:
    """Why a run cannot train on the moment set (what to change), or None when it can.

    ``curvature_probe_size`` is None when the run measures no curvature."""
    if family != "dln":
        return (f"it is for the deep linear network (architecture.family: dln), not "
                f"{family!r}: a VGG's loss is not a function of its data's moments")
    if normalization not in MOMENT_NORMALIZATIONS:
        return (f"normalization {normalization!r} is not a function of the batch's mean and "
                f"covariance (only {list(MOMENT_NORMALIZATIONS)} are); set moment_set: false")
    if batch_size != num_train:
        return (f"it needs full-batch training, but batch_size is {batch_size} of "
                f"{num_train} samples; set batch_size to {num_train} or moment_set: false")
    if curvature_probe_size is not None and curvature_probe_size != num_train:
        return (f"the curvature probe set must be the full batch, but curvature_probe_size is "
                f"{curvature_probe_size} of {num_train}; set it to {num_train}")
    return None
