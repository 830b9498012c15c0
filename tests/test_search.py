"""SearchModel end to end on real files: incremental indexing, renames, deletions, searches."""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder, make_image

from imgfinder.errors import ConfigError, ModelError
from imgfinder.search import SearchModel


def color_of(path: str) -> str:
    return Path(path).name.split("_")[0]


@pytest.fixture
def model(tmp_path: Path, embedder: ColorEmbedder) -> SearchModel:
    return SearchModel(tmp_path / "collection", embedder)


def test_text_search_finds_the_colour(model: SearchModel, photo_folder: Path) -> None:
    report = model.index([photo_folder])
    assert report.indexed == 12 and not report.skipped
    hits = model.search_text("red", k=5)
    assert [color_of(h.path) for h in hits[:3]] == ["red"] * 3
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert all(h.kind == "image" for h in hits)
    russian = model.search_text("синий", k=3)
    assert {color_of(h.path) for h in russian} == {"blue"}


def test_threshold_and_k(model: SearchModel, photo_folder: Path) -> None:
    model.index([photo_folder])
    assert len(model.search_text("green", k=2)) == 2
    high = model.search_text("green", k=50, threshold=0.5)
    assert high and all(h.score >= 0.5 for h in high)
    assert {color_of(h.path) for h in high} == {"green"}
    assert model.search_text("green", k=50, threshold=0.999) == []
    for nonsense in (1.01, 5.0, -1.5, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="between -1 and 1"):
            model.search_text("green", threshold=nonsense)
    with pytest.raises(ConfigError):
        model.search_text("green", k=0)
    with pytest.raises(ConfigError):
        model.search_text("   ")


def test_reindex_unchanged_embeds_nothing(
    model: SearchModel, embedder: ColorEmbedder, photo_folder: Path
) -> None:
    model.index([photo_folder])
    before = embedder.images_embedded
    again = model.index([photo_folder])
    assert embedder.images_embedded == before
    assert again.unchanged == 12 and again.indexed == 0 and again.removed == 0


def test_rename_and_move_reuse_vectors(
    model: SearchModel, embedder: ColorEmbedder, photo_folder: Path
) -> None:
    model.index([photo_folder])
    before = embedder.images_embedded
    old = photo_folder / "r" / "red_0.jpg"
    new = photo_folder / "moved" / "red_renamed.jpg"
    new.parent.mkdir()
    os.rename(old, new)
    report = model.index([photo_folder])
    assert embedder.images_embedded == before
    assert report.renamed == 1 and report.removed == 0 and report.indexed == 0
    assert report.copies == 0
    paths = [h.path for h in model.search_text("red", k=12)]
    assert str(new) in paths and str(old) not in paths


def test_deleted_files_vanish(model: SearchModel, photo_folder: Path) -> None:
    model.index([photo_folder])
    victims = sorted((photo_folder / "r").iterdir())[:2]
    for victim in victims:
        victim.unlink()
    report = model.index([photo_folder])
    assert report.removed == 2
    paths = {h.path for h in model.search_text("red", k=50)}
    assert not paths & {str(v) for v in victims}
    assert len(paths) == 10


def test_changed_file_is_reembedded(
    model: SearchModel, embedder: ColorEmbedder, photo_folder: Path
) -> None:
    model.index([photo_folder])
    target = photo_folder / "y" / "yellow_1.png"
    make_image(target, "purple", seed=99)
    before = embedder.images_embedded
    report = model.index([photo_folder])
    assert embedder.images_embedded == before + 1 and report.indexed == 1
    assert model.search_text("purple", k=1)[0].path == str(target)


def test_copies_are_embedded_once(
    model: SearchModel, embedder: ColorEmbedder, tmp_path: Path
) -> None:
    root = tmp_path / "dups"
    original = make_image(root / "a.png", "blue")
    shutil.copy(original, root / "b.png")
    shutil.copy(original, root / "c.png")
    report = model.index([root])
    assert embedder.images_embedded == 1
    assert report.indexed == 1 and report.copies == 2 and report.renamed == 0
    (root / "b.png").rename(root / "b2.png")
    (root / "c.png").unlink()
    again = model.index([root])
    assert (again.renamed, again.copies, again.removed, again.unchanged) == (1, 0, 1, 1)


def test_search_by_image_and_similar(model: SearchModel, photo_folder: Path) -> None:
    model.index([photo_folder])
    query = photo_folder / "g" / "green_2.webp"
    hits = model.search_image(query, k=4)
    assert hits[0].path == str(query) and hits[0].score > 0.99
    assert model.search_image(query.read_bytes(), k=1)[0].path == str(query)
    similar = model.similar(hits[0].item_id, k=2)
    assert hits[0].item_id not in [h.item_id for h in similar]
    assert {color_of(h.path) for h in similar} == {"green"}
    with pytest.raises(ConfigError):
        model.similar(10**9)


def test_switching_indexer_never_reembeds(
    tmp_path: Path, embedder: ColorEmbedder, photo_folder: Path
) -> None:
    SearchModel(tmp_path / "c", embedder).index([photo_folder])
    before = embedder.images_embedded
    exact = SearchModel(tmp_path / "c", embedder).search_text("yellow", k=5)
    for name, params in [("faiss", {"factory": "Flat"}), ("hnsw", {})]:
        other = SearchModel(tmp_path / "c", embedder, indexer=name, indexer_params=params)
        hits = other.search_text("yellow", k=5)
        assert [h.path for h in hits][:3] == [h.path for h in exact][:3]
        # the exact index keeps float16 rows: cosines agree to float16's precision
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in exact], atol=2e-3)
    assert embedder.images_embedded == before


def test_reopen_uses_saved_index_and_sees_updates(
    tmp_path: Path, embedder: ColorEmbedder, photo_folder: Path
) -> None:
    first = SearchModel(tmp_path / "c", embedder)
    first.index([photo_folder])
    assert first.search_text("red", k=1)
    first.close()
    second = SearchModel(tmp_path / "c", embedder)
    # white: orange would be a near neighbour of the album's yellow images, which the noise of
    # `make_image` (seeded by the path) sometimes tints orange
    make_image(photo_folder / "new" / "white_0.png", "white")
    second.search_text("red", k=1)
    second.index([photo_folder])
    assert color_of(second.search_text("white", k=1)[0].path) == "white"
    third = SearchModel(tmp_path / "c", embedder)
    assert color_of(third.search_text("white", k=1)[0].path) == "white"


def test_other_embedder_key_is_refused(
    tmp_path: Path, embedder: ColorEmbedder, photo_folder: Path
) -> None:
    SearchModel(tmp_path / "c", embedder).index([photo_folder])
    other = SearchModel(tmp_path / "c", ColorEmbedder(salt="-v2"))
    with pytest.raises(ModelError, match="indexed with"):
        other.search_text("red")


def test_same_model_on_another_runtime_is_told_which_runtime(
    tmp_path: Path, photo_folder: Path
) -> None:
    """Not "pick the model it was built with": the model is right, the runtime is not."""
    SearchModel(tmp_path / "c", "demo", runtime="onnx").index([photo_folder])
    with pytest.raises(ModelError, match="on the onnx runtime; search it with runtime auto"):
        SearchModel(tmp_path / "c", "demo", runtime="torch").search_text("red")
    assert SearchModel(tmp_path / "c", "demo", runtime="auto").search_text("red")


def test_a_query_needs_a_word_number_or_emoji(model: SearchModel, photo_folder: Path) -> None:
    model.index([photo_folder])
    for empty in ("", "   "):
        with pytest.raises(ConfigError, match="empty"):
            model.search_text(empty)
    for no_words in ("!!!???", " ... ", "«—»"):
        with pytest.raises(ConfigError, match="no words"):
            model.search_text(no_words)
    for query in ("red", "42", "🟥"):
        model.search_text(query)  # a word, a number, an emoji: fine


def test_several_roots(model: SearchModel, tmp_path: Path) -> None:
    make_image(tmp_path / "one" / "red_a.png", "red")
    make_image(tmp_path / "two" / "blue_a.png", "blue")
    model.index([tmp_path / "one", tmp_path / "two"])
    assert color_of(model.search_text("blue", k=1)[0].path) == "blue"
    model.index([tmp_path / "one"])
    assert len(model.search_text("blue", k=5)) == 2


def test_bad_input_is_skipped_and_counted(model: SearchModel, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    make_image(root / "red_ok.png", "red")
    make_image(root / "blue_ok.jpg", "blue")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("this is not an image")
    good = make_image(tmp_path / "full.jpg", "green", size=(200, 200))
    (root / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    (root / "random.png").write_bytes(np.random.default_rng(1).bytes(2048))
    report = model.index([root])
    assert report.indexed == 2
    skipped = {Path(s.path).name for s in report.skipped}
    assert skipped == {"empty.jpg", "notes.jpg", "truncated.jpg", "random.png"}
    assert all(s.reason for s in report.skipped)
    assert sum(report.skipped_by_reason().values()) == 4


def test_cancelled_run_resumes(tmp_path: Path, embedder: ColorEmbedder, photo_folder: Path) -> None:
    model = SearchModel(tmp_path / "c", embedder)
    cancel = threading.Event()

    def stop_after_first_batch(event) -> None:
        if event.phase == "embed" and event.done >= 4:
            cancel.set()

    first = model.index(
        [photo_folder], progress=stop_after_first_batch, batch_size=4, cancel=cancel
    )
    assert first.cancelled and 0 < first.indexed < 12
    resumed = SearchModel(tmp_path / "c", embedder).index([photo_folder], batch_size=4)
    assert first.indexed + resumed.indexed == 12
    assert embedder.images_embedded == 12
