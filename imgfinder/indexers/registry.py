"""Indexers by name, with a description and default parameters each, and one factory.

The backend modules import faiss, nmslib and qdrant_client only when an indexer is built, so
importing this registry (and listing it in a UI) costs nothing and needs no optional extra.
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

from imgfinder.errors import ConfigError
from imgfinder.indexers.base import Indexer
from imgfinder.indexers.common import positive_int
from imgfinder.indexers.exact import ExactIndexer
from imgfinder.indexers.faiss import FaissIndexer
from imgfinder.indexers.hnsw import HnswIndexer
from imgfinder.indexers.qdrant import QdrantIndexer
from imgfinder.indexers.reduced import ReducedIndexer
from imgfinder.indexers.reranked import RerankedIndexer

INDEXERS: dict[str, type[Indexer]] = {
    cls.name: cls for cls in (ExactIndexer, FaissIndexer, HnswIndexer, QdrantIndexer)
}

DESCRIPTIONS: dict[str, str] = {
    "exact": 'Exact (the original\'s "dummy"): brute force, the oracle',
    "faiss": "FAISS: any index_factory string (Flat, HNSW32, IVF1024,Flat, IVF256,PQ32, ...)",
    "hnsw": "HNSW (nmslib): approximate graph search, fast on large collections",
    "qdrant": "Qdrant: in-process (memory or local folder) or a remote Qdrant server",
}


def _keyword_defaults(cls: type[Indexer]) -> dict[str, Any]:
    """A backend's parameters are its constructor's keyword-only arguments: one source of truth."""
    signature = inspect.signature(cls.__init__)
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    name: _keyword_defaults(cls) for name, cls in INDEXERS.items()
}


#: parameters every backend takes (each wraps it), kept when `auto` chooses the backend
ANY_BACKEND = ("pca", "rerank")
#: not a backend: the choice `SearchModel` makes by the collection's size when asked for it
AUTO = "auto"
#: `auto` keeps exact search up to this many vectors: about 30 ms a query on 2 cores, where
#: 10^6 take 135 ms (bench/results/scale*.md)
EXACT_UP_TO = 250_000
#: above it an HNSW graph over 8-bit codes: at 10^6, recall@10 0.963 in 1.4 ms and under 1 GB
AUTO_APPROXIMATE: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("faiss", "faiss", {"factory": "HNSW32_SQ8", "efSearch": 256}),
    ("hnsw", "nmslib", {"efSearch": 256}),
)
AUTO_DESCRIPTION = (
    f"Automatic: exact up to {EXACT_UP_TO:,} items, an HNSW graph (FAISS, 8-bit codes) above"
)
#: what a search may be asked to use
CHOICES = (AUTO, *INDEXERS)


def choose_indexer(count: int) -> tuple[str, dict[str, Any]]:
    """What `auto` uses for `count` vectors: exact while that is fast enough, else the first
    approximate backend that is installed (exact when none is)."""
    if count > EXACT_UP_TO:
        for name, module, params in AUTO_APPROXIMATE:
            if importlib.util.find_spec(module) is not None:
                return name, dict(params)
    return "exact", {}


def describe_indexer(name: str, params: dict[str, Any]) -> str:
    """ "faiss (factory HNSW32_SQ8, efSearch 256)": a backend and the parameters it was given."""
    given = ", ".join(f"{key} {value}" for key, value in sorted(params.items()))
    return f"{name} ({given})" if given else name


def create_indexer(name: str, dim: int, **params: Any) -> Indexer:
    """Build an empty indexer; raises ConfigError for unknown names or parameters and
    MissingExtraError when the backend's package is not installed. Any backend takes
    `pca=<dims>`: it then holds the vectors reduced to that many dimensions; and
    `rerank=<factor>`: its candidates are scored again from the stored vectors."""
    if params.get("rerank"):
        factor = params.pop("rerank")
        return RerankedIndexer(create_indexer(name, dim, **params), factor)
    params.pop("rerank", None)
    if params.get("pca"):
        dims = positive_int("pca", params.pop("pca"))
        return ReducedIndexer(create_indexer(name, dims, **params), positive_int("dim", dim), dims)
    params.pop("pca", None)
    cls = INDEXERS.get(name)
    if cls is None:
        raise ConfigError(f"unknown indexer {name!r}; choose one of: {', '.join(INDEXERS)}")
    unknown = sorted(set(params) - set(DEFAULT_PARAMS[name]))
    if unknown:
        known = ", ".join(DEFAULT_PARAMS[name]) or "none"
        raise ConfigError(
            f"indexer {name!r} has no parameter {', '.join(unknown)}; its parameters: {known}"
        )
    return cls(positive_int("dim", dim), **params)
