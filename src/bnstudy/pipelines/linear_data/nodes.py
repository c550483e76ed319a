"""Thin Kedro adapter around :func:`bnstudy.data.synthetic.linear_regression`."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np

from bnstudy.data.synthetic import linear_regression
from bnstudy.parameters import section_config

logger = logging.getLogger(__name__)


def make_linear_data(params: dict[str, Any]) -> tuple[dict[str, np.ndarray],
                                                      dict[str, np.ndarray], dict[str, Any]]:
    """The training and test sets of the deep linear network (``linear_data`` parameters:
    seed, sizes, dimension), and their provenance for the report's Setup.

    Returns:
        ``{"samples": x [N, d] float32, "targets": y = x A^T [N, d] float32}`` for training
        and for testing, and ``{"kind": "linear_regression", "seed", "num_train", "num_test",
        "dimension", "checksum"}`` (the sha256 of the float32 arrays, A included).
    """
    config = section_config("linear_data", params)
    data = linear_regression(config.seed, config.num_train, config.num_test, config.dimension)
    digest = hashlib.sha256()
    for array in data:
        digest.update(np.ascontiguousarray(array).tobytes())
    logger.info("Linear regression data: %d train and %d test samples of dimension %d, seed %d",
                config.num_train, config.num_test, config.dimension, config.seed)
    provenance = {"kind": "linear_regression", "seed": config.seed,
                  "num_train": config.num_train, "num_test": config.num_test,
                  "dimension": config.dimension, "checksum": f"sha256:{digest.hexdigest()}",
                  "distribution": "x ~ N(0, I); y = A x, A_ij ~ N(0, 1) i.i.d."}
    return ({"samples": data.x_train, "targets": data.y_train},
            {"samples": data.x_test, "targets": data.y_test}, provenance)
