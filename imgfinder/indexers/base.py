"""The indexer contract shared by every backend (see DESIGN.md, Core contracts)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from imgfinder.atomic import atomic_write_text

if TYPE_CHECKING:
    from imgfinder.filters import Filter

META_FILE = "indexer.json"


class Indexer(ABC):
    """Maps int64 ids to L2-normalised float32 vectors and answers top-k cosine queries.

    `search` always returns arrays of shape [nq, k]: scores are cosine similarities sorted
    descending, padded with -inf where fewer than k vectors exist; ids are padded with -1.
    With `allowed` (an array of ids), only those ids can be returned, and k of them are when
    k of them are stored: the filter is applied inside the search, not to its top k.
    """

    name: ClassVar[str]

    def __init__(self, dim: int, **params: Any) -> None:
        self.dim = int(dim)
        self.params = dict(params)

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) vectors under the given ids."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None:
        """Forget the given ids; unknown ids are ignored."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores float32[nq, k], ids int64[nq, k]), of `allowed` ids only if given."""

    def search_where(
        self, queries: np.ndarray, k: int, only: Filter, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` of the items passing `only`, whose ids are `allowed`. A backend that can
        test the filter on what it stores with each item (Qdrant's payload) overrides this;
        the others search among `allowed`."""
        return self.search(queries, k, allowed)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _save_data(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_data(self, directory: Path) -> None: ...

    def save(self, directory: str | Path) -> None:
        """Write the index into `directory` (created if needed); atomic per file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_data(directory)
        meta = {"name": self.name, "dim": self.dim, "params": self.params}
        atomic_write_text(directory / META_FILE, json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> Indexer:
        """Load an index saved by `save`, whatever its backend."""
        from imgfinder.indexers.registry import create_indexer

        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        indexer = create_indexer(meta["name"], meta["dim"], **meta["params"])
        indexer._load_data(directory)
        return indexer


def innermost(index: Indexer) -> Indexer:
    """The backend under any wrappers (`rerank`, `pca`), or `index` itself."""
    while (inner := getattr(index, "inner", None)) is not None:
        index = inner
    return index


def empty_result(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrays of the fixed result shape, fully padded."""
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)


def as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    """Validate and coerce queries to float32[nq, dim]."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        from imgfinder.errors import IndexerError

        raise IndexerError(f"queries must have shape [n, {dim}], got {list(q.shape)}")
    return np.ascontiguousarray(q)
