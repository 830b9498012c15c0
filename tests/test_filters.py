"""Filters inside the search: kind, folder and date (EXIF, else mtime), from catalog to hits."""

from __future__ import annotations

import os
import sqlite3
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder, dated_album, make_image, with_exif_date

from imgfinder.errors import ConfigError
from imgfinder.filters import Filter
from imgfinder.indexers.base import innermost
from imgfinder.indexers.qdrant import QdrantIndexer
from imgfinder.media.images import open_image, taken_at
from imgfinder.search import SearchModel
from imgfinder.store.catalog import Catalog


@pytest.fixture
def album(tmp_path: Path) -> Path:
    return dated_album(tmp_path / "album")


@pytest.fixture
def model(tmp_path: Path, album: Path) -> SearchModel:
    search = SearchModel(tmp_path / "collection", ColorEmbedder())
    search.index([album])
    return search


def test_exif_date_is_read_from_a_decoded_photo(album: Path) -> None:
    dated = open_image(album / "many" / "m01.jpg", target_size=32)
    assert taken_at(dated) == "2019-07-02T12:00:00"
    assert taken_at(open_image(album / "many" / "m00.jpg", target_size=32)) is None


def test_each_hit_says_when_it_was_taken(model: SearchModel) -> None:
    """By its EXIF where it has one, else by its file's modification time (local)."""
    hits = {Path(h.path).name: h.taken for h in model.search_text("red", k=100)}
    assert len(hits) == 63
    assert hits["m01.jpg"] == "2019-07-02T12:00:00"  # EXIF
    assert hits["m00.jpg"] == "2021-03-01T09:00:00"  # no EXIF date: the file's time
    assert hits["f2.jpg"] == "2022-05-10T09:00:00"


def test_a_nonsense_exif_date_is_no_date(tmp_path: Path) -> None:
    path = with_exif_date(make_image(tmp_path / "x.jpg"), "0000:00:00 00:00:00")
    assert taken_at(open_image(path)) is None


def test_a_small_folder_fills_k_results_in_one_index_search(
    model: SearchModel, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "green" ranks the red images of `few/` 31st, 55th and 56th of 63: filtering the top
    results afterwards needs the index searched again and again, inside it needs one search."""
    model.search_text("green", k=1)  # measures the calibration, which searches too
    index = model.vector_index()
    calls = []
    search = index.search
    monkeypatch.setattr(index, "search", lambda *a, **kw: calls.append(a) or search(*a, **kw))
    hits = model.search_text("green", k=3, only=Filter(folder=str(album / "few")))
    assert sorted(Path(h.path).name for h in hits) == ["f0.jpg", "f1.jpg", "f2.jpg"]
    assert len(calls) == 1


@pytest.fixture(params=[("exact", {}), ("qdrant", {}), ("qdrant", {"rerank": 3})])
def any_model(request: pytest.FixtureRequest, tmp_path: Path, album: Path) -> SearchModel:
    """The exact index (filtered by ids from the catalog) and Qdrant (by its payload), alone
    and under a re-ranking wrapper, which passes the filter on as it is."""
    name, params = request.param
    search = SearchModel(
        tmp_path / "collection", ColorEmbedder(), indexer=name, indexer_params=params
    )
    search.index([album])
    return search


def payload_filters(model: SearchModel, monkeypatch: pytest.MonkeyPatch) -> list:
    """The Qdrant filters `model`'s index is searched with from now on."""
    index = innermost(model.vector_index())
    seen: list = []
    if isinstance(index, QdrantIndexer):
        query = index._query
        monkeypatch.setattr(
            index, "_query", lambda q, k, only: seen.append(only) or query(q, k, only)
        )
    return seen


def test_filtered_search_equals_filtering_the_full_ranking(
    any_model: SearchModel, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = any_model
    everything = model.search_text("blue", k=100)
    filters = payload_filters(model, monkeypatch)
    for only, keep in (
        (Filter(folder=str(album / "many")), lambda p: "/many/" in p),
        (Filter(since=date(2019, 7, 1), until=date(2019, 7, 31)), lambda p: _odd(p)),
        (Filter(since="2021-03-01"), lambda p: ("/many/" in p and not _odd(p)) or "/few/" in p),
        (Filter(until="2021-12-31"), lambda p: "/many/" in p),
        (Filter(since="2022-05-10", until="2022-05-10"), lambda p: "/few/" in p),
    ):
        expected = [(h.path, round(h.score, 5)) for h in everything if keep(h.path)][:7]
        got = [(h.path, round(h.score, 5)) for h in model.search_text("blue", k=7, only=only)]
        assert got == expected, only
    if isinstance(innermost(model.vector_index()), QdrantIndexer):  # as payload, not ids
        assert filters and not any("has_id" in str(f) for f in filters)


def _odd(path: str) -> bool:
    """Odd-numbered images of `many/` carry an EXIF date in July 2019."""
    name = Path(path).stem
    return name.startswith("m") and int(name[1:]) % 2 == 1


def test_a_filter_nothing_passes_finds_nothing(any_model: SearchModel, album: Path) -> None:
    model = any_model
    assert model.search_text("red", k=5, only=Filter(since="2030-01-01")) == []
    assert model.search_text("red", k=5, only=Filter(folder=str(album / "nowhere"))) == []
    assert model.search_text("red", k=5, only=Filter(folder=str(album / "fe"))) == []  # no prefix


def test_dates_at_the_ends_of_the_calendar_filter_without_error(model: SearchModel) -> None:
    """Found by fuzzing the API: year 1 cannot be placed in local time, and 2263 is past what
    nanoseconds since 1970 can count in SQLite's integers."""
    for since, until in (("0001-01-01", None), ("2263-01-01", None), (None, "9999-12-31")):
        hits = model.search_text("red", k=100, only=Filter(since=since, until=until))
        assert len(hits) == (0 if since and since > "2100" else 63)


def test_filters_are_checked() -> None:
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        Filter(since="last tuesday")
    with pytest.raises(ConfigError, match="before it starts"):
        Filter(since="2020-02-01", until="2020-01-01")
    with pytest.raises(ConfigError, match="kind"):
        Filter(kind="photo")
    with pytest.raises(ConfigError, match="empty"):
        Filter(folder=" ")
    assert not Filter().narrows and Filter(kind="image").narrows


@pytest.mark.parametrize("indexer", ["exact", "qdrant"])
def test_a_folder_filter_finds_paths_that_are_not_utf8(tmp_path: Path, indexer: str) -> None:
    folder = tmp_path / "album" / "old"
    raw = os.path.join(os.fsencode(folder), b"\xff\xfe.jpg")
    make_image(Path(os.fsdecode(raw)), "red")
    make_image(tmp_path / "album" / "new" / "a.jpg", "red")
    model = SearchModel(tmp_path / "collection", ColorEmbedder(), indexer=indexer)
    model.index([tmp_path / "album"])
    hits = model.search_text("red", k=5, only=Filter(folder=str(folder)))
    assert [os.fsencode(h.path) for h in hits] == [raw]


def test_an_old_catalog_is_migrated_and_dated_by_mtime(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    Catalog(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE contents DROP COLUMN taken")
    db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    db.commit()
    db.close()
    catalog = Catalog(path)
    columns = [row[1] for row in catalog._query("PRAGMA table_info(contents)")]
    assert "taken" in columns
    assert len(catalog.matching_items("k", Filter(since="2000-01-01"))) == 0


def test_the_filter_cache_follows_the_catalog(model: SearchModel, album: Path) -> None:
    only = Filter(folder=str(album / "few"))
    assert len(model.passing(only)) == 3
    make_image(album / "few" / "f3.jpg", "red", seed=200)
    model.index([album])
    assert len(model.passing(only)) == 4
    assert np.all(np.diff(model.passing(only)) > 0)


def test_auto_is_exact_for_a_small_collection(tmp_path: Path, album: Path) -> None:
    model = SearchModel(tmp_path / "collection", ColorEmbedder(), indexer="auto")
    model.index([album])
    assert model.search_text("red", k=3)
    info = model.info()
    assert (info["indexer_asked"], info["indexer"], info["recall_at_10"]) == ("auto", "exact", 1.0)


def test_auto_builds_a_graph_above_its_size_and_measures_its_recall(
    tmp_path: Path, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("faiss")
    monkeypatch.setattr("imgfinder.indexers.registry.EXACT_UP_TO", 10)  # 63 items get a graph
    SearchModel(tmp_path / "collection", ColorEmbedder()).index([album])
    model = SearchModel(tmp_path / "collection", ColorEmbedder(), indexer="auto")
    hits = model.search_text("green", k=5, only=Filter(folder=str(album / "many")))
    assert len(hits) == 5 and all("/many/" in h.path for h in hits)
    assert (model.indexer_name, model.indexer_params["factory"]) == ("faiss", "HNSW32_SQ8")
    recall = model.recall()
    assert 0.5 <= recall <= 1.0 and model.info()["recall_at_10"] == round(recall, 3)
    assert model._index_dir().name.startswith("faiss")


def test_qdrant_s_payload_follows_files_that_move(
    tmp_path: Path, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moved photo keeps its vector; its payload moves with it, and only its payload is
    written again."""
    model = SearchModel(tmp_path / "collection", ColorEmbedder(), indexer="qdrant")
    model.index([album])
    in_few = Filter(folder=str(album / "few"))
    assert len(model.search_text("red", k=10, only=in_few)) == 3
    index = model.vector_index()
    assert isinstance(index, QdrantIndexer)
    refreshed: list[list[int]] = []
    refresh = index.refresh_payload
    monkeypatch.setattr(
        index, "refresh_payload", lambda ids: refreshed.append(list(ids)) or refresh(ids)
    )
    (album / "moved").mkdir()
    os.replace(album / "few" / "f0.jpg", album / "moved" / "f0.jpg")
    model.index([album])
    assert {Path(h.path).name for h in model.search_text("red", k=10, only=in_few)} == {
        "f1.jpg",
        "f2.jpg",
    }
    moved = model.search_text("red", k=10, only=Filter(folder=str(album / "moved")))
    assert [Path(h.path).name for h in moved] == ["f0.jpg"]
    assert [len(ids) for ids in refreshed] == [1]


def test_folder_and_dates_hold_for_one_and_the_same_file(tmp_path: Path) -> None:
    """A photo copied into two folders at two dates: a folder of one and the date of the other
    do not find it, in the catalog and in Qdrant's payload alike (`y` makes sure Qdrant is
    asked)."""
    first = make_image(tmp_path / "album" / "a" / "x.jpg", "red")
    second = tmp_path / "album" / "b" / "x.jpg"
    second.parent.mkdir()
    second.write_bytes(first.read_bytes())
    other = make_image(tmp_path / "album" / "a" / "y.jpg", "red", seed=5)
    for path, day in ((first, 1), (second, 20), (other, 20)):
        stamp = datetime(2021, 3, day, 12).timestamp()
        os.utime(path, (stamp, stamp))
    for indexer in ("exact", "qdrant"):
        model = SearchModel(tmp_path / f"collection-{indexer}", ColorEmbedder(), indexer=indexer)
        model.index([tmp_path / "album"])
        a, b = str(first.parent), str(second.parent)
        for folder, day, names in ((a, 1, ["x"]), (a, 20, ["y"]), (b, 20, ["x"]), (b, 1, [])):
            when = date(2021, 3, day)
            hits = model.search_text("red", k=5, only=Filter(folder=folder, since=when, until=when))
            assert [Path(h.path).stem for h in hits] == names, (indexer, folder, day)
        model.close()


def test_the_catalog_says_whose_files_changed_since_a_generation(
    model: SearchModel, album: Path
) -> None:
    catalog, key = model.collection.catalog, model.embedder.key
    before = catalog.generation()
    assert len(catalog.changed_items(key, before)) == 0
    assert len(catalog.changed_items(key, -1)) == 63  # every file was new once
    (album / "elsewhere").mkdir()
    os.replace(album / "few" / "f1.jpg", album / "elsewhere" / "f1.jpg")
    model.index([album])
    moved = catalog.changed_items(key, before)
    assert [Path(p.files[0][0]).parent.name for p in catalog.placements(moved).values()] == [
        "elsewhere"
    ]
    assert len(catalog.changed_items(key, catalog.generation())) == 0
