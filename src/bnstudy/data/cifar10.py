"""Reading CIFAR-10 from its official archive or from an image-folder tree.

Plain Python and NumPy (no Kedro, no JAX), so it can be used from a script or a notebook.
This module gathers the public API of :mod:`bnstudy.data`; three sources are supported:

* the official archive ``cifar-10-python.tar.gz`` downloaded with pooch
  (:func:`download_archive`) and verified against its md5;
* a local copy of that archive, a zip of it or the extracted folder (:func:`read_python_archive`);
* an image-folder tree ``train/<class>/*.{png,jpg}``, ``test/<class>/*``, as a directory or
  a ``.tar``/``.tar.gz``/``.tgz``/``.zip`` archive of one (:func:`read_image_folder`).
  Class folders are matched to labels by alphabetical order, which for CIFAR-10 is also the
  canonical label order 0..9. Given a row selection, only the kept images are decoded.

Every reader returns a :class:`Cifar10Arrays`: images ``[N, 32, 32, 3] uint8`` (HWC, RGB)
and labels ``[N] int32`` for the train and test splits, plus the class names. Every
malformed source ends in a :class:`Cifar10FormatError` that names the file.
"""

from bnstudy.data.common import (
    CLASS_NAMES,
    IMAGE_SHAPE,
    IMAGE_SUFFIXES,
    MD5_PARAMETER,
    OFFLINE_HINT,
    SPLITS,
    ChecksumError,
    Cifar10Arrays,
    Cifar10Error,
    Cifar10FormatError,
    Cifar10ParameterError,
    DownloadError,
    RowSelector,
    SourceRows,
    checked_md5,
    file_md5,
    file_sha256,
    tree_sha256,
)
from bnstudy.data.containers import open_container
from bnstudy.data.download import download_archive
from bnstudy.data.image_folder import read_image_folder
from bnstudy.data.layout import looks_like_image_folder, select_rows
from bnstudy.data.python_archive import (
    python_archive_members,
    read_python_archive,
    reject_image_folder,
    write_python_archive,
)

__all__ = [
    "CLASS_NAMES",
    "IMAGE_SHAPE",
    "IMAGE_SUFFIXES",
    "MD5_PARAMETER",
    "OFFLINE_HINT",
    "SPLITS",
    "ChecksumError",
    "Cifar10Arrays",
    "Cifar10Error",
    "Cifar10FormatError",
    "Cifar10ParameterError",
    "DownloadError",
    "RowSelector",
    "SourceRows",
    "checked_md5",
    "download_archive",
    "file_md5",
    "file_sha256",
    "looks_like_image_folder",
    "open_container",
    "python_archive_members",
    "read_image_folder",
    "read_python_archive",
    "reject_image_folder",
    "select_rows",
    "tree_sha256",
    "write_python_archive",
]
