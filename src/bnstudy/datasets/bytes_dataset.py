"""``BytesDataset``: a versioned Kedro dataset for a file's raw bytes (PNG, GIF, MP4, ...).

Figures are rendered to bytes by the reporting nodes, so the same bytes can be saved as a
file, logged to MLflow, and embedded in the HTML report (``MatplotlibDataset`` cannot be
loaded back). Saves are atomic, like :class:`~bnstudy.datasets.NpzDataset`'s.
"""

from __future__ import annotations

import logging
import os
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

logger = logging.getLogger(__name__)


class BytesDataset(AbstractVersionedDataset[bytes, bytes]):
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
        fs_args = deepcopy(fs_args) or {}
        protocol, path = get_protocol_and_path(filepath, version)
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(deepcopy(credentials) or {}), **fs_args)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "version": self._version,
            "mlflow_artifact_path": self._mlflow_artifact_path,
        }

    def load(self) -> bytes:
        with self._fs.open(get_filepath_str(self._get_load_path(), self._protocol), "rb") as handle:
            return handle.read()

    def save(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"BytesDataset saves bytes or str, got {type(data).__name__}")
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        write_atomically(self._fs, save_path, bytes(data))
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
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

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(load_path)


def write_atomically(fs: fsspec.AbstractFileSystem, path: str, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file renamed into place."""
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with fs.open(temporary, mode="wb") as handle:
            handle.write(payload)
        fs.mv(temporary, path)
    finally:
        if fs.exists(temporary):
            fs.rm(temporary)
