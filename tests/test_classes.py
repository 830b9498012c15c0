"""Zero-shot classes: items get the nearest label at index time, and a class filter keeps to it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder, cli_main, make_image
from fastapi.testclient import TestClient
from test_api import color_service, index_photos

from imgfinder.api import create_app
from imgfinder.classes import Labels
from imgfinder.demo import world
from imgfinder.errors import ConfigError
from imgfinder.filters import Filter
from imgfinder.search import SearchModel

SHAPES = ("arrow", "circle", "cross", "heart", "ring", "square", "star", "triangle")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory):
    """(SearchModel, {path: shape}) of 240 demo scenes, sorted into their shapes by the demo
    model from the labels alone."""
    base = tmp_path_factory.mktemp("classes")
    rows = world.read_labels(world.write_demo_folder(base / "media", 240, seed=77, size=64))
    model = SearchModel(base / "collection", "demo")
    model.index([base / "media"])
    model.collection.set_labels(Labels(SHAPES, "a {}"))
    yield model, {str(base / "media" / row["path"]): row["shape"] for row in rows}
    model.close()


def test_items_are_sorted_into_the_labels(shapes) -> None:
    model, truth = shapes
    classes = model.classes()
    assert list(classes) == list(SHAPES) and sum(map(len, classes.values())) == len(truth)
    items = model.collection.catalog.items([int(i) for ids in classes.values() for i in ids])
    right = [truth[items[int(i)].path] == label for label, ids in classes.items() for i in ids]
    assert np.mean(right) >= 0.9


def test_a_class_filter_returns_only_that_class_and_fills_k(shapes) -> None:
    model, truth = shapes
    members = set(model.classes()["star"].tolist())
    hits = model.search_text("a red shape", k=20, threshold=-1.0, only=Filter(label="star"))
    assert len(hits) == 20 and {hit.item_id for hit in hits} <= members
    unfiltered = model.search_text("a red shape", k=20, threshold=-1.0)
    assert {hit.item_id for hit in unfiltered} - members  # the filter did change the answer
    folder = sorted({str(Path(path).parent) for path in truth})[0]
    both = model.search_text(
        "a shape", k=50, threshold=-1.0, only=Filter(folder=folder, label="star")
    )
    assert both and all(h.item_id in members and h.path.startswith(folder) for h in both)
    with pytest.raises(ConfigError, match="circle"):
        model.search_text("a shape", only=Filter(label="hexagon"))


def test_new_items_get_their_class_at_index_time(tmp_path: Path) -> None:
    album = tmp_path / "album"
    for number, color in enumerate(("red", "green", "blue")):
        make_image(album / f"{color}.png", color, seed=number)
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    model.collection.set_labels(Labels(("red", "green", "blue"), "{}"))
    model.index([album])
    make_image(album / "more_red.png", "red", seed=9)
    model.index([album])
    labels = model.collection.labels()
    kept = np.load(model.collection.classes_file(model.embedder.key, labels))
    assert len(kept["ids"]) == 4  # classified by the run itself, before any search
    red = {model.collection.catalog.items([int(i)])[int(i)].path for i in model.classes()["red"]}
    assert {Path(p).name for p in red} == {"red.png", "more_red.png"}
    model.collection.set_labels(Labels(("warm", "cold"), "{}"))
    assert sorted(model.classes()) == ["cold", "warm"]  # a new list sorts everything again
    model.close()


def test_shells_keep_to_a_class_as_the_library_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    album = tmp_path / "album"
    for color in ("red", "green", "blue"):
        for number in range(3):
            make_image(album / color / f"{color}_{number}.png", color, seed=number)
    index_photos(tmp_path, album)
    with TestClient(create_app(service=color_service(tmp_path))) as client:
        put = client.put(
            "/collections/photos/labels", json={"names": ["red", "green", "blue"], "prompt": "{}"}
        )
        assert put.status_code == 200 and put.json()["counts"] == {"red": 3, "green": 3, "blue": 3}
        assert client.get("/collections/photos/labels").json()["names"] == ["red", "green", "blue"]
        query = {"q": "red", "label": "green", "k": 5, "threshold": -1, "scale": "cosine"}
        found = client.get("/collections/photos/search", params=query).json()
        assert client.put("/collections/photos/labels", json={"names": ["x"]}).status_code == 400
    library = SearchModel(tmp_path / "data" / "indexes" / "photos", ColorEmbedder())
    expected = library.search_text("red", k=5, threshold=-1.0, only=Filter(label="green"))
    library.close()
    assert [hit["item_id"] for hit in found["hits"]] == [hit.item_id for hit in expected]
    assert all("/green/" in hit.path for hit in expected) and len(expected) == 3
    monkeypatch.setenv("IMGFINDER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGFINDER_EMBEDDER_FACTORY", "test_webapp:color_embedder")
    code, out, err = cli_main(monkeypatch, capsys, "labels", "show", "-c", "photos", "--json")
    assert code == 0 and json.loads(out) == {"red": 3, "green": 3, "blue": 3}, err
    search = ("search", "red", "-c", "photos", "--label", "green", "-k", "5", "--threshold", "-1")
    code, out, err = cli_main(monkeypatch, capsys, *search, "--scale", "cosine", "--json")
    assert code == 0 and [hit["path"] for hit in json.loads(out)] == [h.path for h in expected], err
    code, out, err = cli_main(monkeypatch, capsys, "labels", "set", "warm, cold", "-c", "photos")
    assert code == 0 and "warm" in out
    code, _, err = cli_main(monkeypatch, capsys, "labels", "clear", "-c", "photos")
    assert code == 0 and cli_main(monkeypatch, capsys, "labels", "show", "-c", "photos")[2]
