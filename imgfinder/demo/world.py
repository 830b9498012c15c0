"""A deterministic synthetic world of shapes, with captions in English and grammatical Russian.

The demo model is trained and evaluated here, so the world is explicit data: every scene has
attributes (colour, shape, size, count, background) and every caption is generated from a
`Spec` (the subset of attributes it mentions), which is also what decides relevance. Some
colour-shape pairs and some phrasing templates are held out of training so evaluation can
measure composition and robustness to wording rather than memorisation.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# --------------------------------------------------------------------------- vocabulary

CASES = ("nom", "gen", "dat", "acc", "ins", "prep")

#: adjective endings by declension type, then gender or "pl", in the order of CASES
#: (accusative is the inanimate one: every noun of this world is inanimate)
_ADJ_ENDINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "hard": {  # красный
        "m": ("ый", "ого", "ому", "ый", "ым", "ом"),
        "f": ("ая", "ой", "ой", "ую", "ой", "ой"),
        "n": ("ое", "ого", "ому", "ое", "ым", "ом"),
        "pl": ("ые", "ых", "ым", "ые", "ыми", "ых"),
    },
    "soft": {  # синий
        "m": ("ий", "его", "ему", "ий", "им", "ем"),
        "f": ("яя", "ей", "ей", "юю", "ей", "ей"),
        "n": ("ее", "его", "ему", "ее", "им", "ем"),
        "pl": ("ие", "их", "им", "ие", "ими", "их"),
    },
    "velar": {  # маленький, мелкий: ы → и after к
        "m": ("ий", "ого", "ому", "ий", "им", "ом"),
        "f": ("ая", "ой", "ой", "ую", "ой", "ой"),
        "n": ("ое", "ого", "ому", "ое", "им", "ом"),
        "pl": ("ие", "их", "им", "ие", "ими", "их"),
    },
    "stressed": {  # большой: stressed ending, ы → и after ш
        "m": ("ой", "ого", "ому", "ой", "им", "ом"),
        "f": ("ая", "ой", "ой", "ую", "ой", "ой"),
        "n": ("ое", "ого", "ому", "ое", "им", "ом"),
        "pl": ("ие", "их", "им", "ие", "ими", "их"),
    },
}


@dataclass(frozen=True)
class RuAdjective:
    """A Russian adjective as stem + declension type."""

    stem: str
    kind: str = "hard"

    def form(self, gender: str, case: str, number: str = "sg") -> str:
        """The form agreeing with a noun of `gender` in `case` and `number` ("sg" or "pl")."""
        key = "pl" if number == "pl" else gender
        return self.stem + _ADJ_ENDINGS[self.kind][key][CASES.index(case)]


@dataclass(frozen=True)
class RuNoun:
    """A Russian noun with all twelve forms spelled out (irregular plurals are common)."""

    gender: str
    singular: tuple[str, str, str, str, str, str]
    plural: tuple[str, str, str, str, str, str]

    def form(self, case: str, number: str = "sg") -> str:
        """The form in `case` ("nom", "gen", "dat", "acc", "ins", "prep") and number."""
        forms = self.plural if number == "pl" else self.singular
        return forms[CASES.index(case)]


def _noun(gender: str, singular: str, plural: str) -> RuNoun:
    sg, pl = tuple(singular.split()), tuple(plural.split())
    assert len(sg) == 6 and len(pl) == 6
    return RuNoun(gender, sg, pl)  # type: ignore[arg-type]


#: cardinal numerals by gender ("m", "f", "n") and case
_RU_NUMERALS: dict[int, dict[str, tuple[str, ...]]] = {
    1: {
        "m": ("один", "одного", "одному", "один", "одним", "одном"),
        "f": ("одна", "одной", "одной", "одну", "одной", "одной"),
        "n": ("одно", "одного", "одному", "одно", "одним", "одном"),
    },
    2: {
        "m": ("два", "двух", "двум", "два", "двумя", "двух"),
        "f": ("две", "двух", "двум", "две", "двумя", "двух"),
        "n": ("два", "двух", "двум", "два", "двумя", "двух"),
    },
    3: {g: ("три", "трёх", "трём", "три", "тремя", "трёх") for g in "mfn"},
}


def ru_numeral(count: int, gender: str, case: str) -> str:
    """«один/одна/одно», «два/две», «три» in the given case."""
    return _RU_NUMERALS[count][gender][CASES.index(case)]


@dataclass(frozen=True)
class Colour:
    name: str
    rgb: tuple[int, int, int]
    en: tuple[str, ...]
    ru: tuple[RuAdjective, ...]


@dataclass(frozen=True)
class Shape:
    name: str
    en: tuple[tuple[str, str], ...]  # (singular, plural) synonyms, the first is canonical
    ru: tuple[RuNoun, ...]


COLOURS: tuple[Colour, ...] = (
    Colour("red", (220, 32, 36), ("red",), (RuAdjective("красн"),)),
    Colour("orange", (247, 136, 10), ("orange",), (RuAdjective("оранжев"),)),
    Colour("yellow", (250, 218, 30), ("yellow",), (RuAdjective("жёлт"),)),
    Colour("green", (34, 160, 60), ("green",), (RuAdjective("зелён"),)),
    Colour("blue", (30, 70, 215), ("blue",), (RuAdjective("син", "soft"),)),
    Colour("purple", (135, 45, 185), ("purple", "violet"), (RuAdjective("фиолетов"),)),
    Colour("pink", (248, 125, 190), ("pink",), (RuAdjective("розов"),)),
    Colour("brown", (125, 72, 30), ("brown",), (RuAdjective("коричнев"),)),
    Colour("black", (22, 22, 24), ("black",), (RuAdjective("чёрн"),)),
    Colour("white", (246, 246, 244), ("white",), (RuAdjective("бел"),)),
)

SHAPES: tuple[Shape, ...] = (
    Shape(
        "circle",
        (("circle", "circles"), ("disc", "discs")),
        (
            _noun(
                "m",
                "круг круга кругу круг кругом круге",
                "круги кругов кругам круги кругами кругах",
            ),
            _noun(
                "m",
                "кружок кружка кружку кружок кружком кружке",
                "кружки кружков кружкам кружки кружками кружках",
            ),
        ),
    ),
    Shape(
        "square",
        (("square", "squares"),),
        (
            _noun(
                "m",
                "квадрат квадрата квадрату квадрат квадратом квадрате",
                "квадраты квадратов квадратам квадраты квадратами квадратах",
            ),
        ),
    ),
    Shape(
        "triangle",
        (("triangle", "triangles"),),
        (
            _noun(
                "m",
                "треугольник треугольника треугольнику треугольник треугольником треугольнике",
                "треугольники треугольников треугольникам "
                "треугольники треугольниками треугольниках",
            ),
        ),
    ),
    Shape(
        "star",
        (("star", "stars"),),
        (
            _noun(
                "f",
                "звезда звезды звезде звезду звездой звезде",
                "звёзды звёзд звёздам звёзды звёздами звёздах",
            ),
            _noun(
                "f",
                "звёздочка звёздочки звёздочке звёздочку звёздочкой звёздочке",
                "звёздочки звёздочек звёздочкам звёздочки звёздочками звёздочках",
            ),
        ),
    ),
    Shape(
        "heart",
        (("heart", "hearts"),),
        (
            _noun(
                "n",
                "сердце сердца сердцу сердце сердцем сердце",
                "сердца сердец сердцам сердца сердцами сердцах",
            ),
            _noun(
                "n",
                "сердечко сердечка сердечку сердечко сердечком сердечке",
                "сердечки сердечек сердечкам сердечки сердечками сердечках",
            ),
        ),
    ),
    Shape(
        "cross",
        (("cross", "crosses"), ("plus", "pluses")),
        (
            _noun(
                "m",
                "крест креста кресту крест крестом кресте",
                "кресты крестов крестам кресты крестами крестах",
            ),
            _noun(
                "m",
                "крестик крестика крестику крестик крестиком крестике",
                "крестики крестиков крестикам крестики крестиками крестиках",
            ),
        ),
    ),
    Shape(
        "ring",
        (("ring", "rings"),),
        (
            _noun(
                "n",
                "кольцо кольца кольцу кольцо кольцом кольце",
                "кольца колец кольцам кольца кольцами кольцах",
            ),
        ),
    ),
    Shape(
        "arrow",
        (("arrow", "arrows"),),
        (
            _noun(
                "f",
                "стрелка стрелки стрелке стрелку стрелкой стрелке",
                "стрелки стрелок стрелкам стрелки стрелками стрелках",
            ),
        ),
    ),
)

SIZES = ("small", "large")
_SIZE_EN = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
_SIZE_RU = {
    "small": (RuAdjective("маленьк", "velar"), RuAdjective("небольш", "stressed")),
    "large": (RuAdjective("больш", "stressed"), RuAdjective("крупн"), RuAdjective("огромн")),
}

#: background colours: names shared with object colours, paler or darker shades
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 248),
    "black": (14, 14, 16),
    "grey": (128, 128, 130),
    "blue": (95, 145, 230),
    "green": (110, 190, 110),
    "yellow": (246, 226, 120),
}
_BG_EN = {"grey": ("grey", "gray")}
_BG_RU = {
    "white": RuAdjective("бел"),
    "black": RuAdjective("чёрн"),
    "grey": RuAdjective("сер"),
    "blue": RuAdjective("син", "soft"),
    "green": RuAdjective("зелён"),
    "yellow": RuAdjective("жёлт"),
}
TEXTURES = ("plain", "plain", "gradient", "noise")

_RU_HEAD = (
    _noun(
        "f",
        "фигура фигуры фигуре фигуру фигурой фигуре",
        "фигуры фигур фигурам фигуры фигурами фигурах",
    ),
    _noun(
        "m",
        "предмет предмета предмету предмет предметом предмете",
        "предметы предметов предметам предметы предметами предметах",
    ),
)
_EN_HEAD = (("shape", "shapes"), ("object", "objects"), ("figure", "figures"))
_RU_COLOUR_NOUN = _noun(
    "m", "цвет цвета цвету цвет цветом цвете", "цвета цветов цветам цвета цветами цветах"
)

COLOUR_NAMES = tuple(c.name for c in COLOURS)
SHAPE_NAMES = tuple(s.name for s in SHAPES)
BACKGROUND_NAMES = tuple(BACKGROUNDS)
_COLOUR = {c.name: c for c in COLOURS}
_SHAPE = {s.name: s for s in SHAPES}

#: colour-shape pairs that training never sees, one per shape, so composition can be measured
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("purple", "star"),
    ("orange", "ring"),
    ("green", "heart"),
    ("blue", "triangle"),
    ("pink", "cross"),
    ("brown", "square"),
    ("yellow", "arrow"),
    ("black", "circle"),
)
ALL_KINDS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOUR_NAMES for s in SHAPE_NAMES)
TRAIN_KINDS: tuple[tuple[str, str], ...] = tuple(k for k in ALL_KINDS if k not in HELD_OUT_PAIRS)

# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Scene:
    """One image of the world: `count` identical objects on a background."""

    colour: str
    shape: str
    size: str
    count: int
    background: str
    texture: str
    #: (centre x, centre y, radius, angle in degrees), coordinates as fractions of the side
    objects: tuple[tuple[float, float, float, float], ...]
    rgb: tuple[int, int, int]
    background_rgb: tuple[int, int, int]
    noise_seed: int

    @property
    def kind(self) -> tuple[str, str]:
        """(colour, shape): the class for zero-shot and image→image evaluation."""
        return (self.colour, self.shape)


def _jitter(rgb: Sequence[int], rng: np.random.Generator, amount: float) -> tuple[int, int, int]:
    shift = rng.normal(0.0, amount, 3) + rng.normal(0.0, amount)
    return tuple(int(v) for v in np.clip(np.asarray(rgb) + shift, 0, 255))  # type: ignore[return-value]


def _place(count: int, size: str, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Non-overlapping (x, y, r) inside the unit square, by rejection sampling."""
    if size == "small":
        low, high = 0.085, 0.125
    elif count == 1:
        low, high = 0.2, 0.3
    else:
        low, high = 0.17, 0.205
    radius = float(rng.uniform(low, high))
    margin = 0.03
    for _ in range(200):
        points: list[tuple[float, float, float]] = []
        for _ in range(count):
            for _ in range(50):
                x, y = rng.uniform(radius + margin, 1 - radius - margin, 2)
                if all(math.hypot(x - px, y - py) > 2 * radius + margin for px, py, _ in points):
                    points.append((float(x), float(y), radius))
                    break
        if len(points) == count:
            return points
    return [(0.5, 0.5, radius)] * count  # not reached with these sizes; keeps the type total


def sample_scene(
    rng: np.random.Generator,
    kind: tuple[str, str] | None = None,
    kinds: Sequence[tuple[str, str]] = TRAIN_KINDS,
) -> Scene:
    """A random scene of `kind` (or of a random one of `kinds`)."""
    if kind is None:
        kind = kinds[int(rng.integers(len(kinds)))]
    colour, shape = kind
    size = SIZES[int(rng.integers(2))]
    count = int(rng.integers(1, 4))
    backgrounds = [b for b in BACKGROUND_NAMES if b != colour]
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    spin = 180.0 if shape == "star" else 22.0
    objects = tuple(
        (x, y, r, float(rng.uniform(-spin, spin))) for x, y, r in _place(count, size, rng)
    )
    return Scene(
        colour=colour,
        shape=shape,
        size=size,
        count=count,
        background=background,
        texture=texture,
        objects=objects,
        rgb=_jitter(_COLOUR[colour].rgb, rng, 9.0),
        background_rgb=_jitter(BACKGROUNDS[background], rng, 7.0),
        noise_seed=int(rng.integers(2**31)),
    )


def make_dataset(n: int, seed: int, kinds: Sequence[tuple[str, str]] = ALL_KINDS) -> list[Scene]:
    """`n` scenes balanced over `kinds` (each kind n/len(kinds) times, in shuffled order)."""
    rng = np.random.default_rng(seed)
    order = [kinds[i % len(kinds)] for i in range(n)]
    rng.shuffle(order)  # type: ignore[arg-type]
    return [sample_scene(rng, kind=tuple(k)) for k in order]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rendering


def _unit_polygon(shape: str) -> np.ndarray:
    """Outline of a shape of visual radius 1 centred on the origin (y points down)."""
    if shape == "square":
        return np.array([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)])
    if shape == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        return np.stack([np.cos(angles), np.sin(angles) + 0.12], 1) * 1.12
    if shape == "star":
        angles = np.deg2rad(np.arange(10) * 36 - 90)
        radii = np.where(np.arange(10) % 2 == 0, 1.1, 0.45)
        return np.stack([np.cos(angles) * radii, np.sin(angles) * radii + 0.05], 1)
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y + 2.5], 1) / 16.5
    if shape == "cross":
        a, b = 1.0, 0.34
        return np.array(
            [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b),
             (-a, b), (-a, -b), (-b, -b)]
        )  # fmt: skip
    if shape == "arrow":
        return np.array(
            [(0, -1.05), (0.8, -0.1), (0.3, -0.1), (0.3, 1.0), (-0.3, 1.0), (-0.3, -0.1),
             (-0.8, -0.1)]
        )  # fmt: skip
    raise ValueError(f"no polygon for {shape}")


_POLYGONS = {s: _unit_polygon(s) for s in SHAPE_NAMES if s not in ("circle", "ring")}


def _outline(shape: str, x: float, y: float, r: float, angle: float) -> np.ndarray:
    """The polygon of a non-round shape, placed and rotated, in the caller's units."""
    theta = math.radians(angle)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return _POLYGONS[shape] @ rot.T * r + (x, y)


def _draw_object(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, angle: float):
    if shape in ("circle", "ring"):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        if shape == "ring":
            q = r * 0.56
            draw.ellipse((x - q, y - q, x + q, y + q), fill=0)
        return
    draw.polygon([tuple(p) for p in _outline(shape, x, y, r, angle).tolist()], fill=255)


def _background(scene: Scene | Composite, size: int) -> np.ndarray:
    base = np.asarray(scene.background_rgb, dtype=np.float32)
    if scene.texture == "plain":
        return np.broadcast_to(base, (size, size, 3)).copy()
    rng = np.random.default_rng(scene.noise_seed)
    if scene.texture == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        field_ = np.cos(theta) * ramp[None, :] + np.sin(theta) * ramp[:, None]
        light = field_[..., None] * float(rng.uniform(18, 34))
        return np.clip(base + light, 0, 255)
    coarse = rng.normal(0.0, 1.0, (6, 6)).astype(np.float32)
    blobs = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    grain = rng.normal(0.0, 5.0, (size, size, 1)).astype(np.float32)
    return np.clip(base + np.asarray(blobs)[..., None] * 14.0 + grain, 0, 255)


def _coverage(objects: Iterable[tuple[str, float, float, float, float]], size: int, factor: int):
    """float32[size, size, 1] anti-aliased coverage of (shape, x, y, r, angle) objects."""
    big = size * factor
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for shape, x, y, r, angle in objects:
        _draw_object(draw, shape, x * big, y * big, r * big, angle)
    return np.asarray(mask.reduce(factor), dtype=np.float32)[..., None] / 255.0


def render(scene: Scene, size: int = 64, supersample: int | None = None) -> Image.Image:
    """Draw a scene as an RGB image `size` pixels square, anti-aliased by supersampling."""
    factor = supersample or max(2, math.ceil(256 / size))
    alpha = _coverage(((scene.shape, *o) for o in scene.objects), size, factor)
    colour = np.asarray(scene.rgb, dtype=np.float32)
    pixels = _background(scene, size) * (1.0 - alpha) + colour * alpha
    return Image.fromarray(np.round(pixels).astype(np.uint8), mode="RGB")


# --------------------------------------------------------------------------- composites


@dataclass(frozen=True)
class Part:
    """One object of a composite: its kind, placement (fractions of the side) and colour."""

    colour: str
    shape: str
    x: float
    y: float
    r: float
    angle: float
    rgb: tuple[int, int, int]

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of what is drawn, as fractions of the side."""
        if self.shape in ("circle", "ring"):
            return (self.x - self.r, self.y - self.r, self.x + self.r, self.y + self.r)
        points = _outline(self.shape, self.x, self.y, self.r, self.angle)
        (left, top), (right, bottom) = points.min(axis=0), points.max(axis=0)
        return (float(left), float(top), float(right), float(bottom))


@dataclass(frozen=True)
class Composite:
    """Two or three objects of different shapes and colours on one background.

    The training world never mixes kinds; composites are where a relevance map has to say
    which object a query is about, and the boxes say where that object is.
    """

    parts: tuple[Part, ...]
    background: str
    texture: str
    background_rgb: tuple[int, int, int]
    noise_seed: int


def sample_composite(rng: np.random.Generator, count: int | None = None) -> Composite:
    """A random composite of `count` (2 or 3 when None) parts, no two alike in shape or colour."""
    count = count or int(rng.integers(2, 4))
    shapes = rng.choice(SHAPE_NAMES, size=count, replace=False)
    colours = rng.choice(COLOUR_NAMES, size=count, replace=False)
    backgrounds = [b for b in BACKGROUND_NAMES if b not in colours]
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    parts = tuple(
        Part(
            colour=str(colour),
            shape=str(shape),
            x=x,
            y=y,
            r=r,
            angle=float(rng.uniform(-22.0, 22.0)),
            rgb=_jitter(_COLOUR[str(colour)].rgb, rng, 9.0),
        )
        for colour, shape, (x, y, r) in zip(
            colours, shapes, _place(count, "large", rng), strict=True
        )
    )
    return Composite(
        parts=parts,
        background=background,
        texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        background_rgb=_jitter(BACKGROUNDS[background], rng, 7.0),
        noise_seed=int(rng.integers(2**31)),
    )


def render_composite(scene: Composite, size: int = 64, supersample: int | None = None):
    """Draw a composite as an RGB image `size` pixels square, later parts over earlier ones."""
    factor = supersample or max(2, math.ceil(256 / size))
    pixels = _background(scene, size)
    for part in scene.parts:
        alpha = _coverage([(part.shape, part.x, part.y, part.r, part.angle)], size, factor)
        pixels = pixels * (1.0 - alpha) + np.asarray(part.rgb, dtype=np.float32) * alpha
    return Image.fromarray(np.round(pixels).astype(np.uint8), mode="RGB")


# --------------------------------------------------------------------------- specs & captions


@dataclass(frozen=True)
class Spec:
    """What a caption or query says; `None` means "not mentioned", so anything matches.

    `plural` marks a plural without a number ("red circles"), meaning two or more.
    """

    colour: str | None = None
    shape: str | None = None
    size: str | None = None
    count: int | None = None
    plural: bool = False
    background: str | None = None

    def matches(self, scene: Scene) -> bool:
        """True when the description is true of `scene`: this decides relevance everywhere."""
        return (
            (self.colour is None or self.colour == scene.colour)
            and (self.shape is None or self.shape == scene.shape)
            and (self.size is None or self.size == scene.size)
            and (self.count is None or self.count == scene.count)
            and (not self.plural or scene.count >= 2)
            and (self.background is None or self.background == scene.background)
        )

    @property
    def is_plural(self) -> bool:
        """Whether the wording needs plural nouns (and "are")."""
        return self.plural or (self.count or 1) > 1


def describe(
    scene: Scene,
    rng: np.random.Generator,
    p_size: float = 0.4,
    p_count: float = 0.4,
    p_background: float = 0.4,
    p_partial: float = 0.0,
) -> Spec:
    """A random true description of `scene`: colour and shape, each other attribute maybe."""
    colour: str | None = scene.colour
    shape: str | None = scene.shape
    if p_partial and rng.random() < p_partial:
        if rng.random() < 0.5:
            colour = None
        else:
            shape = None
    count: int | None = None
    plural = False
    if rng.random() < p_count:
        count = scene.count
    elif scene.count > 1 and rng.random() < 0.5:
        plural = True
    return Spec(
        colour=colour,
        shape=shape,
        size=scene.size if rng.random() < p_size else None,
        count=count,
        plural=plural,
        background=scene.background if rng.random() < p_background else None,
    )


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _english_np(spec: Spec, rng: np.random.Generator) -> str:
    """English noun phrase with article or number: "two small red circles"."""
    if spec.shape is not None:
        singular, plural = (
            _pick(rng, _SHAPE[spec.shape].en) if rng.random() < 0.25 else (_SHAPE[spec.shape].en[0])
        )
    else:
        singular, plural = _pick(rng, _EN_HEAD)
    noun = plural if spec.is_plural else singular
    size = _pick(rng, _SIZE_EN[spec.size]) if spec.size else None
    colour = None
    if spec.colour is not None:
        words = _COLOUR[spec.colour].en
        colour = words[0] if rng.random() < 0.8 else _pick(rng, words)
    style = rng.random()
    if colour and style < 0.12:  # "a small circle in red", "circles coloured red"
        head = " ".join(w for w in (size, noun) if w)
        tail = _pick(rng, ("in {c}", "coloured {c}", "colored {c}", "of {c} colour"))
        words = [head, tail.format(c=colour)]
    else:
        adjectives = [w for w in (size, colour) if w]
        if len(adjectives) == 2 and rng.random() < 0.1:
            adjectives.reverse()
        words = [*adjectives, noun]
    phrase = " ".join(words)
    if spec.count == 1:
        return f"{_pick(rng, ('one', 'a single', '1', 'only one'))} {phrase}"
    if spec.count == 2:
        return f"{_pick(rng, ('two', 'two', '2', 'a pair of'))} {phrase}"
    if spec.count == 3:
        return f"{_pick(rng, ('three', 'three', '3'))} {phrase}"
    if spec.plural:
        determiner = _pick(rng, ("", "", "several ", "some ", "a few ", "multiple "))
        return determiner + phrase
    if rng.random() < 0.15:
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _english_background(background: str, rng: np.random.Generator) -> str:
    name = _pick(rng, _BG_EN.get(background, (background,)))
    template = _pick(
        rng,
        (
            " on a {b} background",
            " on a {b} background",
            " against a {b} background",
            " with a {b} background",
            ", {b} background",
            " on {b}",
            " on a plain {b} backdrop",
        ),
    )
    return template.format(b=name)


def ru_noun_phrase(
    noun: RuNoun,
    adjectives: Sequence[RuAdjective],
    case: str,
    count: int | None = None,
    plural: bool = False,
) -> str:
    """Adjectives + noun in `case`, agreeing in gender and number, with an optional numeral.

    With два/две/три in the nominative or accusative, the noun takes the genitive singular
    and the adjectives the genitive plural, or the nominative plural for feminine nouns
    («два красных круга», «две красные звезды»); in other cases everything is plural in that
    case («двух красных звёзд», «тремя синими кругами»).
    """
    gender = noun.gender
    if count is None:
        number = "pl" if plural else "sg"
        words = [a.form(gender, case, number) for a in adjectives] + [noun.form(case, number)]
    elif count == 1:
        words = [ru_numeral(1, gender, case)] + [a.form(gender, case) for a in adjectives]
        words.append(noun.form(case))
    elif case in ("nom", "acc"):
        adjective_case = "nom" if gender == "f" else "gen"
        words = [ru_numeral(count, gender, case)]
        words += [a.form(gender, adjective_case, "pl") for a in adjectives]
        words.append(noun.form("gen"))
    else:
        words = [ru_numeral(count, gender, case)]
        words += [a.form(gender, case, "pl") for a in adjectives]
        words.append(noun.form(case, "pl"))
    return " ".join(words)


def _russian_np(spec: Spec, case: str, rng: np.random.Generator) -> str:
    """A random Russian wording of `spec` in `case`: synonyms, word order, digits."""
    if spec.shape is not None:
        nouns = _SHAPE[spec.shape].ru
        noun = nouns[0] if rng.random() < 0.75 else _pick(rng, nouns)
    else:
        noun = _pick(rng, _RU_HEAD)
    adjectives: list[RuAdjective] = []
    if spec.size:
        adjectives.append(_pick(rng, _SIZE_RU[spec.size]))
    colour_after = spec.colour is not None and rng.random() < 0.12  # «звезда красного цвета»
    if spec.colour is not None and not colour_after:
        adjectives.append(_COLOUR[spec.colour].ru[0])
        if len(adjectives) == 2 and rng.random() < 0.1:
            adjectives.reverse()
    if spec.plural and spec.count is None and case == "nom" and rng.random() < 0.3:
        text = "несколько " + ru_noun_phrase(noun, adjectives, "gen", plural=True)
    else:
        text = ru_noun_phrase(noun, adjectives, case, spec.count, spec.plural)
        if (spec.count or 0) > 1 and case in ("nom", "acc") and rng.random() < 0.15:
            text = f"{spec.count} {text.split(' ', 1)[1]}"  # «2 красных круга»
    if colour_after and spec.colour is not None:
        colour = _COLOUR[spec.colour].ru[0]
        text += f" {colour.form('m', 'gen')} {_RU_COLOUR_NOUN.form('gen')}"
    return text


def _russian_background(background: str, rng: np.random.Generator) -> str:
    adjective = _BG_RU[background]
    style = int(rng.integers(5))
    if style <= 1:
        return f" на {adjective.form('m', 'prep')} фоне"
    if style == 2:
        return f" на фоне {adjective.form('m', 'gen')} цвета"
    if style == 3:
        return f", фон {adjective.form('m', 'nom')}"
    return f", {adjective.form('m', 'nom')} фон"


# Templates: {np} is the English noun phrase; Russian ones name the case they need
# ({nom}, {gen}, {acc}, {ins}); {bg} is an optional background phrase; {be} is "is" or
# "are" and {this} "this is" or "these are", to agree with the noun phrase.
EN_TEMPLATES_TRAIN: tuple[str, ...] = (
    "{np}{bg}",
    "{np}{bg}",
    "a photo of {np}{bg}",
    "a picture of {np}{bg}",
    "an image of {np}{bg}",
    "a photograph of {np}{bg}",
    "photo with {np}{bg}",
    "an image with {np}{bg}",
    "an illustration of {np}{bg}",
    "a render of {np}{bg}",
    "an icon showing {np}{bg}",
    "image containing {np}{bg}",
    "there {be} {np}{bg}",
    "{np} in the picture{bg}",
    "show me {np}{bg}",
    "find {np}{bg}",
    "search for {np}{bg}",
    "{this} {np}{bg}",
    "a graphic with {np}{bg}",
    "a close-up of {np}{bg}",
    "a simple picture of {np}{bg}",
    "a photo that shows {np}{bg}",
)
RU_TEMPLATES_TRAIN: tuple[str, ...] = (
    "{nom}{bg}",
    "{nom}{bg}",
    "фото {gen}{bg}",
    "фотография {gen}{bg}",
    "изображение {gen}{bg}",
    "снимок {gen}{bg}",
    "картинка с {ins}{bg}",
    "фото с {ins}{bg}",
    "изображение с {ins}{bg}",
    "иллюстрация с {ins}{bg}",
    "иконка с {ins}{bg}",
    "на картинке {nom}{bg}",
    "на фото {nom}{bg}",
    "здесь {nom}{bg}",
    "это {nom}{bg}",
    "покажи {acc}{bg}",
    "найди {acc}{bg}",
    "поиск: {nom}{bg}",
    "картинка, где {nom}{bg}",
    "крупный план: {nom}{bg}",
    "простая картинка с {ins}{bg}",
)
#: phrasings that training never sees, with words that training never uses
EN_TEMPLATES_HELD_OUT: tuple[str, ...] = (
    "a drawing of {np}{bg}",
    "a sketch depicting {np}{bg}",
    "i am looking for {np}{bg}",
    "do you have {np}{bg}",
)
RU_TEMPLATES_HELD_OUT: tuple[str, ...] = (
    "рисунок {gen}{bg}",
    "набросок с {ins}{bg}",
    "я ищу {acc}{bg}",
    "есть ли у вас {nom}{bg}",
)
LANGUAGES = ("en", "ru")


def phrase(
    spec: Spec, lang: str, rng: np.random.Generator, templates: Sequence[str] | None = None
) -> str:
    """One caption saying exactly what `spec` says, in `lang` ("en" or "ru")."""
    if lang == "en":
        template = _pick(rng, templates or EN_TEMPLATES_TRAIN)
        bg = _english_background(spec.background, rng) if spec.background else ""
        plural = spec.is_plural
        return template.format(
            np=_english_np(spec, rng),
            bg=bg,
            be="are" if plural else "is",
            this="these are" if plural else "this is",
        )
    if lang == "ru":
        template = _pick(rng, templates or RU_TEMPLATES_TRAIN)
        bg = _russian_background(spec.background, rng) if spec.background else ""
        slots = {case: "" for case in ("nom", "gen", "acc", "ins")}
        for case in slots:
            if "{" + case + "}" in template:
                slots[case] = _russian_np(spec, case, rng)
        text = template.format(bg=bg, **slots)
        return text[0].upper() + text[1:] if rng.random() < 0.3 else text
    raise ValueError(f"unknown language {lang!r}")


def captions(
    scene: Scene,
    lang: str,
    rng: np.random.Generator,
    n: int = 5,
    templates: Sequence[str] | None = None,
) -> list[str]:
    """`n` true captions of `scene` in `lang`, each mentioning a random subset of attributes."""
    return [phrase(describe(scene, rng), lang, rng, templates) for _ in range(n)]


def class_prompts(colour: str, shape: str, lang: str) -> list[str]:
    """Fixed zero-shot prompts for one colour-shape class (a small prompt ensemble)."""
    if lang == "en":
        c = _COLOUR[colour].en[0]
        singular, plural = _SHAPE[shape].en[0]
        article = "an" if c[0] in "aeiou" else "a"
        return [
            f"{article} {c} {singular}",
            f"a photo of {article} {c} {singular}",
            f"{c} {plural}",
        ]
    noun = _SHAPE[shape].ru[0]
    adjective = _COLOUR[colour].ru[0]
    return [
        f"{adjective.form(noun.gender, 'nom')} {noun.form('nom')}",
        f"фото {adjective.form(noun.gender, 'gen')} {noun.form('gen')}",
        f"картинка с {adjective.form(noun.gender, 'ins')} {noun.form('ins')}",
    ]


# --------------------------------------------------------------------------- query sets


@dataclass
class QuerySet:
    """Queries with the indices of the relevant scenes, for retrieval evaluation."""

    texts: list[str] = field(default_factory=list)
    specs: list[Spec] = field(default_factory=list)
    relevant: list[set[int]] = field(default_factory=list)


def make_queries(
    scenes: Sequence[Scene],
    lang: str,
    n: int,
    seed: int,
    kinds: Iterable[tuple[str, str]] | None = None,
    templates: Sequence[str] | None = None,
    p_variant: float = 0.35,
) -> QuerySet:
    """Queries describing random scenes of `kinds` (colour + shape, maybe size/count/background).

    Relevance is every scene the query's spec matches, so a query for "two red circles" must
    rank all scenes with exactly two red circles first, not only the one it was drawn from.
    """
    rng = np.random.default_rng(seed)
    allowed = set(kinds) if kinds is not None else None
    pool = [i for i, s in enumerate(scenes) if allowed is None or s.kind in allowed]
    out = QuerySet()
    for _ in range(n):
        scene = scenes[pool[int(rng.integers(len(pool)))]]
        spec = describe(scene, rng, p_size=p_variant, p_count=p_variant, p_background=p_variant)
        out.texts.append(phrase(spec, lang, rng, templates))
        out.specs.append(spec)
        out.relevant.append({j for j, other in enumerate(scenes) if spec.matches(other)})
    return out


# --------------------------------------------------------------------------- demo folder

LABEL_FIELDS = (
    "path",
    "colour",
    "shape",
    "size",
    "count",
    "background",
    "caption_en",
    "caption_ru",
)


def write_demo_folder(
    path: str | Path, n_images: int, seed: int, size: int = 192, quality: int = 90
) -> Path:
    """Write a demo collection: nested folders of JPEG/PNG images with neutral names.

    Also writes `labels.csv` (relative path, attributes, one caption per language) so the
    folder doubles as labelled data for `imgfinder eval`. Returns the CSV path.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scenes = make_dataset(n_images, seed)
    rows = []
    for i, scene in enumerate(scenes):
        folder = Path(f"album_{i % 7:02d}") / f"{2015 + (i // 7) % 9}"
        name = f"img_{i:05d}.png" if i % 10 == 9 else f"img_{i:05d}.jpg"
        relative = folder / name
        (root / folder).mkdir(parents=True, exist_ok=True)
        image = render(scene, size, supersample=2)
        if name.endswith(".png"):
            image.save(root / relative, optimize=False, compress_level=1)
        else:
            image.save(root / relative, quality=quality)
        spec = Spec(colour=scene.colour, shape=scene.shape, count=scene.count)
        rows.append(
            {
                "path": relative.as_posix(),
                "colour": scene.colour,
                "shape": scene.shape,
                "size": scene.size,
                "count": scene.count,
                "background": scene.background,
                "caption_en": phrase(spec, "en", rng),
                "caption_ru": phrase(spec, "ru", rng),
            }
        )
    labels = root / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABEL_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return labels


def read_labels(path: str | Path) -> list[dict[str, str]]:
    """Rows of a labels CSV written by `write_demo_folder` (paths relative to its folder)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def scenes_from_labels(rows: Iterable[dict[str, str]]) -> list[Scene]:
    """Scenes carrying only the attributes of labels rows (enough for `Spec.matches`).

    With `make_queries` this turns a labelled folder into an evaluation set whose relevant
    indices are row numbers of the CSV.
    """
    return [
        Scene(
            colour=row["colour"],
            shape=row["shape"],
            size=row["size"],
            count=int(row["count"]),
            background=row["background"],
            texture="plain",
            objects=(),
            rgb=(0, 0, 0),
            background_rgb=(0, 0, 0),
            noise_seed=0,
        )
        for row in rows
    ]
