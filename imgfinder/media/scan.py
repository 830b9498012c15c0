"""Find media files under folders, and hash their content.

The walk never raises on a bad entry: anything it cannot use is recorded in `ScanResult.skipped`
with a reason, so an indexing run can report what it left out and why.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from imgfinder.errors import MediaError

logger = logging.getLogger(__name__)

_BASE_IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff", "tif"})
_HEIF_EXTENSIONS = frozenset({"heic", "heif"})

#: Lower-case image extensions (no dot); HEIC/HEIF only when pillow-heif can decode them.
IMAGE_EXTENSIONS: frozenset[str] = (
    _BASE_IMAGE_EXTENSIONS | _HEIF_EXTENSIONS
    if importlib.util.find_spec("pillow_heif") is not None
    else _BASE_IMAGE_EXTENSIONS
)
#: Lower-case video extensions (no dot).
VIDEO_EXTENSIONS: frozenset[str] = frozenset({"mp4", "mov", "avi", "mkv", "webm", "m4v"})

#: Folders that operating systems, NAS boxes and archivers fill with thumbnails, trash or
#: metadata; their images are copies or junk, never the user's photos. Compared case-folded.
SYSTEM_FOLDERS: frozenset[str] = frozenset(
    name.casefold()
    for name in (
        "@eaDir",
        "@Recycle",
        "#recycle",
        "#snapshot",
        "@__thumb",
        ".@__thumb",
        ".Trashes",
        ".Trash",
        ".Spotlight-V100",
        ".fseventsd",
        ".DocumentRevisions-V100",
        "$RECYCLE.BIN",
        "System Volume Information",
        "__MACOSX",
        "lost+found",
    )
)

Kind = Literal["image", "video"]
PathLike = str | os.PathLike[str]

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ScannedFile:
    """One media file found by `scan`; size and mtime let the catalog skip unchanged files."""

    path: Path
    root: Path
    kind: Kind
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """Something `scan` could not use; `path` is printable even for undecodable names."""

    path: str
    reason: str


@dataclass(slots=True)
class ScanResult:
    """Files to index, in path order, and what was left out with a reason."""

    files: list[ScannedFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def media_kind(name: str, *, include_videos: bool = True) -> Kind | None:
    """Kind of media a file name denotes by its extension (any case), or None."""
    extension = os.path.splitext(name)[1][1:].lower()
    if extension in IMAGE_EXTENSIONS:
        return "image"
    if include_videos and extension in VIDEO_EXTENSIONS:
        return "video"
    return None


def scan(
    roots: PathLike | Iterable[PathLike],
    *,
    include_videos: bool = True,
    include_hidden: bool = False,
) -> ScanResult:
    """Walk `roots` recursively and list their images (and videos), never raising on bad entries.

    Directory symlinks are followed, but each directory (by device and inode) is walked once, so
    loops terminate and overlapping roots do not list a file twice. Hidden names (leading dot)
    and `SYSTEM_FOLDERS` are left out unless `include_hidden`; a root itself is never filtered.
    Each file's `root` is the root it was found under, made absolute with `os.path.abspath`;
    a root that is a file is its own root.
    """
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    walker = _Walker(include_videos=include_videos, include_hidden=include_hidden)
    for root in roots:
        walker.walk_root(Path(os.path.abspath(os.fspath(root))))
    walker.result.files.sort(key=lambda scanned: str(scanned.path))
    walker.result.skipped.sort(key=lambda skipped: skipped.path)
    return walker.result


def content_hash(path: PathLike) -> str:
    """Hex BLAKE2b-128 of a file's bytes: the catalog key that survives renames and moves."""
    try:
        with open(path, "rb", buffering=0) as handle:
            return stream_hash(handle)
    except OSError as exc:
        raise MediaError(f"cannot read {_display(os.fspath(path))}: {_os_reason(exc)}") from exc


def stream_hash(handle: BinaryIO) -> str:
    """`content_hash` of an open file, read from its current position to the end."""
    digest = hashlib.blake2b(digest_size=16)
    buffer = bytearray(_HASH_CHUNK)
    view = memoryview(buffer)
    while count := handle.readinto(buffer):
        digest.update(view[:count])
    return digest.hexdigest()


class _Walker:
    """State of one `scan` call: filters, the directories already walked, and the result."""

    def __init__(self, *, include_videos: bool, include_hidden: bool) -> None:
        self.include_videos = include_videos
        self.include_hidden = include_hidden
        self.visited: set[tuple[int, int]] = set()
        self.result = ScanResult()

    def walk_root(self, root: Path) -> None:
        text = str(root)
        try:
            info = os.stat(text)
        except FileNotFoundError:
            self.skip(text, "broken symlink" if os.path.islink(text) else "not found")
            return
        except OSError as exc:
            self.skip(text, _os_reason(exc))
            return
        if stat.S_ISDIR(info.st_mode):
            self.walk_tree(root)
        elif stat.S_ISREG(info.st_mode):
            kind = media_kind(root.name, include_videos=self.include_videos)
            if kind is None:
                self.skip(text, "not a supported image or video type")
            else:
                self.add(root, root, kind, info)
        else:
            self.skip(text, "not a regular file or folder")

    def walk_tree(self, root: Path) -> None:
        # Depth-first with an explicit stack: deep trees cannot hit the recursion limit.
        stack = [str(root)]
        while stack:
            folder = stack.pop()
            try:
                info = os.stat(folder)
            except OSError as exc:
                self.skip(folder, _os_reason(exc))
                continue
            identity = (info.st_dev, info.st_ino)
            if identity in self.visited:
                if os.path.islink(folder):
                    self.skip(folder, "symlink to a folder already scanned (a loop or a duplicate)")
                else:
                    logger.debug("already walked %s (overlapping roots)", folder)
                continue
            self.visited.add(identity)
            try:
                with os.scandir(folder) as entries:
                    listing = sorted(entries, key=lambda entry: entry.name)
            except OSError as exc:
                self.skip(folder, _os_reason(exc))
                continue
            subfolders = []
            for entry in listing:
                if self.visit(entry, root):
                    subfolders.append(entry.path)
            # Reversed so folders pop in name order: which symlinked duplicate wins is stable.
            stack.extend(reversed(subfolders))

    def visit(self, entry: os.DirEntry[str], root: Path) -> bool:
        """Record a file entry; True when the entry is a folder to descend into."""
        name = entry.name
        if not self.include_hidden and is_hidden(name):
            return False
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
        except OSError as exc:
            self.skip(entry.path, _os_reason(exc))
            return False
        if is_dir:
            return True
        if not is_file:
            if entry.is_symlink() and not os.path.exists(entry.path):
                self.skip(entry.path, "broken symlink")
            return False
        kind = media_kind(name, include_videos=self.include_videos)
        if kind is None:
            return False
        try:
            info = entry.stat()
        except OSError as exc:
            self.skip(entry.path, _os_reason(exc))
            return False
        self.add(Path(entry.path), root, kind, info)
        return False

    def add(self, path: Path, root: Path, kind: Kind, info: os.stat_result) -> None:
        if info.st_size == 0:
            self.skip(str(path), "empty file")
            return
        self.result.files.append(ScannedFile(path, root, kind, info.st_size, info.st_mtime_ns))

    def skip(self, path: str, reason: str) -> None:
        logger.info("skipped %s: %s", _display(path), reason)
        self.result.skipped.append(Skipped(_display(path), reason))


def is_hidden(name: str) -> bool:
    """A hidden or system folder's (or file's) name, which `scan` leaves out."""
    return name.startswith(".") or name.casefold() in SYSTEM_FOLDERS


def _display(path: str) -> str:
    """A printable form of a path: undecodable bytes become `\\xNN` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    return exc.strerror or type(exc).__name__
