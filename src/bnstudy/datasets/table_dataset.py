"""A tidy Parquet table whose kedro viz preview shows what a reader looks for.

kedro-datasets' ``ParquetDataset.preview`` gives the file's first rows in its column order:
for a study's tidy table that is a few rows of the first model's first seed, with ``value``
pushed out of sight by the columns before it. :class:`TableDataset` is that dataset (load and
save unchanged) with a preview that leads with the columns that matter and spreads its rows
over every model (or, in a per-model trace, every seed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from kedro_datasets._typing import TablePreview
from kedro_datasets.pandas import ParquetDataset

from bnstudy.datasets.previews import saved_only

# Columns a preview leads with, in this order, where the table has them.
LEADING = ("model", "seed", "learning_rate", "step", "layer", "preset", "metric", "value")


def preview_frame(table: pd.DataFrame, nrows: int) -> pd.DataFrame:
    """``nrows`` rows of ``table`` spread evenly over its groups (its models, else its seeds,
    else the whole table), each group's rows evenly spaced through it, with the
    :data:`LEADING` columns first."""
    columns = [c for c in LEADING if c in table.columns] + [c for c in table.columns if c not in LEADING]
    table = table[columns]
    if table.empty:
        return table
    by = next((c for c in ("model", "seed") if c in table.columns), None)
    groups = [part for _, part in table.groupby(by, sort=False)] if by else [table]
    per_group = max(1, nrows // len(groups))
    picked = [part.iloc[np.unique(np.linspace(0, len(part) - 1, min(per_group, len(part))).round().astype(int))]
              for part in groups]
    return pd.concat(picked).head(nrows)


class TableDataset(ParquetDataset):
    """``pandas.ParquetDataset`` with a reader's preview (:func:`preview_frame`); set the row
    count with the catalog's ``metadata: kedro-viz: preview_args: nrows``."""

    @saved_only
    def preview(self, nrows: int = 12) -> TablePreview:
        """The preview kedro viz shows: :func:`preview_frame` of the saved table, in pandas'
        ``split`` form (kedro viz's ``TablePreview``)."""
        return preview_frame(self.load(), nrows).to_dict(orient="split")
