"""Comparing two runs' saved outputs of one model, file by file (the Dask and mesh tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tests.golden.make_golden import newest


def assert_same_outputs(expected: Path, actual: Path, model: str, rtol: float | None = None,
                        atol: float = 0.0) -> int:
    """Every table and array of ``model``'s newest outputs in the project ``actual`` equal to
    those in ``expected``: bit for bit, or to ``rtol``/``atol`` when ``rtol`` is given (the run
    record, with its timings, aside); returns how many files were compared."""
    folders = [*(expected / "data" / "07_model_output" / model).iterdir(),
               *(expected / "data" / "06_models" / model).iterdir()]
    close = {} if rtol is None else {"rtol": rtol, "atol": atol}
    compared = 0
    for folder in sorted(folders):
        mine, theirs = newest(actual / folder.relative_to(expected)), newest(folder)
        name = f"{model}/{folder.name}"
        if folder.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(mine), pd.read_parquet(theirs),
                                          check_exact=rtol is None, obj=name, **close)
        elif folder.suffix == ".npz":
            with np.load(mine) as got, np.load(theirs) as want:
                assert got.files == want.files, name
                for key in want.files:
                    if rtol is None:
                        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}:{key}")
                    else:
                        np.testing.assert_allclose(got[key], want[key], err_msg=f"{name}:{key}", **close)
        else:
            continue
        compared += 1
    return compared
