"""Indexers by name, with a description and default parameters each, and one factory.

The backend modules import faiss, nmslib and qdrant_client only when an indexer is built, so
importing this registry (and listing it in a UI) costs nothing and needs no optional extra.
"""

from __future__ import annotations

import inspect
from typing import Any

from imgfinder.errors import ConfigError
from imgfinder.indexers.base import Indexer
from imgfinder.indexers.common import positive_int
from imgfinder.indexers.exact import ExactIndexer
from imgfinder.indexers.faiss import FaissIndexer
from imgfinder.indexers.hnsw import HnswIndexer
from imgfinder.indexers.qdrant import QdrantIndexer

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


def create_indexer(name: str, dim: int, **params: Any) -> Indexer:
    """Build an empty indexer; raises ConfigError for unknown names or parameters and
    MissingExtraError when the backend's package is not installed."""
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
