"""Exact brute-force indexer (the original's "dummy"): the oracle the ANN backends are tested
against, and the right choice up to ~10^5 vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgfinder.indexers.base import Indexer
from imgfinder.indexers.common import (
    DATA_FILE,
    IdVectors,
    as_allowed,
    as_ids,
    as_vectors,
    check_k,
    load_npz,
    positive_int,
    save_npz,
    unit_queries,
)


class ExactIndexer(Indexer):
    """Brute-force inner product over unit vectors: exact scores, O(n·d) per query.

    BLAS does the work, so batched queries are fast; memory is one float32 row per vector.
    """

    name = "exact"

    def __init__(self, dim: int) -> None:
        super().__init__(positive_int("dim", dim))
        self._store = IdVectors(self.dim)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._store.add(*as_vectors(ids, vectors, self.dim))

    def remove(self, ids: np.ndarray) -> None:
        self._store.remove(as_ids(ids))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        queries = unit_queries(queries, self.dim)
        return self._store.search(queries, k, as_allowed(allowed))

    def __len__(self) -> int:
        return len(self._store)

    def _save_data(self, directory: Path) -> None:
        save_npz(directory / DATA_FILE, ids=self._store.ids, vectors=self._store.vectors)

    def _load_data(self, directory: Path) -> None:
        data = load_npz(directory / DATA_FILE, ("ids", "vectors"))
        self._store.load(data["ids"], data["vectors"])
