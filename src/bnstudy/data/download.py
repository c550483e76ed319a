"""Downloading the official archive with pooch: known md5, progress bar, a local cache.

The URL and md5 are parameters (``data_ingestion.url``/``md5`` in
``conf/base/parameters_data_ingestion.yml``, overridable with ``BNSTUDY_CIFAR10_URL`` and
``BNSTUDY_CIFAR10_MD5``); this module has no second copy of them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlparse

from bnstudy.data.common import (
    OFFLINE_HINT,
    ChecksumError,
    Cifar10ParameterError,
    DownloadError,
    checked_md5,
    file_md5,
)

logger = logging.getLogger(__name__)

_GOT_HASH = re.compile(r"but got ([0-9a-fA-F]+)")


def download_archive(
    url: str,
    destination: str | Path,
    md5: str,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``destination`` with :func:`pooch.retrieve`; reuse a valid copy.

    pooch streams the bytes to a temporary file beside ``destination`` and moves it into
    place only once its md5 matches, so a failed or interrupted download never leaves a file
    that could be mistaken for a good one. An existing file with the wrong md5 is left alone
    (and reported) rather than overwritten.

    Args:
        url: where to download from (``http(s)://`` or ``ftp://``).
        destination: final path of the archive (its folder is pooch's cache).
        md5: expected md5, 32 hex digits (``data_ingestion.md5``).
        timeout_s: socket timeout for the connection and each read.
        progress: show a tqdm progress bar.

    Returns:
        ``destination``.

    Raises:
        Cifar10ParameterError: the md5 is not 32 hex digits, or the URL not http(s)/ftp.
        DownloadError: the URL could not be reached or the transfer broke off.
        ChecksumError: the downloaded bytes, or an existing file, have another md5.
    """
    import pooch  # imported here: only downloads need pooch (and requests)

    md5 = checked_md5(md5, required=True)
    destination = Path(destination)
    if _valid_existing_copy(destination, md5, url):
        return destination
    downloader = _downloader(url, timeout_s, progress, pooch)
    logger.info("Downloading %s to %s", url, destination)
    try:
        pooch.retrieve(url, known_hash=f"md5:{md5}", fname=destination.name,
                       path=destination.parent, downloader=downloader)
    except ValueError as error:  # pooch's hash mismatch; it has deleted the download
        got = _GOT_HASH.search(str(error))
        # One download cannot tell a transfer broken on the way from a server whose file is
        # another archive (a mirror): a retry would fail the same way for the latter.
        raise ChecksumError(
            f"Checksum mismatch for {url}: expected md5 {md5}, got "
            f"{got.group(1) if got else 'another'}. The file the server sent does not match "
            f"data_ingestion.md5 and was deleted: check that data_ingestion.url "
            f"(BNSTUDY_CIFAR10_URL) serves the archive whose md5 data_ingestion.md5 "
            f"(BNSTUDY_CIFAR10_MD5) gives. Only if both are right was the transfer corrupted, "
            f"and a new run downloads it again. Or use a local copy.\n{OFFLINE_HINT}"
        ) from error
    except OSError as error:  # requests' errors are OSErrors too
        raise DownloadError(
            f"Could not download CIFAR-10 from {url}: {type(error).__name__}: {error}. Nothing "
            f"was saved; run again to retry.\n{OFFLINE_HINT}"
        ) from error
    logger.info("Downloaded and verified %s (md5 %s)", destination, md5)
    return destination


def _valid_existing_copy(destination: Path, md5: str, url: str) -> bool:
    """Whether ``destination`` already holds the archive; a file with another md5 is an
    error (pooch would overwrite it, but it may be someone's own file)."""
    if not destination.exists():
        return False
    actual = file_md5(destination)
    if actual != md5:
        raise ChecksumError(
            f"{destination} exists but its md5 is {actual}, expected {md5}. It was left in place; "
            f"delete it (or move it away) to download a fresh copy from {url}."
        )
    logger.info("Reusing %s (md5 %s verified)", destination, md5)
    return True


def _downloader(url: str, timeout_s: float, progress: bool, pooch):
    scheme = urlparse(url).scheme
    if scheme in ("http", "https"):
        return pooch.HTTPDownloader(progressbar=progress, chunk_size=1 << 16, timeout=timeout_s)
    if scheme == "ftp":
        return pooch.FTPDownloader(progressbar=progress, chunk_size=1 << 16, timeout=timeout_s)
    raise Cifar10ParameterError(
        f"data_ingestion.url {url!r} is not an http(s):// or ftp:// URL. Fix the URL "
        f"(BNSTUDY_CIFAR10_URL), or for a file on this machine use it directly:\n{OFFLINE_HINT}"
    )
