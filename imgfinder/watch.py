"""Watch indexed folders and re-index the ones whose media changed, once things go quiet.

Copying 500 photos into a folder fires thousands of file-system events. `FolderWatch` collects
them and, after `quiet` seconds without a new one, makes one `on_change` call that names the
watched folders that changed, so the caller runs one index per burst, not one per file. Only
names are looked at: a file counts when `scan` would index it by its extension.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from imgfinder.media.scan import is_hidden, media_kind

logger = logging.getLogger(__name__)

#: Events that can change what an index holds. Opened and closed-without-writing are left out
#: on purpose: the indexer reading a photo must not look like a change and start another run.
#: Attribute changes count because the catalog compares mtimes (`touch`, `cp -p`, a chmod that
#: makes an unreadable photo readable). A deleted folder may be a folder moved out to the trash.
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]

#: What browsers and download tools name a file or folder while it is still being written;
#: the rename to the final name is the event that counts.
_TEMP_SUFFIXES = frozenset({".part", ".partial", ".crdownload", ".download", ".tmp"})


@dataclass(frozen=True, slots=True)
class WatchStatus:
    """What a watch is doing, for a status line: folders, queued changes, the last run."""

    folders: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    pending: int
    runs: int
    last_run: float | None
    last_error: str


class FolderWatch:
    """Watch folders recursively; call `on_change(changed roots)` after `quiet` idle seconds.

    Calls come one at a time from a single worker thread; changes that arrive during a call are
    collected and make another call after it. An exception from `on_change` is logged and kept
    in `status().last_error` ('' again after a call that succeeds), and watching goes on.
    Changes still waiting when `stop()` is called are dropped: the next full index sees them.
    """

    def __init__(
        self,
        folders: Sequence[Path],
        on_change: Callable[[list[Path]], object],
        *,
        quiet: float = 2.0,
    ) -> None:
        # Absolute like `scan` makes a file's root, so the roots passed back match the catalog's.
        self._roots = list(dict.fromkeys(Path(os.path.abspath(folder)) for folder in folders))
        self._on_change = on_change
        self._quiet = quiet
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._state = "new"
        self._pending: dict[Path, set[str]] = {}
        self._last_event = 0.0
        self._skipped: dict[Path, str] = {}
        self._runs = 0
        self._last_run: float | None = None
        self._last_error = ""
        self._observer: BaseObserver | None = None
        self._worker: threading.Thread | None = None
        #: set as `stop` begins: an `on_change` under way may end early (a cancelled index
        #: run resumes next time), so that stopping does not wait for a whole run
        self.stopping = threading.Event()

    def start(self) -> None:
        """Start watching; a folder that cannot be watched is logged and listed as skipped."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"a FolderWatch starts once; this one is {self._state}")
            self._state = "running"
        observer = Observer()
        # Started before scheduling: then a folder that fails raises from its own `schedule`
        # and is left out, instead of failing `observer.start()` for every folder.
        observer.start()
        for root in self._roots:
            self._schedule(observer, root)
        with self._lock:
            if self._state != "running":  # stopped while starting: nothing may keep running
                observer.stop()
                observer.join()
                return
            self._observer = observer
            self._worker = threading.Thread(target=self._run, name="imgfinder-watch", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        """Stop watching and wait for the threads (and a call under way) to end; idempotent."""
        self.stopping.set()
        with self._lock:
            self._state = "stopped"
            self._wake.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
        # `on_change` itself may stop the watch; a thread cannot join itself.
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join()

    def status(self) -> WatchStatus:
        """A consistent snapshot of the watch, safe to call from any thread."""
        with self._lock:
            return WatchStatus(
                folders=tuple(str(root) for root in self._roots if root not in self._skipped),
                skipped=tuple((str(root), reason) for root, reason in self._skipped.items()),
                pending=sum(len(paths) for paths in self._pending.values()),
                runs=self._runs,
                last_run=self._last_run,
                last_error=self._last_error,
            )

    def __enter__(self) -> FolderWatch:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _schedule(self, observer: BaseObserver, root: Path) -> None:
        reason = _unwatchable(root)
        if reason is None:
            # inotify does not follow a root that is a symlink; watch the folder it points to.
            watched = os.path.realpath(root)
            try:
                observer.schedule(
                    _Handler(self, root, watched), watched, recursive=True, event_filter=_EVENTS
                )
            except OSError as exc:
                reason = exc.strerror or str(exc)
        if reason is not None:
            logger.warning("not watching %s: %s", root, reason)
            with self._lock:
                self._skipped[root] = reason

    def _note(self, root: Path, path: str) -> None:
        """Record a change under `root`; the worker wakes only when the queue was empty."""
        with self._lock:
            if self._state != "running":
                return
            if not self._pending:
                self._wake.notify_all()
            self._pending.setdefault(root, set()).add(path)
            self._last_event = time.monotonic()

    def _run(self) -> None:
        while roots := self._next_batch():
            self._call(roots)

    def _next_batch(self) -> list[Path]:
        """Wait for changes and then for `quiet` seconds without one; [] once stopped."""
        with self._lock:
            while self._state == "running":
                if not self._pending:
                    self._wake.wait()
                    continue
                remaining = self._last_event + self._quiet - time.monotonic()
                if remaining <= 0:
                    roots = sorted(self._pending)
                    self._pending.clear()
                    return roots
                self._wake.wait(remaining)
            return []

    def _call(self, roots: list[Path]) -> None:
        error = ""
        try:
            self._on_change(roots)
        except Exception as exc:
            logger.exception("re-indexing %s after a change failed", ", ".join(map(str, roots)))
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._runs += 1
            self._last_run = time.time()
            self._last_error = error


class _Handler(FileSystemEventHandler):
    """Passes the events of one watched root that `scan` would care about to its watch."""

    def __init__(self, watch: FolderWatch, root: Path, watched: str) -> None:
        self._watch = watch
        self._root = root
        self._watched = watched

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [os.fsdecode(event.src_path)]
        if isinstance(event, FileSystemMovedEvent):
            # Both ends: a download renamed to .jpg appears, a .jpg renamed to .txt leaves.
            paths.append(os.fsdecode(event.dest_path))
        for path in paths:
            if _counts(self._watched, path, is_directory=event.is_directory):
                self._watch._note(self._root, path)


def _counts(watched: str, path: str, *, is_directory: bool) -> bool:
    """Whether a change to `path` can change an index of `watched`, judged by names alone.

    Like `scan`, anything below a hidden or system folder is ignored; temporary and lock-file
    names too. A folder counts (a moved-in folder of photos); a file only with a media extension.
    """
    relative = os.path.relpath(path, watched)
    parts = [] if relative == os.curdir else relative.split(os.sep)
    for part in parts:
        if is_hidden(part) or part.startswith("~"):  # "~": an editor's lock file
            return False
        if os.path.splitext(part)[1].lower() in _TEMP_SUFFIXES:
            return False
    return is_directory or media_kind(os.path.basename(path)) is not None


def _unwatchable(root: Path) -> str | None:
    """Why `root` cannot be watched, or None; inotify would accept an unreadable one silently."""
    if not root.exists():
        return "not found"
    if not root.is_dir():
        return "not a folder"
    if not os.access(root, os.R_OK | os.X_OK):
        return "permission denied"
    return None
