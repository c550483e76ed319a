"""Custom Kedro datasets, only where kedro-datasets and kedro-mlflow have none."""

from bnstudy.datasets.bytes_dataset import BytesDataset, HtmlDataset, ImageDataset
from bnstudy.datasets.mlflow_model_run_dataset import (
    LiveModelRun,
    MlflowLiveRunDataset,
    MlflowModelRunDataset,
)
from bnstudy.datasets.mlflow_note_dataset import MlflowNoteDataset
from bnstudy.datasets.npz_dataset import NpzDataset
from bnstudy.datasets.previews import PreviewedJSONDataset
from bnstudy.datasets.report_dataset import ReportDataset
from bnstudy.datasets.results_dataset import ModelResults, ModelResultsDataset
from bnstudy.datasets.table_dataset import TableDataset

__all__ = [
    "BytesDataset",
    "HtmlDataset",
    "ImageDataset",
    "LiveModelRun",
    "MlflowLiveRunDataset",
    "MlflowModelRunDataset",
    "MlflowNoteDataset",
    "ModelResults",
    "ModelResultsDataset",
    "NpzDataset",
    "ReportDataset",
    "PreviewedJSONDataset",
    "TableDataset",
]
