"""Relevance maps: the map of a query peaks on the object it names, on the torch-free path.

Composites (two or three objects of different shapes and colours) come from the demo world,
which knows each object's box; the demo model has only ever seen one kind per image.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_main
from PIL import Image

from imgfinder.demo import world
from imgfinder.demo.acceptance import map_localisation
from imgfinder.embedders.families.demo import DemoEmbedder
from imgfinder.errors import ConfigError
from imgfinder.explain import relevance_map

SCENES = 200


@pytest.fixture(scope="module")
def demo_embedder() -> DemoEmbedder:
    return DemoEmbedder()


def inside(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    x, y = point
    left, top, right, bottom = box
    return left <= x <= right and top <= y <= bottom


def test_a_text_map_peaks_on_the_object_the_query_names(demo_embedder, record_property) -> None:
    rate, seconds = map_localisation(demo_embedder, SCENES, 20261202)
    median = statistics.median(seconds)
    record_property("peak_in_box", rate)
    record_property("median_seconds", median)
    assert rate >= 0.90, rate
    assert median <= 1.0, median


def test_an_image_map_peaks_on_what_the_two_images_share(demo_embedder) -> None:
    rng = np.random.default_rng(7)
    hits = 0
    for i in range(30):
        scene = world.sample_composite(rng)
        part = scene.parts[i % len(scene.parts)]
        reference = world.render(world.sample_scene(rng, kind=(part.colour, part.shape)), 128)
        target = demo_embedder.embed_images([reference])[0]
        image = world.render_composite(scene, 128)
        hits += inside(relevance_map(demo_embedder, image, target, masks=250).peak, part.box)
    assert hits / 30 >= 0.85, hits


def test_a_wide_image_is_mapped_where_the_model_looks(demo_embedder) -> None:
    """The model sees the centre square: the margins it crops get nothing, and the peak is
    found in the whole image's coordinates."""
    scene = world.sample_composite(np.random.default_rng(3), count=2)
    part = scene.parts[0]
    wide = Image.new("RGB", (256, 128), (128, 128, 128))
    wide.paste(world.render_composite(scene, 128), (64, 0))
    target = demo_embedder.embed_texts([f"a {part.colour} {part.shape}"])[0]
    found = relevance_map(demo_embedder, wide, target)
    assert found.heat.shape == (128, 256)
    assert found.heat[:, :64].max() == 0 and found.heat[:, 192:].max() == 0
    assert found.heat.max() == pytest.approx(1.0, abs=0.02)
    x, y = found.peak
    assert inside(((x * 256 - 64) / 128, y), part.box)
    assert found.overlay().size == wide.size


def test_a_map_is_reproducible_and_follows_the_query(demo_embedder) -> None:
    scene = world.sample_composite(np.random.default_rng(5), count=3)
    image = world.render_composite(scene, 96)
    first, second = (
        demo_embedder.embed_texts([f"a {p.colour} {p.shape}"])[0] for p in scene.parts[:2]
    )
    again = relevance_map(demo_embedder, image, first)
    assert np.array_equal(relevance_map(demo_embedder, image, first).heat, again.heat)
    other = relevance_map(demo_embedder, image, second)
    assert not np.allclose(other.heat, again.heat, atol=0.05)
    with pytest.raises(ConfigError, match="one of masks, gradcam"):
        relevance_map(demo_embedder, image, first, method="saliency")


def test_a_large_photo_is_mapped_at_a_bounded_size(demo_embedder) -> None:
    photo = Image.new("RGB", (4000, 3000), (20, 120, 40))
    found = relevance_map(demo_embedder, photo, demo_embedder.embed_texts(["a red circle"])[0])
    assert found.heat.shape == (384, 512) and found.image.size == (512, 384)


def test_the_cli_writes_the_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMGFINDER_DATA_DIR", str(tmp_path / "data"))
    scene = world.sample_composite(np.random.default_rng(9), count=2)
    part = scene.parts[1]
    picture = tmp_path / "scene.png"
    world.render_composite(scene, 160).save(picture)
    out = tmp_path / "maps" / "map.png"
    query = f"a {part.colour} {part.shape}"
    code, said, _ = cli_main(monkeypatch, capsys, "explain", query, str(picture), "-o", str(out))
    assert code == 0 and "strongest at" in said and "masks" in said, said
    with Image.open(out) as written:
        assert written.size == (160, 160)
    _, details, _ = cli_main(
        monkeypatch, capsys, "explain", query, str(picture), "-o", str(out), "--json"
    )
    assert inside(tuple(json.loads(details)["peak"]), part.box), details
    assert json.loads(details)["views"] == 500
    _, hurried, _ = cli_main(
        monkeypatch,
        capsys,
        "explain",
        query,
        str(picture),
        "-o",
        str(out),
        "--json",
        "--budget",
        "0.001",
    )
    assert json.loads(hurried)["views"] == 50
    code, _, err = cli_main(
        monkeypatch, capsys, "explain", query, str(picture), "-o", str(out), "--budget", "nan"
    )
    assert code == 1 and "time budget is a number of seconds above 0" in err
    code, _, err = cli_main(
        monkeypatch, capsys, "explain", "qwertyuiop", str(picture), "-o", str(out)
    )
    assert code == 1 and err.startswith("error: the demo model knows none of these words")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    code, _, err = cli_main(
        monkeypatch, capsys, "explain", "a red circle", str(broken), "-o", str(out)
    )
    assert code == 1 and "broken.png" in err, err
    code, _, err = cli_main(
        monkeypatch,
        capsys,
        "explain",
        "a red circle",
        str(picture),
        "-o",
        str(out),
        "--method",
        "x",
    )
    assert code == 1 and "one of masks, gradcam" in err, err


def test_a_budget_stops_the_masks_early(demo_embedder) -> None:
    scene = world.sample_composite(np.random.default_rng(4), count=2)
    image = world.render_composite(scene, 96)
    target = demo_embedder.embed_texts(["a red circle"])[0]
    whole = relevance_map(demo_embedder, image, target)
    assert whole.views == 500
    hurried = relevance_map(demo_embedder, image, target, budget=1e-9)
    assert hurried.views == 50 and hurried.heat.max() == pytest.approx(1.0, abs=0.02)
