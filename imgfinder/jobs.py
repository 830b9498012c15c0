"""Work the service runs in background threads: index runs and model downloads.

Each job keeps a status snapshot under a lock; the shells poll it (the page's progress bars,
the API's polling and server-sent events) while searches go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imgfinder.embedders.registry import pull
from imgfinder.errors import ImgFinderError
from imgfinder.indexing import Progress
from imgfinder.media.scan import Skipped
from imgfinder.search import SearchModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a background indexing run."""

    collection: str
    folder: str
    state: str  # running | done | cancelled | failed
    phase: str = "scan"
    done: int = 0
    total: int = 0
    elapsed: float = 0.0
    rate: float | None = None
    eta: float | None = None
    summary: dict[str, Any] | None = None
    skipped: tuple[Skipped, ...] = ()
    error: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


class BackgroundJob:
    """Work in a daemon thread of its own (`_run`), whose status is read under `_lock`."""

    def __init__(self, name: str) -> None:
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """True when the work has finished (used by tests and at shutdown)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        raise NotImplementedError


class IndexJob(BackgroundJob):
    """Indexes one folder into a collection in a thread; progress is read with `status()`."""

    def __init__(self, model: SearchModel, folder: Path) -> None:
        super().__init__(f"imgfinder-index-{model.collection.name}")
        self.model = model
        self.collection = str(model.collection.dir)
        self.folder = folder
        self._cancel = threading.Event()
        self._started = time.monotonic()
        self._status = JobStatus(self.collection, str(folder), "running")
        self._phase_started = self._started

    def cancel(self) -> None:
        self._cancel.set()

    def status(self) -> JobStatus:
        with self._lock:
            if not self._status.running:
                return self._status
            return replace(self._status, elapsed=time.monotonic() - self._started)

    def _progress(self, event: Progress) -> None:
        now = time.monotonic()
        with self._lock:
            if event.phase != self._status.phase:
                self._phase_started = now
            spent = now - self._phase_started
            rate = event.done / spent if event.done and spent > 0.2 else None
            eta = (event.total - event.done) / rate if rate else None
            self._status = replace(
                self._status,
                phase=event.phase,
                done=event.done,
                total=event.total,
                rate=rate,
                eta=eta,
            )

    def _run(self) -> None:
        try:
            report = self.model.index(
                [self.folder], progress=self._progress, cancel=self._cancel, wait=False
            )
        except ImgFinderError as exc:
            self._finish(state="failed", error=str(exc))
        except Exception:
            log.exception("indexing %s failed", self.folder)
            self._finish(state="failed", error="indexing stopped on an unexpected error")
        else:
            self._finish(
                state="cancelled" if report.cancelled else "done",
                summary=report.summary(),
                skipped=tuple(report.skipped),
            )

    def _finish(self, **changes: Any) -> None:
        with self._lock:
            elapsed = time.monotonic() - self._started
            self._status = replace(self._status, eta=None, elapsed=elapsed, **changes)


@dataclass(frozen=True)
class PullStatus:
    """A snapshot of a model download: files done of total, the one under way."""

    key: str
    state: str  # running | done | failed
    done: int = 0
    total: int = 0
    current: str = ""
    error: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"


class PullJob(BackgroundJob):
    """Downloads one model's files in a thread; progress is read with `status()`."""

    def __init__(
        self, key: str, model_dir: Path | None, on_done: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(f"imgfinder-pull-{key}")
        self.key = key
        self.model_dir = model_dir
        self._on_done = on_done
        self._status = PullStatus(key, "running")

    def status(self) -> PullStatus:
        with self._lock:
            return self._status

    def _progress(self, done: int, total: int, current: str) -> None:
        with self._lock:
            self._status = replace(self._status, done=done, total=total, current=current)

    def _run(self) -> None:
        try:
            pull(self.key, model_dir=self.model_dir, progress=self._progress)
        except ImgFinderError as exc:
            with self._lock:
                self._status = replace(self._status, state="failed", error=str(exc))
        except Exception:
            log.exception("pulling %s failed", self.key)
            with self._lock:
                self._status = replace(
                    self._status,
                    state="failed",
                    error="the download stopped on an unexpected error",
                )
        else:
            self._on_done()
            with self._lock:
                self._status = replace(self._status, state="done", current="")
