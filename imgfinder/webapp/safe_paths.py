"""The app serves or opens a file only if it lies under one of its collection's roots.

Paths come from the catalog, but the check runs at the point of use anyway, so a bug or a
tampered session value can never turn the app into a reader of arbitrary files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from imgfinder.errors import ConfigError


class UnsafePathError(ConfigError):
    """A path outside every root of the collection was asked for."""


def is_under(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True when `path` is `root` or inside it, compared lexically after normalisation.

    Lexical on purpose: indexing follows symlinked folders inside a root, and those files must
    stay reachable; `..` components are collapsed first, so they cannot climb out.
    """
    base = os.path.normpath(os.path.abspath(os.fspath(root)))
    target = os.path.normpath(os.path.abspath(os.fspath(path)))
    try:
        return os.path.commonpath([base, target]) == base
    except ValueError:  # different drives, or a mix of absolute and relative paths
        return False


def safe_path(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]]) -> Path:
    """`path` as a Path if it is an existing regular file under one of `roots`; else raise."""
    text = os.fspath(path)
    if "\x00" in text or not any(is_under(text, root) for root in roots):
        raise UnsafePathError("this file is not inside any folder of the collection")
    resolved = Path(os.path.normpath(os.path.abspath(text)))
    if not resolved.is_file():
        raise UnsafePathError("this file no longer exists; re-index the folder")
    return resolved
