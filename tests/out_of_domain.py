"""Queries the demo collection cannot answer, in two halves.

`TUNED` is the half looked at while choosing the default cutoff; `HELD_OUT` was written before
the cutoff existed and is never tuned on. Neither overlaps the captions the calibration itself
uses (`imgfinder.relevance.NULL_TEXTS`). The images are made by generators the calibration's
own null images do not use.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

TUNED = (
    "qwertyuiop",
    "asdf ghjk",
    "a dog on the beach",
    "собака на пляже",
    "жираф",
    "a red car at night",
    "a cat sleeping on a sofa",
    "mountains at sunset",
    "кошка на диване",
    "горы на закате",
    "pizza",
    "машина ночью",
    "a wedding party",
    "birthday cake",
    "ёжик в тумане",
    "the eiffel tower",
    "a man riding a bicycle",
    "дети играют в футбол",
    "lorem ipsum dolor",
    "zebra",
    "слон",
    "an apple on a table",
    "яблоко на столе",
    "a crowded train station",
)

HELD_OUT = (
    "zxcvbnm",
    "blorft quandle",
    "a horse in a field",
    "лошадь в поле",
    "a kangaroo",
    "кенгуру",
    "a bowl of soup",
    "тарелка супа",
    "snow on the roofs",
    "снег на крышах",
    "a lighthouse by the sea",
    "маяк у моря",
    "a child with a balloon",
    "ребёнок с воздушным шаром",
    "an old castle",
    "старый замок",
    "people dancing at a concert",
    "люди танцуют на концерте",
    "a laptop on a desk",
    "ноутбук на столе",
    "a green tractor",
    "зелёный трактор",
    "fireworks over the river",
    "салют над рекой",
    "a squirrel in the park",
    "белка в парке",
    "ыврапр олдж",
    "thunderstorm",
    "гроза",
    "a plate of sushi",
)

#: scripts and symbols the demo model cannot read at all
UNREADABLE = ("红色的圆", "赤い丸", "🐶🏖️", "🔴⭕", "κόκκινος κύκλος", "دائرة حمراء")


def out_of_domain_images(count: int, seed: int) -> list[Image.Image]:
    """Pictures of nothing the demo world holds: radial gradients, plasma-like textures,
    line drawings (a house, a tree, waves) and scattered dots."""
    rng = np.random.default_rng(seed)
    makers = (_radial, _plasma, _line_scene, _dots)
    return [makers[i % len(makers)](rng) for i in range(count)]


def _radial(rng: np.random.Generator) -> Image.Image:
    y, x = np.mgrid[0:128, 0:128] / 127.0
    cx, cy = rng.random(2)
    distance = np.hypot(x - cx, y - cy)
    inner, outer = rng.integers(0, 256, (2, 3))
    mix = np.clip(distance / distance.max(), 0, 1)[..., None]
    return Image.fromarray((inner * (1 - mix) + outer * mix).astype(np.uint8))


def _plasma(rng: np.random.Generator) -> Image.Image:
    small = rng.random((8, 8, 3)) * 255
    big = Image.fromarray(small.astype(np.uint8)).resize((128, 128), Image.Resampling.BICUBIC)
    grain = rng.normal(0, 12, (128, 128, 3))
    return Image.fromarray(np.clip(np.asarray(big) + grain, 0, 255).astype(np.uint8))


def _line_scene(rng: np.random.Generator) -> Image.Image:
    sky = tuple(int(v) for v in rng.integers(120, 230, 3))
    image = Image.new("RGB", (128, 128), sky)
    draw = ImageDraw.Draw(image)
    ground = tuple(int(v) for v in rng.integers(30, 140, 3))
    draw.rectangle((0, 90, 128, 128), fill=ground)
    ink = tuple(int(v) for v in rng.integers(0, 90, 3))
    left = int(rng.integers(10, 60))
    draw.line((left, 90, left, 55, left + 25, 40, left + 50, 55, left + 50, 90), fill=ink, width=2)
    for step in range(0, 128, 12):
        draw.arc((step, 95, step + 12, 105), 0, 180, fill=ink)
    trunk = int(rng.integers(80, 118))
    draw.line((trunk, 90, trunk, 60), fill=ink, width=3)
    draw.line((trunk - 10, 70, trunk, 50, trunk + 10, 70), fill=ink, width=2)
    return image


def _dots(rng: np.random.Generator) -> Image.Image:
    base = tuple(int(v) for v in rng.integers(0, 256, 3))
    image = Image.new("RGB", (128, 128), base)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(40, 120))):
        x, y = rng.integers(0, 128, 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.point((int(x), int(y)), fill=colour)
        draw.point((int(x) + 1, int(y)), fill=colour)
    return image
