"""Folder and date filters through every shell: the API and the CLI return what the library does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from conftest import ColorEmbedder, cli_main, dated_album, make_image
from fastapi.testclient import TestClient
from test_api import color_service, index_photos

from imgfinder.api import create_app
from imgfinder.filters import Filter
from imgfinder.search import SearchModel


@pytest.fixture
def album(tmp_path: Path) -> Path:
    return index_photos(tmp_path, dated_album(tmp_path / "album"))


@pytest.fixture
def library(tmp_path: Path, album: Path) -> Iterator[SearchModel]:
    model = SearchModel(tmp_path / "data" / "indexes" / "photos", ColorEmbedder())
    yield model
    model.close()


@pytest.fixture
def client(tmp_path: Path, album: Path) -> Iterator[TestClient]:
    with TestClient(create_app(service=color_service(tmp_path))) as test_client:
        yield test_client


CASES = [
    ({"folder": "few"}, "few", None, None),
    ({"since": "2019-07-01", "until": "2019-07-31"}, None, "2019-07-01", "2019-07-31"),
    ({"since": "2022-01-01", "kind": "image"}, None, "2022-01-01", None),
]


@pytest.mark.parametrize(("params", "folder", "since", "until"), CASES)
def test_the_api_filters_as_the_library_does(
    client: TestClient,
    library: SearchModel,
    album: Path,
    params: dict,
    folder: str | None,
    since: str | None,
    until: str | None,
) -> None:
    only = Filter(params.get("kind"), str(album / folder) if folder else None, since, until)
    expected = [h.item_id for h in library.search_text("green", k=5, only=only)]
    assert expected
    query = {"q": "green", "k": 5, "threshold": -1, "scale": "cosine", **params}
    got = client.get("/collections/photos/search", params=query).json()
    assert [h["item_id"] for h in got["hits"]] == expected
    posted = client.post("/collections/photos/search", json=query).json()
    assert [h["item_id"] for h in posted["hits"]] == expected
    first = expected[0]
    like_query = {key: value for key, value in query.items() if key != "q"}
    similar = client.get(f"/collections/photos/items/{first}/similar", params=like_query)
    similar = similar.json()
    like = library.similar(first, k=5, threshold=-1, only=only)
    assert ranked((h["item_id"], h["score"]) for h in similar["hits"]) == ranked(
        (h.item_id, h.score) for h in like
    )


def ranked(hits) -> list[tuple[float, int]]:
    """Hits by score, equal scores (look-alike images) by id, whichever order a search gave."""
    return sorted((-round(score, 5), item) for item, score in hits)


def test_the_api_says_why_a_filter_finds_nothing(client: TestClient) -> None:
    query = {"q": "red", "since": "2030-01-01", "threshold": -1, "scale": "cosine"}
    answer = client.get("/collections/photos/search", params=query).json()
    assert answer["hits"] == [] and answer["empty"] == "filtered_out"
    bad = client.get("/collections/photos/search", params={"q": "red", "since": "soon"})
    assert bad.status_code == 422
    backwards = {"q": "red", "since": "2020-02-01", "until": "2020-01-01"}
    reply = client.get("/collections/photos/search", params=backwards)
    assert reply.status_code == 400 and "before it starts" in reply.json()["error"]


def test_the_cli_filters_as_the_library_does(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    library: SearchModel,
    album: Path,
) -> None:
    monkeypatch.setenv("IMGFINDER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGFINDER_EMBEDDER_FACTORY", "test_webapp:color_embedder")
    monkeypatch.chdir(album)
    only = Filter(folder=str(album / "many"), since="2019-07-01")
    expected = [h.path for h in library.search_text("blue", k=4, only=only)]
    args = ["search", "blue", "-c", "photos", "-k", "4", "--threshold", "-1", "--scale", "cosine"]
    filters = ["--folder", "many", "--since", "2019-07-01"]
    code, out, err = cli_main(monkeypatch, capsys, *args, *filters, "--json")
    assert code == 0, err
    assert [hit["path"] for hit in json.loads(out)] == expected
    code, out, err = cli_main(monkeypatch, capsys, *args, "--until", "1999-01-01")
    assert code == 0 and "nothing in this collection passes --until" in err  # only the one given
    code, out, err = cli_main(
        monkeypatch, capsys, *args, "--folder", "many", "--since", "2031-01-01"
    )
    assert code == 0 and "passes --folder and --since" in err
    code, out, err = cli_main(monkeypatch, capsys, *args, "--folder", "mnay")
    said = " ".join(err.split())  # the console wraps long lines
    assert code == 0 and f"passes --folder (there is no folder {album / 'mnay'})" in said
    code, out, err = cli_main(monkeypatch, capsys, *args, "--since", "yesterday")
    assert code != 0 and "YYYY-MM-DD" in err


def test_the_folders_offered_follow_the_collection(tmp_path: Path, album: Path) -> None:
    """Kept per generation for the page's reruns, yet new after an index run."""
    service = color_service(tmp_path)
    collection = tmp_path / "data" / "indexes" / "photos"
    before = service.folders(collection)
    assert before == [str(album), str(album / "few"), str(album / "many")]
    assert service.folders(collection) is before  # the page's next rerun reads nothing
    make_image(album / "new" / "n.jpg", "red")
    index_photos(tmp_path, album)
    assert service.folders(collection) == [*before, str(album / "new")]
    assert service.taken_span(collection)[1] == date.today()
