"""Vector indexes behind one contract: exact, faiss, hnsw (nmslib), qdrant."""

from imgfinder.indexers.base import Indexer
from imgfinder.indexers.registry import INDEXERS, create_indexer

__all__ = ["INDEXERS", "Indexer", "create_indexer"]
