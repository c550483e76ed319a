"""``FileDataset``: the shared base of bnstudy's versioned one-file datasets.

Handles the filesystem (any fsspec protocol), versioning, and atomic writes: the bytes go to
a temporary file that is renamed into place only when complete, so a failed save never leaves
a truncated file that a later run would load as the latest version.
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


class FileDataset(AbstractVersionedDataset):
    """Base class: subclasses turn data into bytes (``save``) and back (``load``) with
    :meth:`_read_bytes` and :meth:`_write_bytes`."""

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

    def _read_bytes(self) -> bytes:
        with self._fs.open(get_filepath_str(self._get_load_path(), self._protocol), "rb") as handle:
            return handle.read()

    def _write_bytes(self, payload: bytes) -> str:
        """Write ``payload`` atomically to the save path; returns that path."""
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        temporary = f"{save_path}.tmp-{os.getpid()}"
        try:
            with self._fs.open(temporary, mode="wb") as handle:
                handle.write(payload)
            self._fs.mv(temporary, save_path)
        finally:
            if self._fs.exists(temporary):
                self._fs.rm(temporary)
        self._invalidate_cache()
        return save_path

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(load_path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
