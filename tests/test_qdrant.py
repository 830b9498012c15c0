"""Qdrant's server mode with the client calls a server gets, run against the in-process
engine: retries, one sentence when the server is not there, refusals, the server's graph and
quantisation settings, and one Qdrant collection per imgfinder collection and embedder."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder, make_image
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from imgfinder.config import Settings
from imgfinder.errors import ConfigError, IndexerError
from imgfinder.indexers import qdrant
from imgfinder.indexers.registry import create_indexer
from imgfinder.search import SearchModel
from imgfinder.service import Selection, Service, qdrant_collection

DIM = 16


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unit_rows(count: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qdrant, "RETRY_PAUSE", 0.0)


def test_a_server_that_is_not_there_is_one_sentence() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(IndexerError) as raised:
        create_indexer("qdrant", DIM, url=url, retries=2, timeout=1)
    message = str(raised.value)
    assert message.startswith(f"the Qdrant server at {url} did not answer collection_exists")
    assert "after 3 tries" in message and message.endswith("is it running?")
    assert "\n" not in message and time.monotonic() - started < 10


def flaky(index: qdrant.QdrantIndexer, method: str, failures: list[Exception]) -> list[int]:
    """Make the client's `method` raise `failures` first, then work; returns its call count."""
    real, calls = getattr(index._client, method), [0]

    def call(*args, **kwargs):
        calls[0] += 1
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    setattr(index._client, method, call)
    return calls


def test_a_call_the_server_drops_is_tried_again() -> None:
    index = create_indexer("qdrant", DIM, retries=2)
    vectors = unit_rows(20)
    index.add(np.arange(20), vectors)
    dropped = [ResponseHandlingException(ConnectionResetError("reset")) for _ in range(2)]
    calls = flaky(index, "query_batch_points", dropped)
    scores, ids = index.search(vectors[:1], 3)
    assert ids[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0, abs=1e-5) and calls == [3]
    busy = UnexpectedResponse(503, "Service Unavailable", b"", None)
    flaky(index, "query_batch_points", [busy, busy, busy])
    with pytest.raises(IndexerError, match="did not answer query_batch_points after 3 tries"):
        index.search(vectors[:1], 3)


def test_a_refusal_is_not_retried_and_names_the_key() -> None:
    index = create_indexer("qdrant", DIM, retries=3)
    refused = UnexpectedResponse(401, "Unauthorized", b"", None)
    calls = flaky(index, "count", [refused])
    with pytest.raises(IndexerError, match=r"refused count: HTTP 401 Unauthorized .*API_KEY"):
        len(index)
    assert calls == [1]


@pytest.mark.filterwarnings("ignore:Local mode performs exact")
def test_the_server_s_graph_and_quantisation_settings_are_passed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qdrant_client import QdrantClient

    created: list[dict] = []
    real = QdrantClient.create_collection

    def create_collection(self, name, **settings):
        created.append(settings)
        return real(self, name, **settings)

    monkeypatch.setattr(QdrantClient, "create_collection", create_collection)
    index = create_indexer(
        "qdrant",
        DIM,
        hnsw_m=8,
        hnsw_ef_construct=64,
        hnsw_ef="32",  # the page's text box hands over digits
        quantization="int8",
        on_disk=True,
    )
    (sent,) = created  # what a server is asked for (the in-process engine keeps little)
    assert sent["vectors_config"].on_disk is True and sent["vectors_config"].size == DIM
    assert (sent["hnsw_config"].m, sent["hnsw_config"].ef_construct) == (8, 64)
    assert sent["quantization_config"].scalar.type == "int8"
    asked, real_query = [], index._client.query_batch_points
    index._client.query_batch_points = lambda name, requests: (
        asked.extend(requests) or real_query(name, requests)
    )
    vectors = unit_rows(50, seed=1)
    index.add(np.arange(50), vectors)
    exact = vectors @ vectors[:5].T
    _, ids = index.search(vectors[:5], 5)
    assert (ids == np.argsort(-exact, axis=0)[:5].T).all()  # the in-process engine is exact
    assert asked[0].params.hnsw_ef == 32 and asked[0].params.quantization.rescore is True
    with pytest.raises(ConfigError, match="quantization is one of none, int8"):
        create_indexer("qdrant", DIM, quantization="pq")
    with pytest.raises(ConfigError, match="hnsw_ef must be a positive integer"):
        create_indexer("qdrant", DIM, hnsw_ef=0)


def test_each_collection_and_model_has_its_own_qdrant_collection(tmp_path: Path) -> None:
    """On a shared server two imgfinder collections (or two models of one) must not write
    into one Qdrant collection: their item ids would overwrite each other's points."""
    assert qdrant_collection("photos", "demo:a") != qdrant_collection("photos", "demo:b")
    assert qdrant_collection("photos", "k") != qdrant_collection("videos", "k")
    url = f"http://127.0.0.1:{closed_port()}"
    factory = "test_webapp:color_embedder"
    service = Service(Settings(indexes_dir=str(tmp_path), qdrant_url=url, embedder_factory=factory))
    try:
        names = set()
        for name in ("photos", "videos"):
            make_image(tmp_path / name / "red.png", "red")
            SearchModel(tmp_path / name, ColorEmbedder()).index([tmp_path / name])
            model = service.model(Selection(str(tmp_path / name), "demo", indexer="qdrant"))
            assert model.indexer_params["url"] == url
            names.add(model.indexer_params["collection"])
        assert len(names) == 2 and all(n.startswith("imgfinder-") for n in names)
    finally:
        service.close()


def test_a_new_qdrant_collection_indexes_the_payload_its_filters_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qdrant_client import QdrantClient

    indexed: dict[str, str] = {}
    real = QdrantClient.create_payload_index

    def create_payload_index(self, name, field_name, field_schema=None, **settings):
        indexed[field_name] = str(field_schema.value)
        return real(self, name, field_name, field_schema=field_schema, **settings)

    monkeypatch.setattr(QdrantClient, "create_payload_index", create_payload_index)
    index = create_indexer("qdrant", DIM)
    assert indexed == {
        "kind": "keyword",
        "video": "integer",
        "files[].folders": "keyword",
        "files[].date": "float",
        "files[].mtime": "float",
    }
    body = qdrant.payload(7, "video", 3, 12.5, None, [("/p/clips/a.mp4", 10**18)])
    assert body["item"] == 7 and body["video"] == 3 and body["t"] == 12.5
    assert body["path"] == "/p/clips/a.mp4" and body["files"][0]["folder"] == "/p/clips"
    assert body["files"][0]["folders"] == ["/", "/p", "/p/clips"]
    index.add(np.array([8]), unit_rows(1, seed=2))  # before a payload source is lent
    index.read_payload_from(lambda ids: [body for _ in ids])
    index.add(np.array([7]), unit_rows(1))
    assert index.without_payload().tolist() == [8]
    index.refresh_payload(np.array([8]))
    assert index.without_payload().tolist() == []
    index.close()


def test_points_the_catalog_does_not_hold_are_removed_when_the_index_is_built(
    tmp_path: Path,
) -> None:
    """A Qdrant folder (or server) can hold points its catalog lost: a run that stopped
    before saving, or another process's rebuild. Building the index from it drops them."""
    folder, dim = tmp_path / "qdrant", ColorEmbedder().dim
    stray = create_indexer("qdrant", dim, path=str(folder))
    stray.add(np.array([10**9, 10**9 + 1]), np.ones((2, dim), np.float32) / np.sqrt(dim))
    stray.close()
    for colour in ("red", "blue"):
        make_image(tmp_path / "photos" / f"{colour}.png", colour)
    SearchModel(tmp_path / "collection", ColorEmbedder()).index([tmp_path / "photos"])
    params = {"path": str(folder)}
    model = SearchModel(
        tmp_path / "collection", ColorEmbedder(), indexer="qdrant", indexer_params=params
    )
    try:
        index = model.vector_index()
        assert len(index) == 2 and 10**9 not in index.stored_ids().tolist()
    finally:
        model.close()
