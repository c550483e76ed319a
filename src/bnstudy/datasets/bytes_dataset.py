"""``BytesDataset``: a versioned Kedro dataset for a file's raw bytes (PNG, GIF, MP4, ...).

Figures are rendered to bytes by the reporting nodes, so the same bytes can be saved as a
file, logged to MLflow, and embedded in the HTML report (``MatplotlibDataset`` cannot be
loaded back). Saves are atomic, like :class:`~bnstudy.datasets.NpzDataset`'s.
"""

from __future__ import annotations

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


class BytesDataset(AbstractVersionedDataset[bytes, bytes]):
    """Loads and saves ``bytes`` as one file.

    Example catalog entry::

        loss_curves_figure:
          type: bnstudy.datasets.BytesDataset
          filepath: data/08_reporting/figures/loss_curves.png
          versioned: true
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
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
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def load(self) -> bytes:
        with self._fs.open(get_filepath_str(self._get_load_path(), self._protocol), "rb") as handle:
            return handle.read()

    def save(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"BytesDataset saves bytes, got {type(data).__name__}")
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        write_atomically(self._fs, save_path, bytes(data))
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))

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
