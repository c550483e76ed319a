"""``BytesDataset``: a versioned Kedro dataset for a file's raw bytes (PNG, GIF, Markdown, ...).

Figures are rendered to bytes by the reporting nodes, so the same bytes can be saved as a
file, logged to MLflow, and embedded in the HTML report (``MatplotlibDataset`` cannot be
loaded back).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from kedro.io.core import DatasetError, Version
from kedro_datasets._typing import HTMLPreview, ImagePreview

from bnstudy.datasets.file_dataset import FileDataset
from bnstudy.datasets.previews import saved_only

logger = logging.getLogger(__name__)


class BytesDataset(FileDataset):
    """Loads and saves ``bytes`` (``str`` is saved UTF-8 encoded) as one file.

    With ``mlflow_artifact_path`` set, each saved file is also logged as an artifact of the
    active MLflow run (the study's run that kedro-mlflow opens), under that folder. This
    replaces wrapping in kedro-mlflow's ``MlflowArtifactDataset``, which cannot wrap a
    versioned dataset under Kedro 1.x's catalog (its inner dataset gets a save version of
    its own, and the catalog rejects it with ``VersionAlreadyExistsError``).

    Example catalog entry::

        loss_curves_figure:
          type: bnstudy.datasets.BytesDataset
          filepath: data/08_reporting/figures/loss_curves.png
          versioned: true
          mlflow_artifact_path: figures
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        mlflow_artifact_path: str | None = None,
    ) -> None:
        self._mlflow_artifact_path = mlflow_artifact_path
        super().__init__(filepath=filepath, version=version, credentials=credentials, fs_args=fs_args,
                         metadata=metadata)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "mlflow_artifact_path": self._mlflow_artifact_path}

    def load(self) -> bytes:
        return self._read_bytes()

    def save(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"BytesDataset saves bytes or str, got {type(data).__name__}")
        save_path = self._write_bytes(bytes(data))
        if self._mlflow_artifact_path is not None:
            self._log_to_mlflow(save_path)

    def _log_to_mlflow(self, save_path: str) -> None:
        import mlflow

        if mlflow.active_run() is None:
            logger.warning("No active MLflow run: %s was saved but not logged as an artifact", save_path)
            return
        if self._protocol != "file":
            raise DatasetError("mlflow_artifact_path needs a local filepath (file protocol)")
        mlflow.log_artifact(save_path, artifact_path=self._mlflow_artifact_path)


class ImageDataset(BytesDataset):
    """A figure's bytes (PNG, or a GIF animation), previewed in kedro viz (an image in the
    dataset's side panel). Otherwise a :class:`BytesDataset`."""

    @saved_only
    def preview(self) -> ImagePreview:
        """The newest version, base64-encoded (kedro viz's ``ImagePreview``)."""
        return ImagePreview(base64.b64encode(self._read_bytes()).decode("ascii"))


class HtmlDataset(BytesDataset):
    """An HTML page's bytes, previewed in kedro viz as the page itself. Otherwise a
    :class:`BytesDataset`."""

    @saved_only
    def preview(self) -> HTMLPreview:
        """The newest version's HTML (kedro viz's ``HTMLPreview``)."""
        return HTMLPreview(self._read_bytes().decode("utf-8"))
