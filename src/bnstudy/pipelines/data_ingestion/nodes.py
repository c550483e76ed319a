"""Thin Kedro adapters around :mod:`bnstudy.data.cifar10`: parameters in, arrays and records out."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from bnstudy.core.preprocessing import stratified_subset
from bnstudy.data import cifar10

logger = logging.getLogger(__name__)

SOURCE_KINDS = ("download", "python_archive", "image_folder")
# Part of every raw-cache key: bump it when the stored arrays change form, so old entries
# are not mistaken for new ones.
RAW_CACHE_FORMAT = 1


def ingest_cifar10(
    params: dict[str, Any], preprocessing: dict[str, Any]
) -> tuple[dict[str, dict[str, np.ndarray]], list[str], dict[str, Any]]:
    """Read CIFAR-10 from the source that ``params`` name.

    Args:
        params: ``data_ingestion`` parameters: ``source`` (one of ``download``,
            ``python_archive``, ``image_folder``), ``path`` (the local archive or folder for
            the last two), ``url``, ``md5``, ``download_dir``, ``timeout_s``, ``classes``,
            ``subset_only``.
        preprocessing: ``preprocessing`` parameters; with ``subset_only: true`` only the
            class-stratified subset that ``train_size``/``test_size``/``seed`` select is kept
            (and, from an image folder, decoded).

    Returns:
        ``(raw_cache, class_names, provenance)``: ``raw_cache`` holds the entries
        ``<key>/train`` and ``<key>/test``, each ``{"images": [N,32,32,3] uint8, "labels": [N]
        int32}`` (plus ``rows`` [N] int64 and ``source_labels`` [N_source] int32 for a subset),
        where ``<key>`` hashes the source's checksum, the classes and the subset, so
        ingesting the same source again rewrites the same entry instead of adding a copy;
        the class names in label order; and a record of where the data came from (source,
        location, checksums, ``raw_cache_key``, counts per split and class).
    """
    source = params.get("source")
    if source not in SOURCE_KINDS:
        raise cifar10.Cifar10ParameterError(
            f"data_ingestion.source must be one of {list(SOURCE_KINDS)}, got {source!r}. "
            "Set it in conf/<env>/parameters_data_ingestion.yml, with --params "
            "data_ingestion.source=..., or with the BNSTUDY_CIFAR10_SOURCE environment variable."
        )
    classes = tuple(params["classes"])
    subset = _subset_settings(params, preprocessing)
    select = None if subset is None else _stratified_selector(subset)
    arrays, provenance = _read_source(source, params, classes, select)
    key = raw_cache_key(provenance["checksum"], source, classes, subset)
    provenance.update(
        source=source,
        ingested_at=datetime.now(UTC).isoformat(),
        raw_cache_key=key,
        subset=subset,
        class_names=list(arrays.class_names),
        num_train=int(arrays.train_labels.shape[0]),
        num_test=int(arrays.test_labels.shape[0]),
        counts_per_class=arrays.counts(),
        source_counts_per_class=arrays.source_counts(),
    )
    logger.info(
        "CIFAR-10 from %s: %d train / %d test images, %d classes (raw cache entry %s)",
        provenance["location"], provenance["num_train"], provenance["num_test"],
        len(arrays.class_names), key,
    )
    raw_cache = {f"{key}/{split}": _split_record(arrays, split) for split in cifar10.SPLITS}
    return raw_cache, list(arrays.class_names), provenance


def raw_cache_key(checksum: str, source: str, classes: tuple[str, ...], subset: dict | None) -> str:
    """The raw cache's entry for a source: what decides the arrays, hashed."""
    identity = {"format": RAW_CACHE_FORMAT, "checksum": checksum, "source": source,
                "classes": list(classes), "subset": subset}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _split_record(arrays: cifar10.Cifar10Arrays, split: str) -> dict[str, np.ndarray]:
    images = arrays.train_images if split == "train" else arrays.test_images
    record = {"images": images, "labels": arrays.labels(split)}
    if arrays.subset and split in arrays.subset:
        record["rows"] = arrays.subset[split].rows
        record["source_labels"] = arrays.subset[split].source_labels
    return record


def _read_source(
    source: str, params: dict[str, Any], classes: tuple[str, ...], select
) -> tuple[cifar10.Cifar10Arrays, dict[str, Any]]:
    """The arrays and the provenance of the source: location, checksums."""
    if source == "download":
        url = params["url"]
        location = Path(params["download_dir"]) / PurePosixPath(url).name
        cifar10.download_archive(url, location, md5=params.get("md5"), timeout_s=params["timeout_s"])
        arrays = cifar10.read_python_archive(location, class_names=classes, select=select)
        provenance: dict[str, Any] = {"url": url}
    else:
        location = _local_path(params, source)
        provenance = {}
        if source == "python_archive":
            _verify_local_archive(location, cifar10.checked_md5(params.get("md5")))
            arrays = cifar10.read_python_archive(location, class_names=classes, select=select)
        else:
            arrays = cifar10.read_image_folder(location, class_names=classes, select=select)
    provenance["location"] = str(location)
    if location.is_file():
        provenance["md5"] = cifar10.file_md5(location)
        provenance["sha256"] = cifar10.file_sha256(location)
        provenance["checksum"] = f"sha256:{provenance['sha256']}"
    else:
        provenance["tree_sha256"] = cifar10.tree_sha256(location)
        provenance["checksum"] = f"tree_sha256:{provenance['tree_sha256']}"
    return arrays, provenance


def _subset_settings(params: dict[str, Any], preprocessing: dict[str, Any]) -> dict[str, Any] | None:
    """``{"train_size", "test_size", "seed"}`` when only a subset is to be read, else None."""
    subset_only = params.get("subset_only", False)
    if not isinstance(subset_only, bool):
        raise cifar10.Cifar10ParameterError(
            f"data_ingestion.subset_only must be true or false, got {subset_only!r}."
        )
    sizes = {name: preprocessing.get(name) for name in ("train_size", "test_size")}
    if not subset_only or all(size is None for size in sizes.values()):
        return None
    for name, size in sizes.items():
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise cifar10.Cifar10ParameterError(
                f"preprocessing.{name} must be a positive integer or null, got {size!r}."
            )
    return {**sizes, "seed": preprocessing.get("seed", 0)}


def _stratified_selector(subset: dict[str, Any]) -> cifar10.RowSelector:
    """The rows preprocessing's stratified subset keeps, decided from the labels alone."""

    def select(split: str, labels: np.ndarray) -> np.ndarray:
        size = subset[f"{split}_size"]
        if size is None:
            return np.arange(labels.size)
        if size > labels.size:
            raise cifar10.Cifar10ParameterError(
                f"preprocessing.{split}_size is {size}, but the source's {split} split has only "
                f"{labels.size} images; set preprocessing.{split}_size to at most {labels.size} "
                "(or null for all of them)."
            )
        return stratified_subset(labels, size, subset["seed"])

    return select


def _local_path(params: dict[str, Any], source: str) -> Path:
    raw = params.get("path")
    if not raw:
        raise cifar10.Cifar10ParameterError(
            f"data_ingestion.source is {source!r} but data_ingestion.path is not set; give the "
            "archive or folder, e.g. BNSTUDY_CIFAR10_PATH=../shared/datasets/cifar10-jpeg.tar.gz."
        )
    path = Path(raw).expanduser()
    if not path.exists():
        raise cifar10.Cifar10Error(
            f"data_ingestion.path {raw!r} does not exist (resolved to {path.resolve()}); "
            "relative paths are relative to the directory kedro runs in (the project root)."
        )
    return path


def _verify_local_archive(path: Path, md5: str | None) -> None:
    """A local copy of the official archive must have the official checksum (``md5`` null:
    a deliberately different archive in the same format, read unchecked)."""
    if md5 is None:
        return
    if path.is_dir():
        raise cifar10.Cifar10ParameterError(
            f"data_ingestion.md5 is {md5} but data_ingestion.path {path} is a directory, and an "
            "md5 checks an archive file: point path at the archive, or set data_ingestion.md5 to "
            "null to read the extracted folder unchecked."
        )
    actual = cifar10.file_md5(path)
    if actual != md5:
        cifar10.reject_image_folder(path)  # the other kind of source: say so, not "corrupt"
        raise cifar10.ChecksumError(
            f"{path}: md5 is {actual}, expected {md5} (the official cifar-10-python.tar.gz). "
            "The copy is corrupt or truncated; download it again, or set data_ingestion.md5 to "
            "null if this is deliberately a different archive in the same format."
        )
