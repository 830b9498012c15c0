"""Combined queries: "red, not circle", and "like this photo, but green".

Measured on the fresh demo world through the facade at the shells' default cutoff (0.95
confidence), the way the page, the CLI and the API ask.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli_main

from imgfinder.config import Settings
from imgfinder.demo import world
from imgfinder.errors import ConfigError
from imgfinder.relevance import DEFAULT_CONFIDENCE, form_name, mixed_null
from imgfinder.service import Query, Selection, Service


@pytest.fixture(scope="module")
def facade(fresh_demo):
    model, scenes, by_path = fresh_demo
    service = Service(Settings.from_env())
    yield service, Selection(str(model.collection.dir), "demo"), scenes, by_path
    service.close()


def top(facade, query: Query, k: int = 10) -> list:
    service, selection, scenes, by_path = facade
    outcome = service.find(selection, query, k, DEFAULT_CONFIDENCE, scale="confidence")
    return [scenes[by_path[hit.path]] for hit in outcome.hits]


def share(found: list, good) -> float:
    """The share of the top 10 that is what was asked for (a short page counts its gaps)."""
    return sum(map(good, found)) / 10


@pytest.mark.parametrize(
    ("positive", "negative"), [("red", "circle"), ("красный", "круг"), ("a red shape", "a circle")]
)
def test_red_not_circle(facade, positive: str, negative: str) -> None:
    found = top(facade, Query.for_text(positive).minus(Query.for_text(negative)))
    assert sum(s.colour == "red" and s.shape != "circle" for s in found) >= 9, found


@pytest.mark.parametrize(("positive", "negative"), [("circle", "red"), ("круг", "красный")])
def test_circle_not_red(facade, positive: str, negative: str) -> None:
    found = top(facade, Query.for_text(positive).minus(Query.for_text(negative)))
    assert sum(s.shape == "circle" and s.colour != "red" for s in found) >= 9, found


def test_not_pushes_away_for_every_colour_and_shape(facade, record_property) -> None:
    """Over all 100 "colour, not shape" and "shape, not colour" pairs, the top 10 hold what
    was asked, and more of it than the positive term alone finds."""
    plain, negated = [], []
    for colour in world.COLOUR_NAMES:
        for shape in world.SHAPE_NAMES:
            for keep, drop, good in (
                (colour, shape, lambda s, c=colour, h=shape: s.colour == c and s.shape != h),
                (shape, colour, lambda s, c=colour, h=shape: s.shape == h and s.colour != c),
            ):
                alone = top(facade, Query.for_text(keep))
                pushed = top(facade, Query.for_text(keep).minus(Query.for_text(drop)))
                plain.append(share(alone, good))
                negated.append(share(pushed, good))
    record_property("good_at_10", (float(np.mean(plain)), float(np.mean(negated))))
    assert np.mean(negated) >= 0.95, np.mean(negated)
    assert np.mean(negated) > np.mean(plain) + 0.05, (np.mean(plain), np.mean(negated))


def test_a_text_moves_an_image_query_toward_it(facade, tmp_path, record_property) -> None:
    """An image of a (colour, shape) plus another colour's name: the results take the new
    colour and keep the shape."""
    rng = np.random.default_rng(41)
    before, after, kept = [], [], []
    for i in range(40):
        colour, shape = world.ALL_KINDS[int(rng.integers(len(world.ALL_KINDS)))]
        picture = tmp_path / f"{i}.png"
        world.render(world.sample_scene(rng, kind=(colour, shape)), 128).save(picture)
        wanted = [c for c in world.COLOUR_NAMES if c != colour][int(rng.integers(9))]
        image = Query.for_image_file(picture)
        alone = top(facade, image)
        mixed = top(facade, image.plus(Query.for_text(wanted)))
        before.append(share(alone, lambda s, c=wanted: s.colour == c))
        after.append(share(mixed, lambda s, c=wanted: s.colour == c))
        kept.append(share(mixed, lambda s, h=shape: s.shape == h))
    record_property("moved", (float(np.mean(before)), float(np.mean(after)), float(np.mean(kept))))
    assert np.mean(before) <= 0.05 and np.mean(after) >= 0.5, (before, after)
    assert np.mean(kept) >= 0.8, kept


def test_weights_are_checked(facade) -> None:
    for bad in (float("nan"), float("inf"), 11.0, -11.0):
        with pytest.raises(ConfigError, match="weight is between -10 and 10"):
            Query.for_text("red").minus(Query.for_text("circle"), bad)
    service, selection, _, _ = facade
    cancelled = Query.for_text("red").minus(Query.for_text("red"), 1.0)
    with pytest.raises(ConfigError, match="cancel each other out"):
        service.find(selection, cancelled, 10, None)


def test_the_cli_says_the_same(facade, tmp_path, monkeypatch, capsys) -> None:
    service, selection, _, _ = facade
    where = selection.collection
    code, out, _ = cli_main(
        monkeypatch, capsys, "search", "red", "--not", "circle", "-c", where, "-k", "10", "--json"
    )
    assert code == 0, out
    library = service.find(
        selection,
        Query.for_text("red").minus(Query.for_text("circle")),
        10,
        DEFAULT_CONFIDENCE,
        scale="confidence",
    )
    assert [hit["path"] for hit in json.loads(out)] == [hit.path for hit in library.hits]
    picture = tmp_path / "blue_star.png"
    world.render(world.sample_scene(np.random.default_rng(2), kind=("blue", "star")), 128).save(
        picture
    )
    code, out, _ = cli_main(
        monkeypatch,
        capsys,
        "search",
        "green",
        "--image",
        str(picture),
        "-c",
        where,
        "-k",
        "10",
        "--json",
    )
    library = service.find(
        selection,
        Query.for_image_file(picture).plus(Query.for_text("green")),
        10,
        DEFAULT_CONFIDENCE,
        scale="confidence",
    )
    assert code == 0 and [hit["path"] for hit in json.loads(out)] == [h.path for h in library.hits]
    code, _, err = cli_main(
        monkeypatch, capsys, "search", "red", "--not", "circle", "--not-weight", "nan", "-c", where
    )
    assert code == 1 and "weight is between -10 and 10" in err


def test_unrelated_queries_that_cancel_out_are_left_out() -> None:
    same = np.tile(np.asarray([[1.0, 0.0, 0.0]], dtype=np.float32), (4, 1))
    other = np.eye(3, dtype=np.float32)[[1, 2, 1, 2]]
    pools = {"text": same, "image": other}
    # text - 1·text cancels in every row: the text pool itself stands in
    assert np.array_equal(mixed_null((("text", 1.0), ("text", -1.0)), pools), same)
    mixed = mixed_null((("image", 1.0), ("text", 1.0)), pools)
    assert mixed.shape == (4, 3) and np.allclose(np.linalg.norm(mixed, axis=1), 1.0)
    assert form_name((("image", 1.0), ("text", -0.5))) == "image-0.5*text"
    with pytest.raises(ConfigError, match="modality must be one of"):
        form_name("video")


def test_a_new_form_never_embeds_the_unrelated_queries_again(
    photo_folder, tmp_path, embedder, monkeypatch
) -> None:
    from imgfinder.relevance import NULL_TEXTS
    from imgfinder.search import SearchModel

    model = SearchModel(tmp_path / "c", embedder)
    model.index([photo_folder])
    batches: list[int] = []
    embed = embedder.embed_texts
    monkeypatch.setattr(
        embedder, "embed_texts", lambda texts: batches.append(len(texts)) or embed(texts)
    )
    for weight in (-0.5, -0.25, 1.0):
        model.calibration((("image", 1.0), ("text", weight)))
    assert batches.count(len(NULL_TEXTS)) == 1, batches
    assert "text" in model.calibration("text").null  # measured and kept on the way
    model.close()
