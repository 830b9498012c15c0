"""The HTTP API's combined queries and relevance maps give the library's answers.

Run on the fresh demo world through an in-process client, at the shells' default cutoff (0.95
confidence); the library's side is a facade of its own, so nothing the API holds is shared.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import FRESH_SCENES, FRESH_WORLD_SEED
from fastapi.testclient import TestClient
from PIL import Image

from imgfinder.api import create_app
from imgfinder.config import Settings
from imgfinder.demo import world
from imgfinder.relevance import DEFAULT_CONFIDENCE
from imgfinder.service import Query, Selection, Service

K = 10


@dataclass(frozen=True)
class Shells:
    """The API's client and the library facade over one collection, and what its scenes are."""

    client: TestClient
    library: Service
    selection: Selection
    base: str
    #: scene (colour, shape, where its objects are, …) by the path the API shows
    scenes: dict[str, world.Scene]


@pytest.fixture(scope="module")
def shells(fresh_demo) -> Iterator[Shells]:
    model, labelled, by_path = fresh_demo
    where = model.collection.dir
    # the labels keep no positions: the world's seed makes the same scenes again, with them
    scenes = world.make_dataset(FRESH_SCENES, FRESH_WORLD_SEED)
    assert [s.kind for s in scenes] == [s.kind for s in labelled]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGFINDER_INDEXES", str(where.parent))
        library = Service(Settings.from_env())
        selection = Selection(str(where), "demo")
        shown = {library.display_name(where, path): scenes[i] for path, i in by_path.items()}
        app = create_app(service=Service(Settings.from_env()))
        with TestClient(app) as client:
            yield Shells(client, library, selection, f"/collections/{where.name}", shown)
        library.close()


def library_hits(shells: Shells, query: Query) -> list[tuple[int, str, float, float | None]]:
    """(item id, shown path, score, confidence) of the library's answer at the default cutoff."""
    found = shells.library.find(shells.selection, query, K, DEFAULT_CONFIDENCE, scale="confidence")
    return [
        (
            hit.item_id,
            shells.library.display_name(shells.selection.collection, hit.path),
            round(hit.score, 6),
            hit.confidence,
        )
        for hit in found.hits
    ]


def api_hits(answer) -> list[tuple[int, str, float, float | None]]:
    """The same four of an API answer's hits."""
    assert answer.status_code == 200, answer.text
    return [
        (hit["item_id"], hit["path"], round(hit["score"], 6), hit["confidence"])
        for hit in answer.json()["hits"]
    ]


def scene_png(colour: str, shape: str, seed: int) -> bytes:
    """A fresh picture of one kind, as an upload."""
    scene = world.sample_scene(np.random.default_rng(seed), kind=(colour, shape))
    buffer = io.BytesIO()
    world.render(scene, 128).save(buffer, "PNG")
    return buffer.getvalue()


def first_of(shells: Shells, colour: str, shape: str) -> tuple[int, world.Scene]:
    """A stored item of one kind with a single object, found by the library."""
    found = shells.library.find(
        shells.selection, Query.for_text(f"{colour} {shape}"), 50, 0.0, scale="confidence"
    )
    for hit in found.hits:
        scene = shells.scenes[shells.library.display_name(shells.selection.collection, hit.path)]
        if scene.kind == (colour, shape) and scene.count == 1:
            return hit.item_id, scene
    raise AssertionError(f"no single {colour} {shape} among the top 50")


def test_red_not_circle_through_get_and_post(shells: Shells) -> None:
    expected = library_hits(shells, Query.for_text("red").minus(Query.for_text("circle")))
    assert expected != library_hits(shells, Query.for_text("red"))  # the "not" counts
    url = f"{shells.base}/search"
    got = shells.client.get(url, params={"q": "red", "not": "circle", "k": K})
    posted = shells.client.post(url, json={"q": "red", "not": ["circle"], "k": K})
    assert api_hits(got) == api_hits(posted) == expected
    found = [shells.scenes[hit["path"]] for hit in got.json()["hits"]]
    assert sum(s.colour == "red" and s.shape != "circle" for s in found) >= 9, found


def test_several_nots_share_their_weight_as_in_the_library(shells: Shells) -> None:
    query = Query.for_text("blue").without(["square", "star"], 0.8)
    params = {"q": "blue", "not": ["square", "star", " "], "not_weight": 0.8, "k": K}
    got = shells.client.get(f"{shells.base}/search", params=params)
    assert api_hits(got) == library_hits(shells, query)


def test_an_uploaded_image_plus_a_text(shells: Shells) -> None:
    data = scene_png("blue", "star", seed=2)
    alone = library_hits(shells, Query.for_image(data))
    for params, query in (
        ({"q": "green"}, Query.for_image(data).plus(Query.for_text("green"))),
        (
            {"q": "green", "text_weight": 2, "not": "star"},
            Query.for_image(data).plus(Query.for_text("green"), 2).minus(Query.for_text("star")),
        ),
    ):
        answer = shells.client.post(
            f"{shells.base}/search/image",
            files={"file": ("star.png", data, "image/png")},
            params={**params, "k": K},
        )
        expected = library_hits(shells, query)
        assert expected and expected != alone and api_hits(answer) == expected, params


def test_more_like_an_item_but_with_a_text(shells: Shells) -> None:
    item, _ = first_of(shells, "blue", "square")
    url = f"{shells.base}/items/{item}/similar"
    alone = library_hits(shells, Query.like(item))
    for params, query in (
        ({"q": "red"}, Query.like(item).plus(Query.for_text("red"))),
        (
            {"q": "red", "text_weight": 2, "not": ["square"], "not_weight": 0.5},
            Query.like(item).plus(Query.for_text("red"), 2).minus(Query.for_text("square"), 0.5),
        ),
    ):
        answer = shells.client.get(url, params={**params, "k": K})
        expected = library_hits(shells, query)
        assert expected and expected != alone and api_hits(answer) == expected, params
        assert item not in [hit[0] for hit in expected]


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "11", "-1"])
def test_bad_weights_are_refused_with_a_sentence(shells: Shells, bad: str) -> None:
    item, _ = first_of(shells, "red", "circle")
    upload = {"file": ("star.png", scene_png("blue", "star", seed=2), "image/png")}
    answers = [
        shells.client.get(f"{shells.base}/search", params={"q": "red", "not_weight": bad}),
        shells.client.post(
            f"{shells.base}/search",
            content=f'{{"q": "red", "not": ["circle"], "not_weight": {bad}}}'.replace(
                "nan", "NaN"
            ).replace("inf", "Infinity"),
            headers={"content-type": "application/json"},
        ),
        shells.client.post(
            f"{shells.base}/search/image", files=upload, params={"q": "red", "text_weight": bad}
        ),
        shells.client.get(
            f"{shells.base}/items/{item}/similar", params={"q": "red", "text_weight": bad}
        ),
        shells.client.get(
            f"{shells.base}/items/{item}/explain", params={"q": "red", "not_weight": bad}
        ),
    ]
    for answer in answers:
        assert answer.status_code in (400, 422), answer.text
        message = answer.json()["error"]
        assert "weight" in message and message.endswith(".") and "\n" not in message, message


def test_a_relevance_map_of_a_text_is_the_library_s(shells: Shells) -> None:
    item, scene = first_of(shells, "yellow", "triangle")
    query = f"a {scene.colour} {scene.shape}"
    answer = shells.client.get(f"{shells.base}/items/{item}/explain", params={"q": query})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    shown = Image.open(io.BytesIO(answer.content))
    original = Image.open(
        io.BytesIO(shells.client.get(f"{shells.base}/items/{item}/original").content)
    )
    assert shown.size == original.size == (128, 128)
    peak = (float(answer.headers["X-Peak-X"]), float(answer.headers["X-Peak-Y"]))
    assert all(0.0 <= value <= 1.0 for value in peak), peak
    ((x, y, radius, _),) = scene.objects
    assert math.dist(peak, (x, y)) <= radius * 1.5, (peak, scene.objects)
    assert answer.headers["X-Method"] == "masks"
    expected = shells.library.explain(shells.selection, Query.for_text(query), item)
    assert float(answer.headers["X-Score"]) == pytest.approx(expected.score, abs=1e-6)
    assert peak == pytest.approx(expected.peak, abs=1e-4)
    assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(expected.overlay()))


def test_a_relevance_map_of_a_likeness_with_a_not(shells: Shells) -> None:
    item, _ = first_of(shells, "green", "star")
    other, _ = first_of(shells, "green", "square")
    params = {"like": other, "not": "square"}
    answer = shells.client.get(f"{shells.base}/items/{item}/explain", params=params)
    assert answer.status_code == 200, answer.text
    query = Query.like(other).minus(Query.for_text("square"))
    expected = shells.library.explain(shells.selection, query, item)
    assert float(answer.headers["X-Score"]) == pytest.approx(expected.score, abs=1e-6)


def test_a_relevance_map_by_gradient(shells: Shells) -> None:
    pytest.importorskip("torch")
    item, _ = first_of(shells, "red", "circle")
    params = {"q": "a red circle", "method": "gradcam"}
    answer = shells.client.get(f"{shells.base}/items/{item}/explain", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Method"] == "gradcam"
    assert Image.open(io.BytesIO(answer.content)).size == (128, 128)


@pytest.mark.parametrize(
    ("item", "params", "status", "start"),
    [
        (None, {"q": "qwertyuiop"}, 400, "The demo model knows none of these words"),
        (None, {}, 400, "Explain needs a text q, an item to look like, or both"),
        (None, {"q": "red", "method": "heat"}, 422, "Method: "),
        (None, {"q": "red", "not": "red", "not_weight": 1}, 400, "The query's terms cancel"),
        (987654321, {"q": "red"}, 404, "There is no item 987654321"),
    ],
)
def test_a_relevance_map_refused_with_the_library_s_sentence(
    shells: Shells, item: int | None, params: dict, status: int, start: str
) -> None:
    if item is None:
        item, _ = first_of(shells, "red", "circle")
    answer = shells.client.get(f"{shells.base}/items/{item}/explain", params=params)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert message.startswith(start) and message.endswith("."), message


def test_a_map_s_time_budget_is_checked_and_kept(shells: Shells) -> None:
    item, _ = first_of(shells, "yellow", "triangle")
    url = f"{shells.base}/items/{item}/explain"
    for bad in ("nan", "inf", "0", "-1", "601"):
        answer = shells.client.get(url, params={"q": "a yellow triangle", "budget": bad})
        assert answer.status_code in (400, 422), answer.text
        assert "budget" in answer.json()["error"].lower(), answer.text
    hurried = shells.client.get(url, params={"q": "a yellow triangle", "budget": "0.001"})
    assert hurried.status_code == 200 and hurried.headers["content-type"] == "image/png"
