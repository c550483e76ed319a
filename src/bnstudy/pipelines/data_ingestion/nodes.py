"""Thin Kedro adapter around :mod:`bnstudy.data.ingestion`: parameters in, arrays and records out."""

from __future__ import annotations

from typing import Any

import numpy as np

from bnstudy.data import ingestion
from bnstudy.parameters import section_config


def ingest_cifar10(
    params: dict[str, Any], preprocessing: dict[str, Any]
) -> tuple[dict[str, dict[str, np.ndarray]], list[str], dict[str, Any]]:
    """Read CIFAR-10 from the source that ``params`` name (:func:`bnstudy.data.ingestion.ingest`).

    Args:
        params: ``data_ingestion`` parameters (parameters_data_ingestion.yml), as the
            preflight validated them (:func:`bnstudy.parameters.section_config`).
        preprocessing: ``preprocessing`` parameters, likewise;
            with ``data_ingestion.subset_only`` only the subset they select is read.

    Returns:
        ``(cifar10_raw_cache, cifar10_class_names, cifar10_provenance)``.
    """
    return ingestion.ingest(section_config("data_ingestion", params),
                            section_config("preprocessing", preprocessing))
