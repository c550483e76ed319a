"""``NpzDataset``: a versioned Kedro dataset for NumPy arrays and nested dicts of them.

kedro-datasets has no NumPy dataset. This one stores a dict of arrays (nested dicts allowed,
e.g. a model's parameter pytree) in one ``.npz`` file; nested keys are joined with ``/``
and split again on load. A bare array is stored under the key ``array`` and loaded back
as a bare array.

Saves are atomic (see :class:`~bnstudy.datasets.file_dataset.FileDataset`).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from kedro.io.core import DatasetError, Version
from kedro_datasets._typing import JSONPreview

from bnstudy.datasets.file_dataset import FileDataset
from bnstudy.datasets.previews import saved_only

_SEPARATOR = "/"
_BARE_ARRAY_KEY = "array"

ArrayTree = np.ndarray | dict[str, Any]


def flatten_tree(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}``; leaves become NumPy arrays."""
    flat: dict[str, np.ndarray] = {}
    for raw_key, value in tree.items():
        key = str(raw_key)
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


class NpzDataset(FileDataset):
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
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        unknown = set(self._save_args) - set(self.DEFAULT_SAVE_ARGS)
        if unknown:
            raise DatasetError(f"NpzDataset: unknown save_args {sorted(unknown)}; only 'compress'")
        super().__init__(filepath=filepath, version=version, credentials=credentials, fs_args=fs_args,
                         metadata=metadata)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "save_args": self._save_args}

    def load(self) -> ArrayTree:
        with np.load(io.BytesIO(self._read_bytes()), allow_pickle=False) as archive:
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
        bad = [name for name, array in flat.items() if array.dtype == object]
        if bad:
            raise DatasetError(f"NpzDataset cannot store object arrays (keys {bad}); use numbers or strings")
        self._write_bytes(npz_bytes(flat, compress=self._save_args["compress"]))


    @saved_only
    def preview(self, max_items: int = 60) -> JSONPreview:
        """The newest version's arrays as ``{key: "float32[200, 64]"}`` (the first
        ``max_items``): kedro viz's ``JSONPreview``."""
        shapes = {}
        with np.load(io.BytesIO(self._read_bytes()), allow_pickle=False) as archive:
            for name in archive.files[:max_items]:
                array = archive[name]
                shapes[name] = f"{array.dtype}{list(array.shape)}"
            if len(archive.files) > max_items:
                shapes["..."] = f"{len(archive.files) - max_items} more arrays"
        return JSONPreview(json.dumps(shapes, indent=1))


def npz_bytes(flat: dict[str, np.ndarray], compress: bool = False) -> bytes:
    """The ``.npz`` file of a flat dict of arrays, as bytes."""
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **flat)
    return buffer.getvalue()
