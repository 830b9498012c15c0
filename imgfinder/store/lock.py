"""The collection's writer lock: one index run at a time, across processes and threads.

An OS lock (`flock`) on `writer.lock` in the collection folder is released by the kernel when
its holder exits, however it exits, so a killed run never leaves a collection locked. Readers
never take it: SQLite's WAL lets them read while a writer commits.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from imgfinder.errors import BusyError, StorageError

LOCK_FILE = "writer.lock"
_POLL_SECONDS = 0.1


class WriterLock:
    """Held for a whole index run; `acquire(wait=False)` fails at once instead of waiting."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise StorageError(f"cannot open the lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def acquire(
        self,
        *,
        wait: bool = True,
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        """Take the lock; while another process holds it, wait (calling `on_wait` once) or,
        with `wait=False`, raise BusyError at once."""
        started = time.monotonic()
        told = False
        while not self.try_acquire():
            if not wait or (timeout is not None and time.monotonic() - started >= timeout):
                raise BusyError(
                    f"{self.path.parent} is being indexed by another process; wait for it to "
                    f"finish or run this again later"
                )
            if on_wait is not None and not told:
                on_wait()
                told = True
            time.sleep(_POLL_SECONDS)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
