"""Kedro pipelines of bnstudy: thin adapters around the pure libraries."""

from __future__ import annotations

from typing import Any

import numpy as np


def json_ready(value: Any) -> Any:
    """Make a value JSON-ready for ``json.JSONDataset`` (which rejects numpy types):
    numpy scalars and arrays -> Python numbers and lists, NaN/inf -> None."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
