"""Qdrant indexer: one collection with cosine distance, in-process or on a Qdrant server.

Where the data lives is chosen by exactly one of:
- `location=":memory:"` (default): qdrant-client's in-process engine, gone with the process;
- `path="some/folder"`: the same engine persisted to a folder (one process at a time; it
  commits every point separately, so bulk loading is slow, about 1 ms per point);
- `url="http://host:6333"`: a Qdrant server (API key from the QDRANT_API_KEY variable), each
  call given `timeout` seconds and tried `retries` more times when the server cannot be
  reached or answers 5xx; then one sentence says so.

The in-process engine searches by brute force, so its scores and results are exact; a server
uses its own HNSW, built with `hnsw_m` and `hnsw_ef_construct` and searched with `hnsw_ef`,
over vectors kept in RAM or `on_disk`, optionally scalar-quantised to int8 (`quantization`,
searched with a re-score on the original vectors). `save(dir)` snapshots the points into
`dir` in the in-process modes (`load` rebuilds the collection from it unless the collection
already holds exactly those points); with a server the data stays on the server and only the
parameters are recorded.

When its owner lends it where items are (`read_payload_from`; a collection's search model
does), each point carries a payload: item id, kind, path, video id and time, and every file
holding it with its folders and date. Payload indexes on kind, video, folder and date let a
server filter inside its graph search (`search_where`) instead of being sent the id of every
item that passes; the owner keeps the payload current as files move (`refresh_payload`).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from imgfinder.errors import ConfigError, IndexerError
from imgfinder.filters import Filter
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
QUANTIZATIONS = ("none", "int8")
#: seconds before the first retry of a call the server did not answer; doubled each time
RETRY_PAUSE = 0.2
#: ids -> each one's payload (see `payload`)
PayloadSource = Callable[[np.ndarray], list[dict[str, Any]]]
#: what the payload is indexed on, as Qdrant names the fields and their types
PAYLOAD_INDEXES = {
    "kind": "keyword",
    "video": "integer",
    "files[].folders": "keyword",
    "files[].date": "float",
    "files[].mtime": "float",
}
_EPOCH = datetime(1970, 1, 1)


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
        timeout: int = 10,
        retries: int = 3,
        hnsw_m: int | None = None,
        hnsw_ef_construct: int | None = None,
        hnsw_ef: int | None = None,
        quantization: str = "none",
        on_disk: bool = False,
    ) -> None:
        chosen = [name for name, value in (("path", path), ("url", url)) if value]
        if len(chosen) > 1 or (chosen and location != _MEMORY):
            raise ConfigError("give only one of the qdrant parameters location, path and url")
        if not isinstance(collection, str) or not collection:
            raise ConfigError(f"parameter collection must be a name, got {collection!r}")
        if quantization not in QUANTIZATIONS:
            raise ConfigError(f"quantization is one of {', '.join(QUANTIZATIONS)}")
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"parameter retries must be 0 or more, got {retries!r}")
        graph = {"hnsw_m": hnsw_m, "hnsw_ef_construct": hnsw_ef_construct, "hnsw_ef": hnsw_ef}
        super().__init__(
            positive_int("dim", dim),
            location=location,
            path=str(path) if path else None,
            url=url or None,
            collection=collection,
            timeout=positive_int("timeout", timeout),
            retries=retries,
            **{
                name: None if value is None else positive_int(name, value)
                for name, value in graph.items()
            },
            quantization=quantization,
            on_disk=bool(on_disk),
        )
        qdrant_client = import_extra("qdrant_client", "qdrant-client", "qdrant")
        self._models: Any = qdrant_client.models
        self._errors: Any = qdrant_client.http.exceptions
        client = qdrant_client.QdrantClient
        if url:
            self._client = client(
                url=url,
                api_key=os.environ.get("QDRANT_API_KEY"),
                timeout=timeout,
                check_compatibility=False,  # the first call says whether the server answers
            )
        elif path:
            # Streamlit reruns a script on other threads; callers serialise access themselves.
            self._client = client(path=str(path), force_disable_check_same_thread=True)
        else:
            self._client = client(location=location)
        self._payloads: PayloadSource | None = None
        self._ensure_collection()

    @property
    def remote(self) -> bool:
        return bool(self.params["url"])

    def close(self) -> None:
        """Release the client (a folder can be opened by one client at a time)."""
        self._client.close()

    def read_payload_from(self, source: PayloadSource) -> None:
        """Give every point added from now on the payload `source` gives for its id."""
        self._payloads = source

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = as_vectors(ids, vectors, self.dim)
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            batch = self._models.Batch(
                ids=chunk.tolist(),
                vectors=vectors[start : start + _BATCH].tolist(),
                payloads=None if self._payloads is None else self._payloads(chunk),
            )
            self._call("upsert", self.params["collection"], points=batch, wait=True)

    def refresh_payload(self, ids: np.ndarray) -> None:
        """Write the payload of `ids` again (their files moved, or they had none)."""
        if self._payloads is None:
            return
        ids = as_ids(ids)
        models = self._models
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            operations = [
                models.OverwritePayloadOperation(
                    overwrite_payload=models.SetPayload(payload=body, points=[int(item)])
                )
                for item, body in zip(chunk.tolist(), self._payloads(chunk), strict=True)
            ]
            self._call("batch_update_points", self.params["collection"], operations, wait=True)

    def without_payload(self) -> np.ndarray:
        """The ids of points with no payload (added before one was lent, or loaded from a
        snapshot that keeps vectors only), ascending."""
        models = self._models
        empty = models.Filter(
            must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="kind"))]
        )
        return self._ids(empty)

    def stored_ids(self) -> np.ndarray:
        """The id of every point the collection holds, ascending."""
        return self._ids(None)

    def _ids(self, only: Any) -> np.ndarray:
        """The ids of the points passing the Qdrant filter `only` (None: all), ascending."""
        ids: list[int] = []
        offset = None
        while True:
            points, offset = self._call(
                "scroll",
                self.params["collection"],
                scroll_filter=only,
                limit=8 * _BATCH,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            ids.extend(int(point.id) for point in points)
            if offset is None:
                return np.sort(np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        ids = as_ids(ids)
        for start in range(0, len(ids), _BATCH):
            selector = self._models.PointIdsList(points=ids[start : start + _BATCH].tolist())
            self._call("delete", self.params["collection"], points_selector=selector, wait=True)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        queries = unit_queries(queries, self.dim)
        allowed = as_allowed(allowed)
        # No count() first: it costs a scan in the in-process engine; short answers are padded.
        if allowed is not None and len(allowed) == 0:
            return empty_result(len(queries), k)
        only = None
        if allowed is not None:
            only = self._models.Filter(must=[self._models.HasIdCondition(has_id=allowed.tolist())])
        return self._query(queries, k, only)

    def search_where(
        self, queries: np.ndarray, k: int, only: Filter, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` of the items passing `only`, told to the server as payload conditions
        rather than as the ids that pass (`allowed`, used where the payload cannot say it: a
        class, or no payload lent)."""
        if only.label is not None or self._payloads is None:
            return self.search(queries, k, allowed)
        k = check_k(k)
        queries = unit_queries(queries, self.dim)
        if len(allowed) == 0:
            return empty_result(len(queries), k)
        return self._query(queries, k, payload_filter(self._models, only))

    def _query(self, queries: np.ndarray, k: int, only: Any) -> tuple[np.ndarray, np.ndarray]:
        """The top k of each query among the points passing the Qdrant filter `only`."""
        nq = len(queries)
        scores, ids = empty_result(nq, k)
        models = self._models
        params = self._search_params()
        for start in range(0, nq, _BATCH):
            requests = [
                models.QueryRequest(
                    query=q.tolist(), limit=k, filter=only, params=params, with_payload=False
                )
                for q in queries[start : start + _BATCH]
            ]
            answers = self._call("query_batch_points", self.params["collection"], requests)
            for row, answer in enumerate(answers, start):
                points = answer.points[:k]
                ids[row, : len(points)] = [point.id for point in points]
                scores[row, : len(points)] = [point.score for point in points]
        return finish(scores, ids, k)

    def __len__(self) -> int:
        return int(self._call("count", self.params["collection"], exact=True).count)

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
        self._call("delete_collection", self.params["collection"])
        self._ensure_collection()
        self.add(ids, vectors)

    def _ensure_collection(self) -> None:
        models, name, params = self._models, self.params["collection"], self.params
        if not self._call("collection_exists", name):
            config = models.VectorParams(
                size=self.dim, distance=models.Distance.COSINE, on_disk=params["on_disk"] or None
            )
            graph = models.HnswConfigDiff(
                m=params["hnsw_m"], ef_construct=params["hnsw_ef_construct"]
            )
            quantized = None
            if params["quantization"] == "int8":
                scalar = models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, always_ram=True
                )
                quantized = models.ScalarQuantization(scalar=scalar)
            self._call(
                "create_collection",
                name,
                vectors_config=config,
                hnsw_config=graph,
                quantization_config=quantized,
            )
            self._index_payload()
            return
        found = self._call("get_collection", name)
        config = found.config.params.vectors
        if (
            not isinstance(config, models.VectorParams)
            or config.size != self.dim
            or config.distance != models.Distance.COSINE
        ):
            raise IndexerError(
                f"qdrant collection {name!r} exists but is not one unnamed {self.dim}-d "
                "cosine vector per point"
            )
        if self.remote and set(PAYLOAD_INDEXES) - set(found.payload_schema or {}):
            self._index_payload()  # a collection made before imgfinder kept payloads

    def _index_payload(self) -> None:
        """Create the payload indexes a server lacks (the in-process engine filters without
        them and says so in a warning, which is not news here)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Payload indexes have no effect")
            for field, schema in PAYLOAD_INDEXES.items():
                self._call(
                    "create_payload_index",
                    self.params["collection"],
                    field,
                    field_schema=self._models.PayloadSchemaType(schema),
                    wait=True,
                )

    def _search_params(self) -> Any:
        """The server's search settings: the graph's breadth, and a re-score on the original
        vectors when they are quantised (the in-process engine, exact, ignores both)."""
        models, params = self._models, self.params
        rescore = None
        if params["quantization"] == "int8":
            rescore = models.QuantizationSearchParams(rescore=True)
        if params["hnsw_ef"] is None and rescore is None:
            return None
        return models.SearchParams(hnsw_ef=params["hnsw_ef"], quantization=rescore)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One client call, tried again (after a pause that doubles) while the server cannot be
        reached or answers 5xx; then an IndexerError in one sentence."""
        where = self.params["url"] or "in this process"
        attempts = self.params["retries"] + 1
        for attempt in range(attempts):
            try:
                return getattr(self._client, method)(*args, **kwargs)
            except self._errors.UnexpectedResponse as exc:
                if exc.status_code is None or exc.status_code < 500:
                    raise IndexerError(
                        f"the Qdrant server at {where} refused {method}: HTTP {exc.status_code} "
                        f"{exc.reason_phrase} (is QDRANT_API_KEY right?)"
                    ) from exc
                failure: Exception = exc
            except self._errors.ResponseHandlingException as exc:
                failure = exc
            if attempt + 1 < attempts:
                time.sleep(RETRY_PAUSE * 2**attempt)
        reason = str(getattr(failure, "source", None) or failure).strip() or type(failure).__name__
        raise IndexerError(
            f"the Qdrant server at {where} did not answer {method} after {attempts} tries "
            f"({reason}); is it running?"
        ) from failure

    def _points(self) -> tuple[np.ndarray, np.ndarray]:
        """Every point as (ids ascending, vectors), read back page by page."""
        ids: list[int] = []
        vectors: list[list[float]] = []
        offset = None
        while True:
            points, offset = self._call(
                "scroll",
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


def payload(
    item_id: int,
    kind: str,
    content_id: int,
    t: float | None,
    taken: str | None,
    files: Sequence[tuple[str, int]],
) -> dict[str, Any]:
    """What a point carries: the item, its kind, its first path, a video's id and the frame's
    time, and each file holding it with its folders, its EXIF date (`date`: local wall-clock
    seconds, as the camera wrote it) and its modification time (`mtime`: seconds since the
    epoch, placed in local days by whoever searches, as the catalog does)."""
    exif = _wall_clock(taken)
    placed = []
    for path, mtime_ns in files:
        placed_file = {"folder": _text(os.path.dirname(path)), "folders": _folders(path)}
        placed_file["mtime"] = mtime_ns / 1e9
        if exif is not None:
            placed_file["date"] = exif
        placed.append(placed_file)
    body: dict[str, Any] = {"item": int(item_id), "kind": kind, "files": placed}
    if files:
        body["path"] = _text(files[0][0])
    if kind == "video":
        body["video"] = int(content_id)
        body["t"] = t
    return body


def payload_filter(models: Any, only: Filter) -> Any:
    """`only` (its label aside) as conditions on the payload; folder and dates must hold for
    one and the same file, as the catalog asks of them: its EXIF date, else its modification
    time, within the days asked for."""
    must: list[Any] = []
    if only.kind is not None:
        must.append(models.FieldCondition(key="kind", match=models.MatchValue(value=only.kind)))
    per_file: list[Any] = []
    if only.folder is not None:
        match = models.MatchValue(value=_text(only.folder))
        per_file.append(models.FieldCondition(key="folders", match=match))
    dated: list[Any] = []
    if only.since is not None or only.until is not None:
        (since, until), (after, before) = only.taken_bounds(), only.mtime_bounds()
        exif = models.Range(
            gte=None if since is None else _wall_clock(since),
            lt=None if until is None else _wall_clock(until),
        )
        mtime = models.Range(
            gte=None if after is None else after / 1e9, lt=None if before is None else before / 1e9
        )
        no_exif = models.IsEmptyCondition(is_empty=models.PayloadField(key="date"))
        dated = [
            models.FieldCondition(key="date", range=exif),
            models.Filter(must=[no_exif, models.FieldCondition(key="mtime", range=mtime)]),
        ]
    if per_file or dated:
        inside = models.Filter(must=per_file or None, should=dated or None)
        must.append(models.NestedCondition(nested=models.Nested(key="files", filter=inside)))
    return models.Filter(must=must)


def _folders(path: str) -> list[str]:
    """Every folder a path is under, the root first."""
    folders, parent = [], os.path.dirname(path)
    while True:
        folders.append(_text(parent))
        above = os.path.dirname(parent)
        if above == parent:
            return folders[::-1]
        parent = above


def _text(path: str) -> str:
    """A path as JSON can carry it: bytes that are not UTF-8 written as backslash escapes,
    on both sides of a comparison alike."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _wall_clock(text: str | None) -> float | None:
    """Local wall-clock ISO text (an EXIF date, or a day) as seconds from 1970-01-01 00:00 of
    the same clock; None when there is none to read."""
    if text is None:
        return None
    try:
        return (datetime.fromisoformat(text).replace(tzinfo=None) - _EPOCH).total_seconds()
    except ValueError:
        return None
