"""Pad-to-square framing: the model sees a wide picture's edges, and a collection keeps its way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_main
from PIL import Image

from imgfinder.demo import world
from imgfinder.embedders.framing import framed, framing_of_key, pad_to_square
from imgfinder.embedders.registry import create_embedder
from imgfinder.errors import ConfigError


@pytest.fixture(scope="module")
def demo():
    return create_embedder("demo")


def panorama(left: Image.Image, centre: Image.Image, right: Image.Image) -> Image.Image:
    side = centre.width
    wide = Image.new("RGB", (3 * side, side))
    for slot, part in enumerate((left, centre, right)):
        wide.paste(part.resize((side, side)), (slot * side, 0))
    return wide


def test_crop_never_sees_the_edges_and_pad_does(demo) -> None:
    scenes = world.make_dataset(3, seed=7)
    centre = world.render(scenes[0], size=96)
    one = panorama(world.render(scenes[1], size=96), centre, world.render(scenes[2], size=96))
    other = panorama(Image.new("RGB", (96, 96), "white"), centre, Image.new("RGB", (96, 96)))
    cropped, padded = demo, framed(demo, "pad")
    same = cropped.embed_images([one, other])
    assert float(same[0] @ same[1]) > 0.9999  # the ends are cut away before the model
    moved = padded.embed_images([one, other])
    assert float(moved[0] @ moved[1]) < 0.99
    assert padded.input_box(300, 100) == (0, 0, 300, 100) != cropped.input_box(300, 100)


def test_pad_finds_what_is_at_a_wide_pictures_end(demo) -> None:
    """A scene at the left end of a wide picture of its own background: padded, the picture
    matches the scene's caption better than cropped (where the model sees only background)."""
    rng = np.random.default_rng(0)
    cropped, padded = demo, framed(demo, "pad")
    gains = []
    for scene in world.make_dataset(12, seed=11):
        wide = Image.new("RGB", (288, 96), scene.background_rgb)
        wide.paste(world.render(scene, size=96), (0, 0))
        caption = world.phrase(world.describe(scene, rng, 0, 0, 0), "en", rng)
        text = demo.embed_texts([caption])[0]
        seen = padded.embed_images([wide])[0] @ text - cropped.embed_images([wide])[0] @ text
        gains.append(float(seen))
    assert sum(gain > 0 for gain in gains) >= 10 and np.median(gains) > 0.1, gains


def test_pad_to_square_keeps_the_picture_whole() -> None:
    wide = Image.new("RGB", (40, 10), (255, 0, 0))
    square = pad_to_square(wide, (0.5, 0.5, 0.5))
    assert square.size == (40, 40)
    assert square.getpixel((20, 20)) == (255, 0, 0) and square.getpixel((0, 0)) == (128, 128, 128)
    assert pad_to_square(square, (0, 0, 0)) is square
    with pytest.raises(ConfigError, match="framing"):
        framed(create_embedder("demo"), "stretch")


def test_a_padded_collection_stays_padded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = tmp_path / "wide"
    folder.mkdir()
    for number, scene in enumerate(world.make_dataset(6, seed=3)):
        picture = world.render(scene, size=64)
        panorama(picture, picture, picture).save(folder / f"wide_{number}.png")
    collection = tmp_path / "padded"
    code, out, err = cli_main(
        monkeypatch, capsys, "index", str(folder), "--collection", str(collection),
        "--framing", "pad", "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["indexed"] == 6, err
    manifest = json.loads((collection / "manifest.json").read_text())
    assert framing_of_key(manifest["embedder_key"]) == "pad"
    search = ("search", "circle", "--collection", str(collection), "--threshold", "0", "--json")
    code, out, err = cli_main(monkeypatch, capsys, *search)
    assert code == 0 and len(json.loads(out)) == 6, err
    code, out, err = cli_main(monkeypatch, capsys, *search, "--framing", "crop")
    assert code != 0 and "re-index" in err


def test_eval_compares_crop_with_pad(tmp_path: Path) -> None:
    """On a labelled folder of wide pictures whose subject is at one end, `eval` measures
    what padding buys."""
    from imgfinder.eval_run import evaluate, load_labelled

    rng = np.random.default_rng(4)
    for colour, shape in (("red", "circle"), ("blue", "square"), ("yellow", "star")):
        for number in range(4):
            scene = world.sample_scene(rng, kind=(colour, shape))
            wide = Image.new("RGB", (288, 96), scene.background_rgb)
            wide.paste(world.render(scene, size=96), (0 if number % 2 else 192, 0))
            path = tmp_path / "classes" / f"{colour} {shape}" / f"{number}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            wide.save(path)
    data = load_labelled(tmp_path / "classes")
    results = evaluate(data, ["demo"], framings=["crop", "pad"], workdir=tmp_path / "work")
    cropped, padded = results["demo / exact"], results["demo (pad) / exact"]
    assert padded["mAP"] > cropped["mAP"] + 0.2, (cropped, padded)
    assert padded["zero_shot_accuracy"] > cropped["zero_shot_accuracy"]
