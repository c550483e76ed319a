"""Ingesting CIFAR-10: the configured source read into raw-cache entries and their provenance.

The ``data_ingestion`` pipeline's node is a thin adapter around :func:`ingest`: it builds the
typed configs (``DataIngestion``, ``Preprocessing`` of :mod:`bnstudy.parameters`) from the
parameters, which :func:`bnstudy.parameters.validate_parameters` has checked before any node
runs, and this module reads their attributes. What is refused here is about the data, not the
parameters: a path that is not on disk, a checksum that does not match, a subset larger than
the source's split, an archive of the other kind. No Kedro (the configs are imported for type
checking only: their module imports the roster's Kedro hooks).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from bnstudy.core.preprocessing import stratified_subset
from bnstudy.data import cifar10

if TYPE_CHECKING:
    from bnstudy.parameters import DataIngestion, Preprocessing

logger = logging.getLogger(__name__)

# Part of every raw-cache key: bump it when the stored arrays change form, so old entries
# are not mistaken for new ones.
RAW_CACHE_FORMAT = 1

RawCache = dict[str, dict[str, np.ndarray]]


def ingest(
    config: DataIngestion, preprocessing: Preprocessing
) -> tuple[RawCache, list[str], dict[str, Any]]:
    """Read CIFAR-10 from the source that ``config`` names.

    Args:
        config: where the data comes from: ``source`` (``download``, ``python_archive`` or
            ``image_folder``), ``path`` (the local archive or folder of the last two), ``url``,
            ``md5``, ``download_dir``, ``timeout_s``, ``classes``, ``subset_only``.
        preprocessing: with ``config.subset_only``, only the class-stratified subset that its
            ``train_size``/``test_size``/``seed`` select is kept (and, from an image folder,
            decoded).

    Returns:
        ``(raw_cache, class_names, provenance)``: ``raw_cache`` holds the entries
        ``<key>/train`` and ``<key>/test``, each ``{"images": [N,32,32,3] uint8, "labels": [N]
        int32}`` (plus ``rows`` [N] int64 and ``source_labels`` [N_source] int32 for a subset),
        where ``<key>`` hashes the source's checksum, the classes and the subset, so
        ingesting the same source again rewrites the same entry instead of adding a copy;
        the class names in label order; and a record of where the data came from (source,
        location, checksums, ``raw_cache_key``, counts per split and class).

    Raises:
        Cifar10Error: the data is missing, corrupt, of the wrong kind or smaller than the
            subset (a :class:`~bnstudy.data.common.Cifar10FormatError`,
            :class:`~bnstudy.data.common.ChecksumError`, ...), the message naming the file.
    """
    classes = tuple(config.classes)
    subset = subset_settings(config, preprocessing)
    select = None if subset is None else _stratified_selector(subset)
    arrays, provenance = _read_source(config, classes, select)
    key = raw_cache_key(provenance["checksum"], config.source, classes, subset)
    provenance.update(
        source=config.source,
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


def subset_settings(config: DataIngestion, preprocessing: Preprocessing) -> dict[str, Any] | None:
    """``{"train_size", "test_size", "seed"}`` when only a subset is to be read, else None
    (``subset_only`` off, or both sizes null: every image is kept anyway)."""
    sizes = {"train_size": preprocessing.train_size, "test_size": preprocessing.test_size}
    if not config.subset_only or all(size is None for size in sizes.values()):
        return None
    return {**sizes, "seed": preprocessing.seed}


def _split_record(arrays: cifar10.Cifar10Arrays, split: str) -> dict[str, np.ndarray]:
    images = arrays.train_images if split == "train" else arrays.test_images
    record = {"images": images, "labels": arrays.labels(split)}
    if arrays.subset and split in arrays.subset:
        record["rows"] = arrays.subset[split].rows
        record["source_labels"] = arrays.subset[split].source_labels
    return record


def _read_source(
    config: DataIngestion, classes: tuple[str, ...], select: cifar10.RowSelector | None
) -> tuple[cifar10.Cifar10Arrays, dict[str, Any]]:
    """The arrays and the provenance of the source: location, checksums."""
    if config.source == "download":
        location = Path(config.download_dir) / PurePosixPath(config.url).name
        cifar10.download_archive(config.url, location, md5=config.md5, timeout_s=config.timeout_s)
        arrays = cifar10.read_python_archive(location, class_names=classes, select=select)
        provenance: dict[str, Any] = {"url": config.url}
    else:
        location = _existing_path(config.path)
        provenance = {}
        if config.source == "python_archive":
            _verify_local_archive(location, config.md5)
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


def _existing_path(raw: str) -> Path:
    """``data_ingestion.path`` (set for every local source: validate_parameters checks it)
    as a path that exists."""
    path = Path(raw).expanduser()
    if not path.exists():
        raise cifar10.Cifar10Error(
            f"data_ingestion.path {raw!r} does not exist (resolved to {path.resolve()}); "
            "relative paths are relative to the directory kedro runs in (the project root)."
        )
    return path


def _verify_local_archive(path: Path, md5: str | None) -> None:
    """A local archive must have the md5 ``data_ingestion.md5`` gives (conf/base's, the only
    copy, is the official archive's; ``md5`` null: a deliberately different archive in the
    same format, read unchecked)."""
    if md5 is None:
        return
    if path.is_dir():
        raise cifar10.Cifar10ParameterError(
            f"data_ingestion.md5 is {md5} but data_ingestion.path {path} is a directory, and an "
            "md5 checks an archive file: point path at the archive, or set data_ingestion.md5 to "
            "null to read the extracted folder unchecked."
        )
    actual = cifar10.file_md5(path)
    if actual == md5:
        return
    cifar10.reject_image_folder(path)  # the other kind of source: say so, not "corrupt"
    raise cifar10.ChecksumError(
        f"{path}: md5 is {actual}, expected {md5} (data_ingestion.md5). The copy is corrupt or "
        "truncated, or not the archive that md5 describes: download it again, check "
        "data_ingestion.path and data_ingestion.md5 (BNSTUDY_CIFAR10_PATH / "
        "BNSTUDY_CIFAR10_MD5), or set data_ingestion.md5 to null to read this archive unchecked "
        "(a deliberately different archive in the same format)."
    )
