"""Any backend's candidates scored again from the stored vectors: `rerank=<factor>`.

PQ and 8-bit codes rank well enough to hold the true top k among a few times k candidates,
but their own scores are approximate (a threshold or a confidence read from them would be
off) and their order within those candidates is rough. This asks the backend for `factor`
times k candidates and scores each again by its exact cosine to the vector the collection
stores for it (float16 rows, memory-mapped: only the candidates' rows are read), so the
index itself can keep only compact codes: IVF-PQ or a plain 8-bit store (FAISS `SQ8`) in a
fraction of the memory, with exact scores for what it returns.

The stored vectors come from whoever owns them (`read_vectors_from`): a collection's search
model hands over its vector file; the index never keeps a second copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgfinder.errors import IndexerError
from imgfinder.indexers.base import Indexer
from imgfinder.indexers.common import check_k, cosines, finish, positive_int, unit_queries

if TYPE_CHECKING:
    from imgfinder.filters import Filter

#: ids (none negative) -> their stored vectors as float32 rows, NaN rows for ids the owner
#: does not hold (a candidate the backend kept after its item was removed: not found)
VectorSource = Callable[[np.ndarray], np.ndarray]
#: candidate rows read and scored together
_ROWS_AT_ONCE = 65536


class RerankedIndexer(Indexer):
    """`inner` asked for `factor` x k candidates, the best k of them by exact cosine."""

    def __init__(self, inner: Indexer, factor: int) -> None:
        factor = positive_int("rerank", factor)
        super().__init__(inner.dim, **inner.params, rerank=factor)
        self.name = inner.name  # type: ignore[misc]  # saved under the backend it wraps
        self.inner = inner
        self.factor = factor
        self._vectors: VectorSource | None = None

    def read_vectors_from(self, source: VectorSource) -> None:
        """Score candidates with the vectors `source` gives for their ids from now on."""
        self._vectors = source

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.inner.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> None:
        self.inner.remove(ids)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._rescored(queries, k, lambda q, wider: self.inner.search(q, wider, allowed))

    def search_where(
        self, queries: np.ndarray, k: int, only: Filter, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._rescored(
            queries, k, lambda q, wider: self.inner.search_where(q, wider, only, allowed)
        )

    def _rescored(
        self, queries: np.ndarray, k: int, candidates: Callable[[np.ndarray, int], Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best k by exact cosine of the `factor` x k ids `candidates(queries, wider)`
        gives for each query."""
        k = check_k(k)
        queries = unit_queries(queries, self.dim)
        if self._vectors is None:
            raise IndexerError(
                "re-ranking needs the stored vectors: search it through a collection"
            )
        wider = max(k, min(k * self.factor, len(self.inner)))
        _, ids = candidates(queries, wider)
        scores = np.full(ids.shape, -np.inf, dtype=np.float32)
        # a block of queries at a time, so the rows read stay bounded however deep the search
        step = max(1, _ROWS_AT_ONCE // wider)
        for start in range(0, len(queries), step):
            block = ids[start : start + step]
            found = block >= 0
            rows = np.zeros((*block.shape, self.dim), dtype=np.float32)
            if found.any():
                rows[found] = self._vectors(block[found])
                block[np.isnan(rows[..., 0])] = -1  # a view: those ids are no longer found
            scores[start : start + step] = cosines(queries[start : start + step], rows, block)
        return finish(scores, ids, k)

    def set_search_params(self, **params: Any) -> None:
        """Change the factor (`rerank`) and the backend's own query-time knobs."""
        if "rerank" in params:
            self.factor = positive_int("rerank", params.pop("rerank"))
        if params:
            tune = getattr(self.inner, "set_search_params", None)
            if tune is None:
                raise IndexerError(f"{self.inner.name} has no query-time parameters")
            tune(**params)
        self.params = {**self.inner.params, "rerank": self.factor}  # what a save records

    def __len__(self) -> int:
        return len(self.inner)

    def close(self) -> None:
        closer = getattr(self.inner, "close", None)
        if closer is not None:
            closer()

    def _save_data(self, directory: Path) -> None:
        self.inner._save_data(directory)

    def _load_data(self, directory: Path) -> None:
        self.inner._load_data(directory)
