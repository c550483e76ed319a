"""Comparing two runs' saved outputs of one model, file by file (the Dask runner's tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tests.golden.make_golden import newest


def assert_same_outputs(expected: Path, actual: Path, model: str) -> int:
    """Every table and array of ``model``'s newest outputs equal, bit for bit (the run
    record, with its timings, aside); returns how many files were compared."""
    folders = [*(expected / "data" / "07_model_output" / model).iterdir(),
               *(expected / "data" / "06_models" / model).iterdir()]
    compared = 0
    for folder in sorted(folders):
        mine, theirs = newest(actual / folder.relative_to(expected)), newest(folder)
        if folder.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(mine), pd.read_parquet(theirs),
                                          check_exact=True, obj=f"{model}/{folder.name}")
        elif folder.suffix == ".npz":
            with np.load(mine) as got, np.load(theirs) as want:
                assert got.files == want.files, f"{model}/{folder.name}"
                for key in want.files:
                    np.testing.assert_array_equal(got[key], want[key], err_msg=f"{model}/{folder.name}:{key}")
        else:
            continue
        compared += 1
    return compared
