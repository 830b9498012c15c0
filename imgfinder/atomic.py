"""Atomic file writes: temp file in the same folder, fsync, os.replace.

A temp file's name carries its writer's pid, so the temp files of a process that was killed
mid-write can be told from those being written right now, and swept.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write` on a temp file next to `path`, then atomically move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_file(path: str | Path, make: Callable[[str], None]) -> None:
    """For libraries that only write to a file name: `make(tmp_name)` then replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        make(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


TEMP_SUFFIX = ".tmp"


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def orphaned_temp_files(directory: str | Path) -> list[Path]:
    """Temp files under `directory` whose writing process is gone (killed mid-write)."""
    orphans = []
    for folder, _, names in os.walk(directory):
        for name in names:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX) and not _writer_alive(name):
                orphans.append(Path(folder) / name)
    return orphans


def _writer_alive(name: str) -> bool:
    pid = name[: -len(TEMP_SUFFIX)].rsplit(".", 2)[-2]
    if not pid.isdigit():
        return False  # not one of ours, or written before names carried a pid
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def _umask_mode() -> int:
    """The mode a plain `open()` would give a new file (mkstemp makes them owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
