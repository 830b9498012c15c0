"""Append-only float16 vector files, one per embedder key, addressed by row number.

Rows are appended and fsynced before the catalog commits the transaction that references them,
so a run killed at any moment leaves at worst unreferenced rows at the end of the file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from imgfinder.errors import CatalogError


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    def __len__(self) -> int:
        return self.path.stat().st_size // self._row_bytes

    def append(self, vectors: np.ndarray) -> np.ndarray:
        """Append rows durably and return their row numbers."""
        data = np.ascontiguousarray(vectors, dtype=np.float16)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise CatalogError(f"vectors must be [n, {self.dim}], got {list(data.shape)}")
        with self._lock, open(self.path, "r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size % self._row_bytes:
                size -= size % self._row_bytes
                handle.truncate(size)
                handle.seek(size)
            first = size // self._row_bytes
            handle.write(data.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        return np.arange(first, first + len(data), dtype=np.int64)

    def read(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Rows as float32 (all rows when `rows` is None)."""
        count = len(self)
        if count == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        mapped = np.memmap(self.path, dtype=np.float16, mode="r", shape=(count, self.dim))
        selected = mapped if rows is None else mapped[np.asarray(rows, dtype=np.int64)]
        return np.asarray(selected, dtype=np.float32)
