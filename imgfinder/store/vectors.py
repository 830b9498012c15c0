"""Append-only float16 vector files, one per embedder key, addressed by row number.

Rows are appended and fsynced before the catalog commits the transaction that references them,
so a run killed at any moment leaves at worst unreferenced rows at the end of the file. Only the
holder of the collection's writer lock appends, so two runs never hand out the same row.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from imgfinder.errors import CatalogError, StorageError


def vector_file_name(embedder_key: str) -> str:
    """A file-system-safe name that still shows which model wrote the vectors."""
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in embedder_key)[:60]
    digest = hashlib.sha1(embedder_key.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}.f16"


class VectorStore:
    """float16 rows of fixed width `dim` in one binary file."""

    def __init__(self, path: str | Path, dim: int) -> None:
        self.path = Path(path)
        self.dim = int(dim)
        self._row_bytes = self.dim * 2
        self._lock = threading.Lock()

    def __len__(self) -> int:
        try:
            return self.path.stat().st_size // self._row_bytes
        except FileNotFoundError:
            return 0

    def exists(self) -> bool:
        return self.path.is_file()

    def append(self, vectors: np.ndarray) -> np.ndarray:
        """Append rows durably and return their row numbers."""
        data = np.ascontiguousarray(vectors, dtype=np.float16)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise CatalogError(f"vectors must be [n, {self.dim}], got {list(data.shape)}")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "ab+") as handle:
                    first = self._append(handle, data)
            except OSError as exc:
                raise StorageError(
                    f"cannot write vectors to {self.path}: {exc.strerror or exc}; "
                    f"nothing was lost, free some space and run the same command again"
                ) from exc
        return np.arange(first, first + len(data), dtype=np.int64)

    def _append(self, handle, data: np.ndarray) -> int:
        """Write after the last whole row (a killed run may have left half of one); on failure
        cut the file back, so no half-written rows stay behind."""
        size = handle.seek(0, os.SEEK_END)
        size -= size % self._row_bytes
        handle.truncate(size)
        try:
            handle.write(data.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        except OSError:
            handle.truncate(size)
            raise
        return size // self._row_bytes

    def mapped(self) -> np.ndarray:
        """Every row as a read-only float16 memory map (nothing is read until used)."""
        count = len(self)
        if count == 0:
            return np.zeros((0, self.dim), dtype=np.float16)
        return np.memmap(self.path, dtype=np.float16, mode="r", shape=(count, self.dim))

    def read(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Rows as float32 (all rows when `rows` is None)."""
        count = len(self)
        wanted = None if rows is None else np.asarray(rows, dtype=np.int64)
        if wanted is not None and len(wanted) and int(wanted.max()) >= count:
            raise CatalogError(
                f"the vector file {self.path} holds {count} rows but the catalog refers to row "
                f"{int(wanted.max())}: it is damaged; run imgfinder repair"
            )
        if count == 0 or (wanted is not None and len(wanted) == 0):
            return np.zeros((0, self.dim), dtype=np.float32)
        mapped = np.memmap(self.path, dtype=np.float16, mode="r", shape=(count, self.dim))
        selected = mapped if wanted is None else mapped[wanted]
        return np.asarray(selected, dtype=np.float32)
