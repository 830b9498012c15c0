"""What every indexer backend shares: input checks, result padding, npz I/O, a vector store.

Kept apart from any one backend so all of them validate input and shape results alike.
"""

from __future__ import annotations

import importlib
import operator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from imgfinder.atomic import atomic_write
from imgfinder.errors import ConfigError, IndexerError, MissingExtraError
from imgfinder.indexers.base import as_queries, empty_result

DATA_FILE = "vectors.npz"
#: upper bound for one [queries, rows] block of scores (and a chunk of rows as float32), so
#: exact search memory grows with neither the number of queries nor of rows
SEARCH_BLOCK_BYTES = 64 << 20
#: queries scored together against each chunk of rows
QUERY_BLOCK = 4096
#: a filter passing at most this share of the vectors is answered by scoring only those
SCAN_SHARE = 0.05


def import_extra(module: str, package: str, extra: str) -> ModuleType:
    """Import an optional backend at use time, naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(package, extra) from exc


def positive_int(name: str, value: Any) -> int:
    """Validate an integer parameter (CLI and JSON settings hand us ints or digit strings)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"parameter {name} must be a positive integer, got {value!r}")
    return int(value)


def check_k(k: Any) -> int:
    """k must be a positive integer; a fixed-shape [nq, 0] result would hide a caller's bug."""
    try:
        k = operator.index(k)
    except TypeError:
        raise IndexerError(f"k must be an integer, got {k!r}") from None
    if k <= 0:
        raise IndexerError(f"k must be positive, got {k}")
    return k


def as_ids(ids: Any) -> np.ndarray:
    """int64[n] ids; negatives are refused because -1 marks padding in results."""
    array = np.asarray(ids)
    if array.ndim == 0:
        array = array[None]
    if array.ndim != 1:
        raise IndexerError(f"ids must be one-dimensional, got shape {list(array.shape)}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise IndexerError(f"ids must be integers, got {array.dtype}")
    if array.dtype == np.uint64 and int(array.max()) > np.iinfo(np.int64).max:
        raise IndexerError("ids must fit in int64")
    array = array.astype(np.int64, copy=False)
    if int(array.min()) < 0:
        raise IndexerError("ids must be >= 0 (-1 marks padding in results)")
    return array


def unit_rows(rows: np.ndarray, what: str) -> np.ndarray:
    """Scale float32[n, d] rows to unit length, so inner product is cosine in every backend."""
    if rows.size == 0:
        return rows
    if not np.isfinite(rows).all():
        raise IndexerError(f"{what} contain NaN or infinity")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if (norms == 0).any():
        raise IndexerError(f"{what} contain a zero vector, which has no direction")
    return np.ascontiguousarray(rows / norms, dtype=np.float32)


def unit_queries(queries: Any, dim: int) -> np.ndarray:
    """Queries checked by the contract's `as_queries`, then made unit length."""
    return unit_rows(as_queries(queries, dim), "queries")


def as_vectors(ids: Any, vectors: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate an `add` call; on duplicate ids the last row wins, as if added one by one."""
    ids = as_ids(ids)
    try:
        rows = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise IndexerError(f"vectors must be numbers: {exc}") from None
    if rows.size == 0 and len(ids) == 0:
        return ids, np.zeros((0, dim), dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2 or rows.shape[1] != dim:
        raise IndexerError(f"vectors must have shape [n, {dim}], got {list(np.shape(vectors))}")
    if len(rows) != len(ids):
        raise IndexerError(f"got {len(ids)} ids for {len(rows)} vectors")
    rows = unit_rows(rows, "vectors")
    reversed_unique, first_from_end = np.unique(ids[::-1], return_index=True)
    if len(reversed_unique) != len(ids):
        keep = np.sort(len(ids) - 1 - first_from_end)
        ids, rows = ids[keep], rows[keep]
    return ids, rows


def finish(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A backend's [nq, any] answer in the contract's shape: the k best of each row (an id
    below 0 is nothing found), descending, padded to [nq, k] with -inf/-1."""
    nq, got = ids.shape
    found = ids >= 0
    scores = np.where(found, scores, -np.inf)
    ids = np.where(found, ids, -1)
    if got > k or (got > 1 and (scores[:, 1:] > scores[:, :-1]).any()):
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(scores, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
    out_scores, out_ids = empty_result(nq, k)
    out_scores[:, : ids.shape[1]] = scores
    out_ids[:, : ids.shape[1]] = ids
    return out_scores, out_ids


def cosines(queries: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Each unit query's cosine to its found ids' stored `rows` ([nq, k, d], any length:
    float16 rows are unit only to float16's precision); -inf where no id was found."""
    norms = np.linalg.norm(rows, axis=2)
    dots = np.einsum("qd,qkd->qk", queries, rows)
    return np.where(ids >= 0, dots / np.maximum(norms, 1e-12), -np.inf).astype(np.float32)


def as_allowed(allowed: Any) -> np.ndarray | None:
    """The ids a filtered search may return, as sorted unique int64; None lets any id through."""
    return None if allowed is None else np.unique(as_ids(allowed))


def prefers_scan(allowed: int, total: int) -> bool:
    """Whether a filter keeps so few vectors that scoring just those beats an approximate
    search: exact, and cheaper than walking a graph past the many that do not pass."""
    return allowed <= SCAN_SHARE * total


def exact_search(
    vectors: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    k: int,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of unit queries against unit rows (all, or only `rows`).

    Streams over the rows in chunks, keeping a running top-k, so memory stays bounded whatever
    the number of rows; `vectors` may be a float16 memory map, converted a chunk at a time.
    """
    nq = len(queries)
    count = len(ids) if rows is None else len(rows)
    if nq == 0 or count == 0:
        return empty_result(nq, k)
    top = min(k, count)
    scores = np.empty((nq, top), dtype=np.float32)
    found = np.empty((nq, top), dtype=np.int64)
    for first in range(0, nq, QUERY_BLOCK):
        block = queries[first : first + QUERY_BLOCK]
        chunk = max(1024, SEARCH_BLOCK_BYTES // (4 * max(len(block), block.shape[1])))
        best = np.zeros((len(block), 0), dtype=np.float32)
        best_rows = np.zeros((len(block), 0), dtype=np.int64)
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            span = np.arange(start, stop) if rows is None else rows[start:stop]
            part = vectors[start:stop] if rows is None else vectors[span]
            sims = block @ np.asarray(part, dtype=np.float32).T
            sims, span = _top_columns(sims, np.broadcast_to(span, sims.shape), top)
            best, best_rows = _top_columns(
                np.concatenate([best, sims], axis=1),
                np.concatenate([best_rows, span], axis=1),
                top,
            )
        order = np.argsort(-best, axis=1, kind="stable")
        scores[first : first + len(block)] = np.take_along_axis(best, order, axis=1)
        found[first : first + len(block)] = np.take_along_axis(best_rows, order, axis=1)
    return finish(scores, ids[found], k)


def _top_columns(scores: np.ndarray, rows: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """The `top` best columns of each row of `scores` (unordered), with their `rows`."""
    if scores.shape[1] <= top:
        return scores, rows
    keep = np.argpartition(scores, scores.shape[1] - top, axis=1)[:, -top:]
    return np.take_along_axis(scores, keep, axis=1), np.take_along_axis(rows, keep, axis=1)


def load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read arrays written by `save_npz`, never unpickling, with a clear error if damaged."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in keys}
    except (OSError, KeyError, ValueError) as exc:
        raise IndexerError(f"cannot read {path}: {exc}") from exc


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write several arrays as one file, atomically, so they can never disagree on disk."""
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


class IdVectors:
    """Growable rows (float32, or float16 to halve memory) addressed by int64 id: O(1) replace,
    swap-with-last remove."""

    def __init__(self, dim: int, dtype: type = np.float32) -> None:
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.clear()

    def clear(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, self.dim), dtype=self.dtype)
        self._size = 0
        self._row: dict[int, int] = {}

    def __len__(self) -> int:
        return self._size

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self._size]

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[: self._size]

    def row_numbers(self, ids: np.ndarray) -> np.ndarray:
        """The row holding each id, -1 for ids not stored."""
        return np.fromiter((self._row.get(i, -1) for i in ids.tolist()), np.int64, len(ids))

    def rows_of(self, allowed: np.ndarray) -> np.ndarray:
        """The rows, ascending, of the ids in `allowed` that are stored."""
        return np.flatnonzero(np.isin(self.ids, allowed))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over every stored row, or only over the ids in `allowed`."""
        rows = None if allowed is None else self.rows_of(allowed)
        return exact_search(self.vectors, self.ids, queries, k, rows)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store validated rows (see `as_vectors`); known ids are overwritten in place."""
        rows = self.row_numbers(ids)
        known = rows >= 0
        self._vectors[rows[known]] = vectors[known]
        new_ids, new_vectors = ids[~known], vectors[~known]
        start, stop = self._size, self._size + len(new_ids)
        self._reserve(stop)
        self._ids[start:stop] = new_ids
        self._vectors[start:stop] = new_vectors
        self._row.update(zip(new_ids.tolist(), range(start, stop), strict=True))
        self._size = stop

    def remove(self, ids: np.ndarray) -> int:
        """Drop ids (unknown ones are ignored); returns how many were present."""
        removed = 0
        for item in ids.tolist():
            row = self._row.pop(item, None)
            if row is None:
                continue
            last = self._size - 1
            if row != last:
                moved = int(self._ids[last])
                self._ids[row] = moved
                self._vectors[row] = self._vectors[last]
                self._row[moved] = row
            self._size = last
            removed += 1
        if len(self._ids) > 1024 and self._size < len(self._ids) // 4:
            self._resize(self._size)
        return removed

    def load(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the contents with saved arrays."""
        if ids.ndim != 1 or vectors.shape != (len(ids), self.dim):
            raise IndexerError(
                f"saved vectors have shape {list(vectors.shape)} for {len(ids)} ids, "
                f"expected dim {self.dim}"
            )
        self._ids = ids.astype(np.int64, copy=True)
        self._vectors = np.ascontiguousarray(vectors, dtype=self.dtype)
        self._size = len(ids)
        self._row = dict(zip(self._ids.tolist(), range(self._size), strict=True))
        if len(self._row) != self._size:
            raise IndexerError("saved ids are not unique")

    def _reserve(self, needed: int) -> None:
        if needed > len(self._ids):
            self._resize(max(needed, 2 * len(self._ids)))

    def _resize(self, capacity: int) -> None:
        ids = np.zeros(capacity, dtype=np.int64)
        vectors = np.zeros((capacity, self.dim), dtype=self.dtype)
        ids[: self._size] = self.ids
        vectors[: self._size] = self.vectors
        self._ids, self._vectors = ids, vectors
