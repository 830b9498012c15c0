"""Test-time augmentation of image queries: flip-invariant, and the same in every shell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_main
from PIL import Image, ImageDraw, ImageOps

from imgfinder.demo import world
from imgfinder.embedders.augment import embed_augmented, views
from imgfinder.embedders.registry import create_embedder


def lopsided(seed: int) -> Image.Image:
    """A demo scene with a bar down its left side: it looks different mirrored."""
    picture = world.render(world.make_dataset(1, seed=seed)[0], size=97)
    ImageDraw.Draw(picture).rectangle((0, 0, 20, 96), fill=(250, 250, 250))
    return picture


def test_the_views_of_a_mirrored_picture_are_its_views_mirrored() -> None:
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 255, (31, 57, 3), np.uint8))
    plain = sorted(view.tobytes() for view in views(picture))
    mirrored = sorted(view.tobytes() for view in views(ImageOps.mirror(picture)))
    assert plain == mirrored and len(plain) == 4


def test_an_augmented_query_is_flip_invariant() -> None:
    embedder = create_embedder("demo")
    for seed in range(3):
        picture = lopsided(seed)
        plain = embedder.embed_images([picture, ImageOps.mirror(picture)])
        augmented = [embed_augmented(embedder, p) for p in (picture, ImageOps.mirror(picture))]
        assert float(augmented[0] @ augmented[1]) > 0.99999
        assert float(plain[0] @ plain[1]) < 0.999  # without it, the mirror is another query
        assert np.linalg.norm(augmented[0]) == pytest.approx(1.0, abs=1e-5)


def test_shells_augment_as_the_library_does(
    small_demo: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from imgfinder.config import Settings
    from imgfinder.search import SearchModel
    from imgfinder.service import Query, Selection, Service

    collection, _ = small_demo
    query = tmp_path / "query.png"
    lopsided(5).save(query)
    model = SearchModel(collection, "demo", create=False)
    vector = model.encode_image(query, augment=True)
    expected = [(hit.path, hit.score) for hit in model.search_vector(vector, 8, 0.0)]
    assert expected != [
        (hit.path, hit.score) for hit in model.search_vector(model.encode_image(query), 8, 0.0)
    ]
    service = Service(Settings.from_env())
    found = service.find(
        Selection(str(collection), "demo"),
        Query.for_image(query.read_bytes(), augment=True),
        8,
        0.0,
        scale="cosine",
    )
    assert [(hit.path, round(hit.score, 5)) for hit in found.hits] == [
        (path, round(score, 5)) for path, score in expected
    ]
    code, out, err = cli_main(
        monkeypatch, capsys, "search", "--image", str(query), "--augment", "--collection",
        str(collection), "-k", "8", "--threshold", "0", "--scale", "cosine", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert [row["path"] for row in json.loads(out)] == [path for path, _ in expected]
    model.close()
