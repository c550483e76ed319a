"""Custom Kedro datasets, only where kedro-datasets has none."""

from bnstudy.datasets.npz_dataset import NpzDataset

__all__ = ["NpzDataset"]
