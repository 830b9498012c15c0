"""Re-ranking: compact codes find the candidates, the collection's stored vectors score them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgfinder.errors import IndexerError
from imgfinder.filters import Filter
from imgfinder.indexers.registry import create_indexer
from imgfinder.indexers.reranked import RerankedIndexer
from imgfinder.search import SearchModel
from imgfinder.store.catalog import NewFile
from imgfinder.store.collection import Collection

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from common import StoredVectors

DIM = 64
KEY = "stored-64"
ROOT = "/photos"
COUNT = 4000
#: PQ codes of 16 bytes for 128 of float16: a rough ranking alone
CODES = {"factory": "IVF16,PQ16", "nprobe": 16, "train_size": 2000}


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM))
    points = centres[rng.integers(0, 40, n)] + 0.8 * rng.standard_normal((n, DIM))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COUNT items in 100 folders, their vectors in the collection's own float16 file."""
    directory = tmp_path_factory.mktemp("reranked") / "collection"
    collection = Collection(directory, create=True)
    collection.register_embedder("stored", KEY, DIM, None)
    root_id = collection.catalog.ensure_roots([ROOT])[ROOT]
    rows = collection.vectors(KEY, DIM).append(clustered(COUNT, seed=1))
    files = [
        NewFile(f"{ROOT}/f{i % 100:02d}/{i}.jpg", root_id, 1000, 10**18, f"{i:020x}")
        for i in range(COUNT)
    ]
    collection.catalog.add_images(files, rows.tolist(), KEY)
    collection.close()
    return directory


def overlap(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


def test_codes_find_the_candidates_and_the_stored_vectors_rank_them(collection: Path) -> None:
    exact = SearchModel(collection, StoredVectors(KEY, DIM), indexer="exact")
    codes = SearchModel(collection, StoredVectors(KEY, DIM), indexer="faiss", indexer_params=CODES)
    reranked = SearchModel(
        collection, StoredVectors(KEY, DIM), indexer="faiss", indexer_params={**CODES, "rerank": 16}
    )
    queries = clustered(100, seed=2)
    truth_scores, truth = exact.vector_index().search(queries, 10)
    rough_scores, rough = codes.vector_index().search(queries, 10)
    scores, found = reranked.vector_index().search(queries, 10)
    assert overlap(rough, truth) < 0.8  # the codes alone rank roughly...
    assert overlap(found, truth) >= 0.97  # ...and find the true top 10 among 160 candidates
    assert np.abs(rough_scores - truth_scores).max() > 0.02
    same = found == truth
    np.testing.assert_allclose(scores[same], truth_scores[same], atol=1e-6)  # exact cosines
    assert (np.diff(scores, axis=1) <= 0).all()
    for model in (exact, codes, reranked):
        model.close()


def test_a_filtered_reranked_search_returns_k_of_the_filter(collection: Path) -> None:
    model = SearchModel(
        collection, StoredVectors(KEY, DIM), indexer="faiss", indexer_params={**CODES, "rerank": 16}
    )
    exact = SearchModel(collection, StoredVectors(KEY, DIM), indexer="exact")
    allowed = model.passing(Filter(folder=f"{ROOT}/f07"))
    assert allowed is not None and len(allowed) == COUNT // 100
    queries = clustered(20, seed=3)
    _, truth = exact.vector_index().search(queries, 10, allowed)
    _, found = model.vector_index().search(queries, 10, allowed)
    assert np.isin(found, allowed).all() and (found >= 0).all()
    assert overlap(found, truth) >= 0.95
    model.close()
    exact.close()


def test_a_saved_reranked_index_is_loaded_with_the_stored_vectors(
    collection: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {**CODES, "rerank": 4}
    first = SearchModel(collection, StoredVectors(KEY, DIM), indexer="faiss", indexer_params=params)
    queries = clustered(5, seed=4)
    expected = first.vector_index().search(queries, 10)  # built, then saved for the next
    first.close()

    def not_built(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the saved index was built again instead of loaded")

    monkeypatch.setattr("imgfinder.search.create_indexer", not_built)
    again = SearchModel(collection, StoredVectors(KEY, DIM), indexer="faiss", indexer_params=params)
    index = again.vector_index()
    assert isinstance(index, RerankedIndexer) and index.factor == 4
    np.testing.assert_array_equal(index.search(queries, 10)[1], expected[1])
    np.testing.assert_allclose(index.search(queries, 10)[0], expected[0], atol=1e-6)
    index.set_search_params(rerank=1, nprobe=2)
    assert index.params["rerank"] == 1 and index.params["nprobe"] == 2
    again.close()


def test_without_stored_vectors_a_reranked_index_says_what_it_needs() -> None:
    index = create_indexer("faiss", DIM, factory="Flat", rerank=2)
    index.add(np.arange(3), clustered(3, seed=5))
    with pytest.raises(IndexerError, match="stored vectors"):
        index.search(clustered(1, seed=6), 2)


def test_auto_keeps_the_re_ranking_it_was_asked_for(collection: Path) -> None:
    model = SearchModel(
        collection, StoredVectors(KEY, DIM), indexer="auto", indexer_params={"rerank": 2}
    )
    index = model.vector_index()
    assert isinstance(index, RerankedIndexer) and index.inner.name == "exact"
    assert model.indexer_params == {"rerank": 2}
    _, everything = index.search(clustered(2, seed=7), COUNT)  # deeper than factor x k allows
    assert all(len(set(row.tolist())) == COUNT for row in everything)
    model.close()


def test_candidates_the_catalog_no_longer_holds_are_dropped_not_fatal(collection: Path) -> None:
    """A shared Qdrant server can keep points of items another process removed: re-ranking
    skips them instead of failing the search."""
    model = SearchModel(
        collection, StoredVectors(KEY, DIM), indexer="exact", indexer_params={"rerank": 4}
    )
    queries = clustered(5, seed=4)
    index = model.vector_index()
    expected_scores, expected = index.search(queries, 10)
    stale = np.arange(10**9, 10**9 + len(queries))
    index.add(stale, queries)  # each query's own vector: the backend's best candidate
    scores, found = index.search(queries, 10)
    assert not np.isin(found, stale).any()
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    model.close()
