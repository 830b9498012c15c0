"""The app serves a file only if it is still the indexed file, inside the collection's roots.

Paths come from the catalog, but a path's text proves nothing: an indexed image may since have
been replaced by a symlink to a file elsewhere, or by other content. So a served file is opened
first and what was opened is checked: its real path (the kernel's, after every symlink) lies
inside the real path of one of the collection's roots, and it still has the indexed size and
mtime, or else the indexed content hash. There is no window between the check and the read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import BinaryIO

from imgfinder.errors import ConfigError
from imgfinder.media.scan import stream_hash
from imgfinder.store.catalog import FileRecord


class UnsafePathError(ConfigError):
    """A file outside every root of the collection, or no longer the indexed one, was asked for."""


def is_under(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True when `path` is `root` or inside it, compared lexically after normalisation
    (`..` components are collapsed first, so they cannot climb out)."""
    base = os.path.normpath(os.path.abspath(os.fspath(root)))
    target = os.path.normpath(os.path.abspath(os.fspath(path)))
    try:
        return os.path.commonpath([base, target]) == base
    except ValueError:  # different drives, or a mix of absolute and relative paths
        return False


def open_indexed(record: FileRecord | None, roots: Iterable[str | os.PathLike[str]]) -> BinaryIO:
    """Open an indexed file for reading, refused unless it is inside `roots` and unchanged.

    `record` is the catalog's entry for the path (None when the path is not in the catalog).
    """
    if record is None or "\x00" in record.path:
        raise UnsafePathError("this file is not inside any folder of the collection")
    try:
        handle = open(record.path, "rb")  # noqa: SIM115 - handed to the caller, closed there
    except FileNotFoundError:
        raise UnsafePathError("this file no longer exists; re-index the folder") from None
    except OSError as exc:
        raise UnsafePathError(f"this file cannot be opened: {exc.strerror or exc}") from None
    try:
        _check_opened(handle, record, roots)
    except BaseException:
        handle.close()
        raise
    return handle


def _check_opened(
    handle: BinaryIO, record: FileRecord, roots: Iterable[str | os.PathLike[str]]
) -> None:
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError("this is not a regular file")
    real = _opened_path(handle, record.path, info)
    if not any(is_under(real, os.path.realpath(root)) for root in roots):
        raise UnsafePathError("this file is not inside any folder of the collection")
    if (info.st_size, info.st_mtime_ns) != (record.size, record.mtime_ns):
        if stream_hash(handle) != record.content_hash:
            raise UnsafePathError("this file changed since it was indexed; re-index the folder")
        handle.seek(0)


def _opened_path(handle: BinaryIO, path: str, info: os.stat_result) -> str:
    """The real path of the file `handle` has open: the kernel's own answer where it gives one,
    else the resolved path, accepted only if it is the very same file (device and inode)."""
    try:
        return os.readlink(f"/proc/self/fd/{handle.fileno()}")
    except OSError:
        real = os.path.realpath(path)
        try:
            again = os.stat(real)
        except OSError:
            again = None
        if again is None or (again.st_dev, again.st_ino) != (info.st_dev, info.st_ino):
            raise UnsafePathError("this file changed while it was opened; try again") from None
        return real
