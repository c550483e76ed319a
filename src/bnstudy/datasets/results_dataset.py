"""``ModelResultsDataset``: one model's outputs of one run, as the single dataset others read.

A model's training writes about a dozen datasets (its traces, states and run record), and the
analysis, report and every study's own questions read most of them. Read one by one, each at
its latest version, they are a dozen edges out of the model's namespace in kedro viz, and a
reader could mix versions of two runs if one of them stopped half-way. The model's
``collect_results_node`` reads them all once and saves this dataset: a small versioned JSON
manifest naming the version and SHA-256 of each. Loading it gives a :class:`ModelResults`,
a read-only mapping that loads each output on first access, at the manifest's version, and
checks its digest. The outputs stay where their own catalog entries keep them (nothing is
stored twice); the manifest's ``members`` are those entries' configurations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from kedro.io.core import (
    AbstractDataset,
    AbstractVersionedDataset,
    DatasetError,
    Version,
    VersionNotFoundError,
)
from kedro_datasets._typing import JSONPreview

from bnstudy.datasets.file_dataset import FileDataset
from bnstudy.datasets.previews import saved_only

FORMAT = 1


def content_digest(value: Any) -> str:
    """SHA-256 of ``value``'s content: tables by column names, dtypes and row hashes; arrays
    by dtype, shape and bytes; mappings by sorted key; anything else by its JSON text. Two
    loads of the same file give the same digest; a changed value, dtype or shape does not."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, pd.DataFrame):
        digest.update(json.dumps([[str(c), str(t)] for c, t in value.dtypes.items()]).encode())
        digest.update(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes())
    elif isinstance(value, np.ndarray | np.generic):
        array = np.ascontiguousarray(value)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            digest.update(json.dumps(str(key)).encode())
            _feed(digest, value[key])
    else:
        digest.update(json.dumps(value, sort_keys=True, default=repr).encode())


def _member(name: str, config: Mapping[str, Any], version: str | None) -> AbstractDataset:
    """The member dataset ``name`` of ``config`` (a catalog entry), at ``version``."""
    if not config.get("versioned"):
        raise DatasetError(
            f"ModelResultsDataset: member '{name}' is not versioned, so the manifest could not "
            "pin the version it read. Give its configuration `versioned: true`, as its own "
            "catalog entry has.")
    return AbstractDataset.from_config(name, dict(config), load_version=version)


def _latest(name: str, member: AbstractDataset) -> str:
    """The newest saved version of ``member``: the one the collecting node read."""
    assert isinstance(member, AbstractVersionedDataset)
    try:
        return member.resolve_load_version()
    except DatasetError as error:
        raise DatasetError(
            f"ModelResultsDataset: member '{name}' has no saved version ({error}). The "
            "model's training node writes it: run the model's training first.") from error


class ModelResults(Mapping[str, Any]):
    """A model's outputs by name, each loaded on first access at the manifest's version and
    checked against its digest.

    Raises (on access):
        KeyError: no such output (the message lists those there are).
        DatasetError: the file differs from the one the manifest was written from.
    """

    def __init__(self, manifest: Mapping[str, Any], members: Mapping[str, Mapping[str, Any]],
                 source: str) -> None:
        self._manifest = dict(manifest["members"])
        self.mlflow_run: dict[str, Any] | None = manifest.get("mlflow_run")
        """The model's MLflow run (``run_name``, ``run_id``, ``status``), None untracked."""
        self._members = members
        self._source = source
        self._loaded: dict[str, Any] = {}

    @property
    def versions(self) -> dict[str, str]:
        """``{output: the version the manifest pins}``."""
        return {name: entry["version"] for name, entry in self._manifest.items()}

    def __getitem__(self, name: str) -> Any:
        if name not in self._manifest:
            raise KeyError(f"{self._source} has no output '{name}'; it has "
                           f"{', '.join(sorted(self._manifest))}.")
        if name not in self._loaded:
            entry = self._manifest[name]
            value = _member(name, self._members[name], entry["version"]).load()
            found = content_digest(value)
            if found != entry["sha256"]:
                raise DatasetError(
                    f"{self._source}: output '{name}' at version {entry['version']} has SHA-256 "
                    f"{found[:12]}..., the manifest says {entry['sha256'][:12]}...: the file "
                    "changed after the run that wrote the manifest. Rerun the model (its "
                    "training resumes from its checkpoints) to write consistent results.")
            self._loaded[name] = value
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        # Mapping's own __contains__ would load the output (it tries self[name])
        return name in self._manifest

    def __iter__(self) -> Iterator[str]:
        return iter(self._manifest)

    def __len__(self) -> int:
        return len(self._manifest)

    def __repr__(self) -> str:
        return f"ModelResults({self._source}: {', '.join(self._manifest)})"


class ModelResultsDataset(FileDataset):
    """A model's outputs of one run: saves a versioned manifest of the members' versions and
    digests; loads a :class:`ModelResults`.

    ``save`` takes ``{"digests": {member: content digest}, "mlflow_run": {...}}``
    (:func:`content_digest` of each output as ``collect_results_node`` read it, and the
    model's MLflow run) and pins each member at its latest version, the one that node read.

    Args:
        filepath: the manifest (JSON), versioned like every output.
        members: ``{output: its catalog entry's configuration}``; each must be versioned.
        version, credentials, fs_args, metadata: as for every file dataset of the project.
    """

    def __init__(self, *, filepath: str, members: Mapping[str, Mapping[str, Any]],
                 version: Version | None = None, credentials: dict[str, Any] | None = None,
                 fs_args: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        if not members:
            raise DatasetError("ModelResultsDataset needs `members`: the catalog entries of "
                               "the model's outputs it collects.")
        self._members = {name: dict(config) for name, config in members.items()}
        super().__init__(filepath=filepath, version=version, credentials=credentials,
                         fs_args=fs_args, metadata=metadata)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "members": sorted(self._members)}

    def save(self, data: Mapping[str, Any]) -> None:
        digests = data["digests"]
        missing, unknown = set(self._members) - set(digests), set(digests) - set(self._members)
        if missing or unknown:
            raise DatasetError(
                f"ModelResultsDataset {self._filepath}: the digests name {sorted(digests)}, the "
                f"catalog's members are {sorted(self._members)} (missing {sorted(missing)}, "
                f"unknown {sorted(unknown)}). The members and the collecting node's inputs "
                "must be the same outputs.")
        members = {name: _member(name, config, None) for name, config in self._members.items()}
        entries = {name: {"version": _latest(name, member), "sha256": digests[name]}
                   for name, member in members.items()}
        manifest = {"format": FORMAT, "members": entries, "mlflow_run": data.get("mlflow_run")}
        self._write_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode())

    def load(self) -> ModelResults:
        try:
            manifest = json.loads(self._read_bytes())
        except VersionNotFoundError as error:
            model = PurePosixPath(self._filepath).parent.name
            raise DatasetError(
                f"No results manifest of '{model}' yet ({self._filepath}). A run trained before "
                "manifests existed has its outputs but no manifest: write one from them, "
                f"without training, with `kedro run --nodes {model}.collect_results_node` "
                "(add --env as for the run); otherwise run the model's training.") from error
        if manifest.get("format") != FORMAT or set(manifest.get("members", {})) - set(self._members):
            raise DatasetError(
                f"{self._filepath}: not a manifest this catalog can read (format "
                f"{manifest.get('format')}, members {sorted(manifest.get('members', {}))}; "
                f"the catalog has {sorted(self._members)}). Rerun the model to write one.")
        return ModelResults(manifest, self._members, str(self._filepath))

    @saved_only
    def preview(self) -> JSONPreview:
        """The manifest: each output's version and digest (kedro viz's side panel)."""
        return JSONPreview(self._read_bytes().decode())
