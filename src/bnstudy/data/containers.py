"""Uniform read access to a directory, a tar archive (any compression) or a zip archive.

The readers list a container's file names first, decide what they need, and then read only
those members, in the order that is cheapest for the container (a compressed tar is read
front to back). Every failure of the underlying library (truncation, corruption, a missing
end-of-archive marker) becomes a :class:`Cifar10FormatError` naming the path.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import lzma
import mmap
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bnstudy.data.common import Cifar10Error, Cifar10FormatError

_BLOCK = tarfile.BLOCKSIZE
# What the standard library raises on damaged archives: truncation (EOFError), bad
# compressed data (zlib.error; gzip, bz2 and lzma raise OSError subclasses), bad headers,
# and zipfile's ValueError/NotImplementedError for odd entries.
_LIBRARY_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
                   EOFError, OSError, ValueError, NotImplementedError)


def _wrapped(method):
    """Turn a library error raised by a container method into a Cifar10FormatError."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Cifar10Error:
            raise
        except _LIBRARY_ERRORS as error:
            raise Cifar10FormatError(
                f"{self.path}: the {self.kind} is not readable ({type(error).__name__}: {error}); "
                "it may be truncated or corrupt: copy or download it again, or check the path."
            ) from error

    return wrapper


class Container:
    """A directory or archive: its file names and their bytes."""

    kind = "container"

    def __init__(self, path: Path):
        self.path = path

    def names(self) -> list[str]:
        """Sorted posix names of the regular files, relative to the top (no leading ``./``)."""
        raise NotImplementedError

    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        """The bytes of each named file."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the open archive, if any."""


class _Directory(Container):
    kind = "directory"

    @_wrapped
    def names(self) -> list[str]:
        return sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())

    @_wrapped
    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        return {name: (self.path / name).read_bytes() for name in names}


class _Zip(Container):
    kind = "zip archive"

    @_wrapped
    def __init__(self, path: Path):
        super().__init__(path)
        self._archive = zipfile.ZipFile(path)
        self._members = {_clean(i.filename): i for i in self._archive.infolist() if not i.is_dir()}

    def names(self) -> list[str]:
        return sorted(self._members)

    @_wrapped
    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        return {name: self._archive.read(self._members[name]) for name in names}

    def close(self) -> None:
        self._archive.close()


class _Tar(Container):
    """A tar archive, decompressed into memory (an uncompressed one is memory-mapped).

    Plain ustar/GNU headers (what tar and Python write for short names) are scanned
    directly, several times faster than :mod:`tarfile` for 60,000 small members; other
    member types (long names, pax, sparse files) fall back to tarfile.
    """

    kind = "tar archive"

    @_wrapped
    def __init__(self, path: Path):
        super().__init__(path)
        self._data = _tar_bytes(path)
        self._tarfile: tarfile.TarFile | None = None
        try:
            self._members = _scan_tar(self._data, path)
        except _NeedsTarfile:
            self._tarfile = tarfile.open(fileobj=io.BytesIO(self._data), mode="r:")
            infos = self._tarfile.getmembers()
            self._tar_infos = {_clean(m.name): m for m in infos if m.isfile()}
            self._members = {name: (m.offset_data, m.size) for name, m in self._tar_infos.items()}
            if infos:
                self._check_end_marker(infos[-1])

    def _check_end_marker(self, last: tarfile.TarInfo) -> None:
        """tarfile stops quietly at a corrupt header or where a tar is cut between two
        members, but a complete archive has two zero blocks after its last member."""
        end = last.offset_data + (-(-last.size // _BLOCK) * _BLOCK if last.isfile() else 0)
        if self._data[end : end + 2 * _BLOCK] != _ZEROS:
            raise Cifar10FormatError(
                f"{self.path}: the tar archive does not end after member {last.name} as a "
                "complete archive does: it is truncated or corrupt. Copy or download it again."
            )

    def names(self) -> list[str]:
        return sorted(self._members)

    @_wrapped
    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        out = {}
        for name in names:
            offset, size = self._members[name]
            if self._tarfile is not None:
                raw = self._tarfile.extractfile(self._tar_infos[name]).read()
            else:
                raw = bytes(self._data[offset : offset + size])
            if len(raw) != size:
                raise EOFError(f"member {name} holds {len(raw)} of {size} bytes")
            out[name] = raw
        return out

    def close(self) -> None:
        if self._tarfile is not None:
            self._tarfile.close()
        if isinstance(self._data, mmap.mmap):
            self._data.close()


_ZEROS = bytes(2 * _BLOCK)
_PLAIN_TYPES = {b"0": True, b"\0": True, b"7": True, b"1": False, b"2": False, b"3": False,
                b"4": False, b"5": False, b"6": False}  # typeflag -> holds file data


class _NeedsTarfile(Exception):
    """A header the scanner leaves to tarfile (long names, pax, sparse, base-256 sizes)."""


def _tar_bytes(path: Path) -> bytes | mmap.mmap:
    """The archive's uncompressed bytes (gzip, bzip2, xz or none)."""
    with open(path, "rb") as handle:
        magic = handle.read(6)
        for prefix, module in ((b"\x1f\x8b", gzip), (b"BZh", bz2), (b"\xfd7zXZ\x00", lzma)):
            if magic.startswith(prefix):
                with module.open(path, "rb") as stream:
                    return stream.read()
        if not magic:
            raise tarfile.ReadError("empty file")
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def _checksum_ok(header: bytes) -> bool:
    """The header checksum: the sum of its bytes, the checksum field counted as spaces
    (unsigned, or signed as some old tars wrote it)."""
    stored = header[148:156].split(b"\0", 1)[0].strip()
    if not stored or any(c not in b"01234567" for c in stored):
        return False
    expected = int(stored, 8)
    unsigned = sum(header[:148]) + 256 + sum(header[156:])
    if expected == unsigned:
        return True
    high = sum(1 for c in header[:148] + header[156:] if c >= 0x80)
    return expected == unsigned - 256 * high


def _scan_tar(data: bytes | mmap.mmap, path: Path) -> dict[str, tuple[int, int]]:
    """``{name: (data offset, size)}`` of the regular files, from the headers alone."""
    members: dict[str, tuple[int, int]] = {}
    offset = 0
    while True:
        header = data[offset : offset + _BLOCK]
        if len(header) < _BLOCK:
            if offset == 0:
                raise tarfile.ReadError("not a tar archive (too short)")
            raise EOFError(f"the archive ends inside or before the header at byte {offset}")
        if header == _ZEROS[:_BLOCK]:
            if data[offset + _BLOCK : offset + 2 * _BLOCK] != _ZEROS[:_BLOCK]:
                raise EOFError(f"the end-of-archive marker at byte {offset} is incomplete")
            return members
        typeflag = header[156:157]
        if typeflag not in _PLAIN_TYPES or header[124] & 0x80:
            raise _NeedsTarfile
        if not _checksum_ok(header):
            if offset == 0:
                raise tarfile.ReadError("not a tar archive (bad header checksum)")
            raise Cifar10FormatError(
                f"{path}: the tar header at byte {offset} is corrupt (bad checksum). Copy or "
                "download the archive again."
            )
        name = header[:100].split(b"\0", 1)[0]
        if header[257:263] == b"ustar\0" and header[345] != 0:
            name = header[345:500].split(b"\0", 1)[0] + b"/" + name
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        if _PLAIN_TYPES[typeflag]:
            members[_clean(name.decode("utf-8", "surrogateescape"))] = (offset + _BLOCK, size)
        else:
            size = 0
        if offset + _BLOCK + size > len(data):
            raise EOFError(f"member {name!r} is cut off: the archive ends inside its data")
        offset += _BLOCK + -(-size // _BLOCK) * _BLOCK


def _clean(name: str) -> str:
    """``./a//b/`` -> ``a/b`` (str methods: pathlib is slow for 60,000 names)."""
    return "/".join(part for part in name.split("/") if part and part != ".")


@contextmanager
def open_container(path: Path) -> Iterator[Container]:
    """Open ``path`` (which must exist) as a directory, zip or tar container.

    Raises:
        Cifar10FormatError: it is neither, or it is damaged (also from the container's
            methods inside the ``with`` block).
    """
    if path.is_dir():
        container: Container = _Directory(path)
    else:
        try:
            with open(path, "rb") as handle:
                magic = handle.read(4)
        except OSError as error:
            raise Cifar10FormatError(f"{path} cannot be read ({error}); check the path.") from error
        container = _Zip(path) if magic.startswith(b"PK") else _Tar(path)
    try:
        yield container
    finally:
        container.close()
