"""Any backend over vectors shrunk by PCA: `pca=<dims>` among an indexer's parameters.

Big collections pay for every dimension in memory, on disk and in search time; CLIP-style
vectors keep most of what tells them apart in far fewer directions. The projection is fitted
on the stored vectors themselves (their uncentred principal directions, so inner products,
not distances from a mean, are what it keeps), then every stored and query vector is
projected and made unit length again: scores are cosines in the smaller space.

The first vectors decide the directions. Until `fit_rows` have been added they are kept as
they came, and the projection is refitted to all of them at each add; from then on it is
fixed (a rebuild of the index fits it afresh).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgfinder.errors import ConfigError, IndexerError
from imgfinder.indexers.base import Indexer, as_queries
from imgfinder.indexers.common import load_npz, positive_int, save_npz

if TYPE_CHECKING:
    from imgfinder.filters import Filter

BASIS_FILE = "pca.npz"
#: rows kept as they came, and refitted to, before the projection is fixed
MIN_FIT_ROWS = 4096


def fit_basis(vectors: np.ndarray, dims: int) -> np.ndarray:
    """float32[d, dims]: the `dims` directions holding most of the vectors' energy (fewer
    vectors than `dims` leave the rest of the columns zero)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    _, _, directions = np.linalg.svd(vectors, full_matrices=False)
    basis = np.zeros((vectors.shape[1], dims), dtype=np.float32)
    found = directions[:dims].T
    basis[:, : found.shape[1]] = found
    return basis


def project(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Unit rows in the reduced space (a row with nothing there stays zero)."""
    reduced = np.asarray(vectors, dtype=np.float32) @ basis
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    return np.ascontiguousarray(reduced / np.maximum(norms, 1e-12))


class ReducedIndexer(Indexer):
    """`inner` (any backend, built at `dims`) fed projected vectors; saved with its basis."""

    def __init__(self, inner: Indexer, dim: int, dims: int) -> None:
        dims = positive_int("pca", dims)
        if dims >= dim:
            raise ConfigError(f"pca={dims} must be below the vectors' {dim} dimensions")
        super().__init__(dim, **inner.params, pca=dims)
        self.name = inner.name  # type: ignore[misc]  # saved under the backend it wraps
        self.inner = inner
        self.dims = dims
        self.fit_rows = max(MIN_FIT_ROWS, 16 * dims)
        self.basis: np.ndarray | None = None
        #: while fitting: every vector added so far, by id, as it came
        self._seen: dict[int, np.ndarray] = {}

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = as_queries(vectors, self.dim)
        if len(ids) != len(vectors):
            raise IndexerError(f"{len(ids)} ids for {len(vectors)} vectors")
        if self.basis is not None and not self._seen:
            self.inner.add(ids, project(vectors, self.basis))
            return
        self._seen.update(zip(ids.tolist(), vectors, strict=True))
        self._refit()

    def _refit(self) -> None:
        """Fit to every vector seen, index them all again; fix the basis once enough came."""
        if not self._seen:
            return
        ids = np.fromiter(self._seen, dtype=np.int64, count=len(self._seen))
        vectors = np.stack(list(self._seen.values()))
        self.basis = fit_basis(vectors, self.dims)
        self.inner.add(ids, project(vectors, self.basis))  # replaces what the old fit added
        if len(self._seen) >= self.fit_rows:
            self._seen = {}

    def remove(self, ids: np.ndarray) -> None:
        for item in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            self._seen.pop(item, None)
        self.inner.remove(ids)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.search(self._projected(queries), k, allowed)

    def search_where(
        self, queries: np.ndarray, k: int, only: Filter, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.search_where(self._projected(queries), k, only, allowed)

    def _projected(self, queries: np.ndarray) -> np.ndarray:
        """Queries in the reduced space (zeros before any fit: nothing is stored yet)."""
        queries = as_queries(queries, self.dim)
        if self.basis is None:
            return np.zeros((len(queries), self.dims), np.float32)
        return project(queries, self.basis)

    def __len__(self) -> int:
        return len(self.inner)

    def _save_data(self, directory: Path) -> None:
        self.inner._save_data(directory)
        seen = np.fromiter(self._seen, dtype=np.int64, count=len(self._seen))
        raw = np.stack(list(self._seen.values())) if self._seen else np.zeros((0, self.dim))
        basis = self.basis if self.basis is not None else np.zeros((0, self.dims), np.float32)
        save_npz(directory / BASIS_FILE, basis=basis, seen_ids=seen, seen=raw.astype(np.float32))

    def _load_data(self, directory: Path) -> None:
        self.inner._load_data(directory)
        saved = load_npz(directory / BASIS_FILE, ("basis", "seen_ids", "seen"))
        basis, seen_ids, seen = saved["basis"], saved["seen_ids"], saved["seen"]
        if basis.shape != (self.dim, self.dims) and len(basis):
            raise IndexerError(f"{directory / BASIS_FILE} does not fit {self.dim} -> {self.dims}")
        self.basis = basis.astype(np.float32) if len(basis) else None
        self._seen = dict(zip(seen_ids.tolist(), seen, strict=True))
