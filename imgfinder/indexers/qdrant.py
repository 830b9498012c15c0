"""Qdrant indexer: one collection with cosine distance, in-process or on a Qdrant server.

Where the data lives is chosen by exactly one of:
- `location=":memory:"` (default): qdrant-client's in-process engine, gone with the process;
- `path="some/folder"`: the same engine persisted to a folder (one process at a time; it
  commits every point separately, so bulk loading is slow, about 1 ms per point);
- `url="http://host:6333"`: a Qdrant server (API key from the QDRANT_API_KEY variable).

The in-process engine searches by brute force, so its scores and results are exact; a server
uses its own HNSW. `save(dir)` snapshots the points into `dir` in the in-process modes (`load`
rebuilds the collection from it unless the collection already holds exactly those points);
with a server the data stays on the server and only the parameters are recorded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from imgfinder.errors import ConfigError, IndexerError
from imgfinder.indexers.base import Indexer, empty_result
from imgfinder.indexers.common import (
    as_allowed,
    as_ids,
    as_vectors,
    check_k,
    finish,
    import_extra,
    load_npz,
    positive_int,
    save_npz,
    unit_queries,
)

POINTS_FILE = "qdrant-points.npz"
_BATCH = 512
_MEMORY = ":memory:"


class QdrantIndexer(Indexer):
    """A Qdrant collection behind the indexer contract; call `close()` to release a folder."""

    name = "qdrant"

    def __init__(
        self,
        dim: int,
        *,
        location: str = _MEMORY,
        path: str | None = None,
        url: str | None = None,
        collection: str = "imgfinder",
    ) -> None:
        chosen = [name for name, value in (("path", path), ("url", url)) if value]
        if len(chosen) > 1 or (chosen and location != _MEMORY):
            raise ConfigError("give only one of the qdrant parameters location, path and url")
        if not isinstance(collection, str) or not collection:
            raise ConfigError(f"parameter collection must be a name, got {collection!r}")
        super().__init__(
            positive_int("dim", dim),
            location=location,
            path=str(path) if path else None,
            url=url or None,
            collection=collection,
        )
        qdrant_client = import_extra("qdrant_client", "qdrant-client", "qdrant")
        self._models: Any = qdrant_client.models
        client = qdrant_client.QdrantClient
        if url:
            self._client = client(url=url, api_key=os.environ.get("QDRANT_API_KEY"))
        elif path:
            # Streamlit reruns a script on other threads; callers serialise access themselves.
            self._client = client(path=str(path), force_disable_check_same_thread=True)
        else:
            self._client = client(location=location)
        self._ensure_collection()

    @property
    def remote(self) -> bool:
        return bool(self.params["url"])

    def close(self) -> None:
        """Release the client (a folder can be opened by one client at a time)."""
        self._client.close()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = as_vectors(ids, vectors, self.dim)
        for start in range(0, len(ids), _BATCH):
            batch = self._models.Batch(
                ids=ids[start : start + _BATCH].tolist(),
                vectors=vectors[start : start + _BATCH].tolist(),
            )
            self._client.upsert(self.params["collection"], points=batch, wait=True)

    def remove(self, ids: np.ndarray) -> None:
        ids = as_ids(ids)
        for start in range(0, len(ids), _BATCH):
            selector = self._models.PointIdsList(points=ids[start : start + _BATCH].tolist())
            self._client.delete(self.params["collection"], points_selector=selector, wait=True)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        queries = unit_queries(queries, self.dim)
        allowed = as_allowed(allowed)
        # No count() first: it costs a scan in the in-process engine; short answers are padded.
        nq = len(queries)
        scores, ids = empty_result(nq, k)
        if allowed is not None and len(allowed) == 0:
            return scores, ids
        models = self._models
        only = None
        if allowed is not None:
            only = models.Filter(must=[models.HasIdCondition(has_id=allowed.tolist())])
        for start in range(0, nq, _BATCH):
            requests = [
                models.QueryRequest(query=q.tolist(), limit=k, filter=only, with_payload=False)
                for q in queries[start : start + _BATCH]
            ]
            answers = self._client.query_batch_points(self.params["collection"], requests)
            for row, answer in enumerate(answers, start):
                points = answer.points[:k]
                ids[row, : len(points)] = [point.id for point in points]
                scores[row, : len(points)] = [point.score for point in points]
        return finish(scores, ids, k)

    def __len__(self) -> int:
        return int(self._client.count(self.params["collection"], exact=True).count)

    def _save_data(self, directory: Path) -> None:
        if not self.remote:
            ids, vectors = self._points()
            save_npz(directory / POINTS_FILE, ids=ids, vectors=vectors)

    def _load_data(self, directory: Path) -> None:
        if self.remote:
            return
        saved = load_npz(directory / POINTS_FILE, ("ids", "vectors"))
        ids, vectors = as_vectors(saved["ids"], saved["vectors"], self.dim)
        current_ids, current_vectors = self._points()
        order = np.argsort(ids, kind="stable")
        if np.array_equal(current_ids, ids[order]) and np.allclose(
            current_vectors, vectors[order], atol=1e-6
        ):
            return  # a folder collection that already holds exactly the snapshot
        self._client.delete_collection(self.params["collection"])
        self._ensure_collection()
        self.add(ids, vectors)

    def _ensure_collection(self) -> None:
        models, name = self._models, self.params["collection"]
        if not self._client.collection_exists(name):
            config = models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
            self._client.create_collection(name, vectors_config=config)
            return
        config = self._client.get_collection(name).config.params.vectors
        if (
            not isinstance(config, models.VectorParams)
            or config.size != self.dim
            or config.distance != models.Distance.COSINE
        ):
            raise IndexerError(
                f"qdrant collection {name!r} exists but is not one unnamed {self.dim}-d "
                "cosine vector per point"
            )

    def _points(self) -> tuple[np.ndarray, np.ndarray]:
        """Every point as (ids ascending, vectors), read back page by page."""
        ids: list[int] = []
        vectors: list[list[float]] = []
        offset = None
        while True:
            points, offset = self._client.scroll(
                self.params["collection"],
                limit=4 * _BATCH,
                offset=offset,
                with_payload=False,
                with_vectors=True,
            )
            ids.extend(int(point.id) for point in points)
            vectors.extend(point.vector for point in points)
            if offset is None:
                break
        id_array = np.asarray(ids, dtype=np.int64)
        vector_array = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        order = np.argsort(id_array, kind="stable")
        return id_array[order], vector_array[order]
