"""Thin Kedro adapters around :mod:`bnstudy.data.cifar10`: parameters in, arrays and records out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from bnstudy.data import cifar10

logger = logging.getLogger(__name__)

SOURCE_KINDS = ("download", "python_archive", "image_folder")


def ingest_cifar10(
    params: dict[str, Any],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str], dict[str, Any]]:
    """Read CIFAR-10 from the source that ``params`` name.

    Args:
        params: ``data_ingestion`` parameters: ``source`` (one of ``download``,
            ``python_archive``, ``image_folder``), ``path`` (the local archive or folder for
            the last two), ``url``, ``md5``, ``download_dir``, ``timeout_s``, ``classes``.

    Returns:
        ``(train, test, class_names, provenance)``: train/test as ``{"images": [N,32,32,3]
        uint8, "labels": [N] int32}``, the class names in label order, and a record of where
        the data came from (source, location, checksums, counts per split and class).
    """
    source = params.get("source")
    classes = tuple(params["classes"])
    provenance: dict[str, Any] = {"source": source, "ingested_at": datetime.now(UTC).isoformat()}
    if source == "download":
        url = params["url"]
        archive = Path(params["download_dir"]) / PurePosixPath(url).name
        cifar10.download_archive(url, archive, md5=params["md5"], timeout_s=params["timeout_s"])
        arrays = cifar10.read_python_archive(archive, class_names=classes)
        provenance.update(url=url, location=str(archive), md5=params["md5"])
    elif source in ("python_archive", "image_folder"):
        location = _local_path(params, source)
        if source == "python_archive":
            _verify_local_archive(location, params.get("md5"))
            arrays = cifar10.read_python_archive(location, class_names=classes)
        else:
            arrays = cifar10.read_image_folder(location, class_names=classes)
        provenance["location"] = str(location)
        if location.is_file():
            provenance["md5"] = cifar10.file_md5(location)
            provenance["sha256"] = cifar10.file_sha256(location)
    else:
        raise cifar10.Cifar10Error(
            f"data_ingestion.source must be one of {list(SOURCE_KINDS)}, got {source!r}. "
            "Set it in conf/<env>/parameters_data_ingestion.yml, with --params "
            "data_ingestion.source=..., or with the BNSTUDY_CIFAR10_SOURCE environment variable."
        )
    counts = arrays.counts()
    provenance.update(
        class_names=list(arrays.class_names),
        num_train=int(arrays.train_labels.shape[0]),
        num_test=int(arrays.test_labels.shape[0]),
        counts_per_class=counts,
    )
    logger.info(
        "CIFAR-10 from %s: %d train / %d test images, %d classes",
        provenance["location"],
        provenance["num_train"],
        provenance["num_test"],
        len(arrays.class_names),
    )
    train = {"images": arrays.train_images, "labels": arrays.train_labels}
    test = {"images": arrays.test_images, "labels": arrays.test_labels}
    return train, test, list(arrays.class_names), provenance


def _local_path(params: dict[str, Any], source: str) -> Path:
    raw = params.get("path")
    if not raw:
        raise cifar10.Cifar10Error(
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
    """A local copy of the official archive must have the official checksum."""
    if not md5:
        return
    actual = cifar10.file_md5(path)
    if actual != md5:
        raise cifar10.ChecksumError(
            f"{path}: md5 is {actual}, expected {md5} (the official cifar-10-python.tar.gz). "
            "The copy is corrupt or truncated; download it again, or set data_ingestion.md5 to "
            "null if this is deliberately a different archive in the same format."
        )
