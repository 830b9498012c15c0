"""PCA-reduced indexes: half the dimensions keep the full ranking, for any backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgfinder.demo import world
from imgfinder.errors import ConfigError
from imgfinder.indexers.base import Indexer
from imgfinder.indexers.reduced import ReducedIndexer, fit_basis, project
from imgfinder.indexers.registry import create_indexer


def overlap(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def test_half_the_dimensions_keep_recall_on_the_demo_collection(
    small_demo: tuple[Path, Path],
) -> None:
    from imgfinder.search import SearchModel

    collection, _ = small_demo
    full = SearchModel(collection, "demo", create=False)
    half = SearchModel(collection, "demo", indexer_params={"pca": full.embedder.dim // 2})
    scenes = world.make_dataset(60, seed=3)
    texts = world.make_queries(scenes, "en", 40, seed=3).texts
    texts += world.make_queries(scenes, "ru", 20, seed=4).texts
    queries = full.embedder.embed_texts(texts)
    ids, _, stored = full.stored()
    images = stored[np.random.default_rng(0).choice(len(stored), 40, replace=False)]
    for asked in (queries, images):
        truth = full.vector_index().search(asked, 10)[1]
        found = half.vector_index().search(asked, 10)[1]
        assert overlap(found, truth) >= 0.95
    assert isinstance(half.vector_index(), ReducedIndexer) and len(half.vector_index()) == len(ids)
    assert half.recall() >= 0.9
    full.close()
    half.close()


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    points = centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_saved_reloaded_filtered_and_changed(backend: str, tmp_path: Path) -> None:
    vectors = clustered(300, 32, seed=1)
    ids = np.arange(300, dtype=np.int64) * 3
    index = create_indexer(backend, 32, pca=8)
    index.fit_rows = 200  # type: ignore[attr-defined]  # fix the basis within this test
    index.add(ids[:100], vectors[:100])
    fitting = tmp_path / "fitting"
    index.save(fitting)
    assert Indexer.load(fitting).search(vectors[:5], 3)[1][:, 0].tolist() == ids[:5].tolist()
    index.add(ids[100:], vectors[100:])
    assert index.basis is not None and not index._seen  # type: ignore[attr-defined]
    index.remove(ids[:2])
    allowed = ids[50:60]
    found = index.search(vectors[50:55], 4, allowed)[1]
    assert set(found.ravel()) <= set(allowed) and found[:, 0].tolist() == ids[50:55].tolist()
    fixed = tmp_path / "fixed"
    index.save(fixed)
    loaded = Indexer.load(fixed)
    assert isinstance(loaded, ReducedIndexer) and loaded.params["pca"] == 8 and len(loaded) == 298
    np.testing.assert_allclose(
        loaded.search(vectors[10:20], 5)[0], index.search(vectors[10:20], 5)[0], atol=1e-5
    )
    assert not {0, 3} & set(loaded.search(vectors[:1], 298)[1].ravel().tolist())


def test_the_basis_keeps_what_the_vectors_hold() -> None:
    vectors = clustered(500, 16, seed=2)
    basis = fit_basis(vectors, 4)
    assert basis.shape == (16, 4)
    np.testing.assert_allclose(basis.T @ basis, np.eye(4), atol=1e-5)
    reduced = project(vectors, basis)
    np.testing.assert_allclose(np.linalg.norm(reduced, axis=1), 1.0, atol=1e-5)
    assert not fit_basis(vectors[:2], 4)[:, 2:].any()  # fewer rows than dims: zero columns
    with pytest.raises(ConfigError, match="pca"):
        create_indexer("exact", 16, pca=16)
