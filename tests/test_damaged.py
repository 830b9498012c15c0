"""Damaged collections say what is wrong in one sentence; `check` finds it, `repair` redoes it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import ColorEmbedder
from typer.testing import CliRunner

from imgfinder.cli import app
from imgfinder.errors import CatalogError
from imgfinder.repair import repair
from imgfinder.search import SearchModel
from imgfinder.store.catalog import MIGRATIONS, SCHEMA_VERSION, Catalog
from imgfinder.store.collection import Collection
from imgfinder.store.health import check


def build(path: Path, album: Path, indexer: str = "exact") -> SearchModel:
    model = SearchModel(path, ColorEmbedder(), indexer=indexer)
    model.index([album])
    return model


def results(model: SearchModel) -> list[tuple[str, float]]:
    return [(h.path, round(h.score, 4)) for h in model.search_text("red", k=6)]


def vector_file(collection: Path) -> Path:
    (found,) = (collection / "vectors").iterdir()
    return found


def test_a_deleted_catalog_is_an_error_not_an_empty_collection(tmp_path: Path, album) -> None:
    build(tmp_path / "c", album).close()
    (tmp_path / "c" / "catalog.sqlite").unlink()
    with pytest.raises(CatalogError, match=r"catalog .* is missing"):
        SearchModel(tmp_path / "c", ColorEmbedder(), create=False)
    with pytest.raises(CatalogError, match="is missing"):
        SearchModel(tmp_path / "c", ColorEmbedder())  # even where a new collection may be made
    assert not (tmp_path / "c" / "catalog.sqlite").exists()


@pytest.mark.parametrize("indexer", ["exact", "faiss"])
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_short_or_missing_vectors_are_found_and_repaired(
    tmp_path: Path, album: Path, indexer: str, damage: str
) -> None:
    clean = build(tmp_path / "clean", album, indexer)
    expected = results(clean)
    clean.close()
    model = build(tmp_path / "c", album, indexer)
    model.search_text("red")  # a saved index exists for this generation
    model.close()
    vectors = vector_file(tmp_path / "c")
    if damage == "truncate":
        with open(vectors, "r+b") as handle:
            handle.truncate(vectors.stat().st_size // 2)
    else:
        vectors.unlink()
    with pytest.raises(CatalogError, match="run imgfinder repair"):
        SearchModel(tmp_path / "c", ColorEmbedder(), indexer=indexer).search_text("red")
    collection = Collection(tmp_path / "c", create=False)
    problems = check(collection)
    assert len(problems) == 1 and problems[0].repairable and problems[0].items
    report = repair_with(collection)
    assert sum(report.reembedded.values()) == len(problems[0].items) and not report.left
    assert check(collection) == []
    assert results(SearchModel(collection, ColorEmbedder(), indexer=indexer)) == expected


def repair_with(collection: Collection):
    return repair(collection, embedders=[ColorEmbedder()])


def test_a_damaged_saved_index_is_rebuilt(tmp_path: Path, album: Path) -> None:
    model = build(tmp_path / "c", album)
    expected = results(model)
    model.close()
    (saved,) = (tmp_path / "c" / "index").iterdir()
    (saved / "vectors.npz").write_bytes(b"not an npz")
    collection = Collection(tmp_path / "c", create=False)
    (problem,) = check(collection)
    assert problem.saved_index == saved
    assert repair_with(collection).saved_indexes_removed == 1
    assert check(collection) == []
    assert results(SearchModel(collection, ColorEmbedder())) == expected
    (saved / "vectors.npz").write_bytes(b"not an npz")
    assert results(SearchModel(collection, ColorEmbedder())) == expected  # a search rebuilds it
    assert check(collection) == []  # and saves it again, the writer lock being free


@pytest.mark.parametrize(
    ("manifest", "says"),
    [
        ('{"format_version": "1"}', "format_version is '1'"),
        ('{"format_version": null}', "format_version is None"),
        ("[1, 2]", "not an imgfinder manifest"),
        ('{"format_version": 99}', "newer imgfinder"),
        ("{not json", "cannot read"),
    ],
)
def test_malformed_manifests_are_one_sentence(
    tmp_path: Path, album: Path, manifest: str, says: str
) -> None:
    build(tmp_path / "c", album).close()
    (tmp_path / "c" / "manifest.json").write_text(manifest)
    with pytest.raises(CatalogError, match=says):
        Collection(tmp_path / "c")
    outcome = CliRunner().invoke(app, ["info", "-c", str(tmp_path / "c")])
    assert outcome.exit_code != 0 and isinstance(outcome.exception, CatalogError)


def test_an_old_catalog_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO roots(path) VALUES ('/photos')")
    db.commit()
    db.close()
    catalog = Catalog(path, create=False)
    assert catalog.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert catalog.roots() == ["/photos"]
    indexes = {r[1] for r in catalog._query("PRAGMA index_list(vectors)")}
    assert "vectors_row" in indexes


@pytest.mark.parametrize(
    ("version", "says"), [("99", "newer than this imgfinder"), ("abc", "malformed schema")]
)
def test_newer_or_malformed_catalogs_are_refused(tmp_path: Path, version: str, says: str) -> None:
    path = tmp_path / "catalog.sqlite"
    Catalog(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    db.commit()
    db.close()
    with pytest.raises(CatalogError, match=says):
        Catalog(path)


def test_a_catalog_that_is_not_sqlite_is_one_sentence(tmp_path: Path, album: Path) -> None:
    build(tmp_path / "c", album).close()
    for name in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (tmp_path / "c" / name).unlink(missing_ok=True)
    (tmp_path / "c" / "catalog.sqlite").write_bytes(b"garbage" * 1000)
    with pytest.raises(CatalogError, match="cannot be used"):
        Collection(tmp_path / "c")


def test_check_and_repair_from_the_command_line(tmp_path: Path, album: Path) -> None:
    build(tmp_path / "c", album).close()
    runner = CliRunner()
    sound = runner.invoke(app, ["check", "-c", str(tmp_path / "c")])
    assert sound.exit_code == 0 and "sound" in sound.output
    vector_file(tmp_path / "c").unlink()
    found = runner.invoke(app, ["check", "-c", str(tmp_path / "c"), "--json"])
    assert found.exit_code == 1
    (problem,) = json.loads(found.output)["problems"]
    assert "is missing" in problem["problem"] and problem["repairable"]


def test_a_collection_name_that_is_a_file_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(CatalogError, match="is a file, not a collection folder"):
        Collection(tmp_path / "taken")
