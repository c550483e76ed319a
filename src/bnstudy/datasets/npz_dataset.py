"""``NpzDataset``: a versioned Kedro dataset for NumPy arrays and nested dicts of them.

kedro-datasets has no NumPy dataset. This one stores a dict of arrays (nested dicts allowed,
e.g. a model's parameter pytree) in one ``.npz`` file; nested keys are joined with ``/``
and split again on load. A bare array is stored under the key ``array`` and loaded back
as a bare array.

Saves are atomic: the bytes go to a temporary file that is renamed into place only when
complete, so a failed save never leaves a truncated file that a later run would load as the
latest version.
"""

from __future__ import annotations

import io
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from bnstudy.datasets.bytes_dataset import write_atomically

_SEPARATOR = "/"
_BARE_ARRAY_KEY = "array"

ArrayTree = np.ndarray | dict[str, Any]


def flatten_tree(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}``; leaves become NumPy arrays."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        key = str(key)
        if _SEPARATOR in key:
            raise DatasetError(f"NpzDataset keys must not contain '{_SEPARATOR}', got {key!r}")
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if not value:
                raise DatasetError(f"NpzDataset cannot store the empty dict at {name!r}")
            flat.update(flatten_tree(value, prefix=name + _SEPARATOR))
        else:
            flat[name] = np.asarray(value)
    return flat


def unflatten_tree(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of :func:`flatten_tree`."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(_SEPARATOR)
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


class NpzDataset(AbstractVersionedDataset[ArrayTree, ArrayTree]):
    """Loads and saves a NumPy array, or a (nested) dict of arrays, as an ``.npz`` file.

    Example catalog entry::

        cifar10_train_raw:
          type: bnstudy.datasets.NpzDataset
          filepath: data/02_intermediate/cifar10_train.npz
          versioned: true
          save_args:
            compress: false

    Args:
        filepath: path (any fsspec protocol) of the ``.npz`` file.
        save_args: ``compress`` (bool, default False): use ``np.savez_compressed``.
        version: Kedro version (set by the catalog when ``versioned: true``).
        credentials, fs_args: passed to the fsspec filesystem.
        metadata: free-form, for plugins (e.g. kedro-viz layers).
    """

    DEFAULT_SAVE_ARGS: dict[str, Any] = {"compress": False}

    def __init__(
        self,
        *,
        filepath: str,
        save_args: dict[str, Any] | None = None,
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
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        unknown = set(self._save_args) - set(self.DEFAULT_SAVE_ARGS)
        if unknown:
            raise DatasetError(f"NpzDataset: unknown save_args {sorted(unknown)}; only 'compress'")
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
            "save_args": self._save_args,
            "version": self._version,
        }

    def load(self) -> ArrayTree:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(load_path, mode="rb") as handle:
            with np.load(io.BytesIO(handle.read()), allow_pickle=False) as archive:
                flat = {name: archive[name] for name in archive.files}
        if list(flat) == [_BARE_ARRAY_KEY]:
            return flat[_BARE_ARRAY_KEY]
        return unflatten_tree(flat)

    def save(self, data: ArrayTree) -> None:
        if isinstance(data, dict):
            flat = flatten_tree(data)
        elif isinstance(data, np.ndarray | list | tuple) or np.isscalar(data):
            flat = {_BARE_ARRAY_KEY: np.asarray(data)}
        else:
            raise DatasetError(
                f"NpzDataset saves an array or a dict of arrays, got {type(data).__name__}"
            )
        if any(array.dtype == object for array in flat.values()):
            bad = [name for name, array in flat.items() if array.dtype == object]
            raise DatasetError(f"NpzDataset cannot store object arrays (keys {bad}); use numbers or strings")
        buffer = io.BytesIO()
        (np.savez_compressed if self._save_args["compress"] else np.savez)(buffer, **flat)
        write_atomically(self._fs, get_filepath_str(self._get_save_path(), self._protocol), buffer.getvalue())
        self._invalidate_cache()

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
