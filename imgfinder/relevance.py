"""Confidence: how far a hit stands above what unrelated queries find in the same collection.

A cosine similarity means different things for every model and every query: with the demo
model a caption about nothing in the collection scores 0.50 against its best image, a real
one 0.56. Two steps make scores comparable. The *lift* subtracts the query's similarity to
the collection's mean vector, the part every item shares with the query (large for captions
about nothing in particular). The *confidence* places a hit's lift among the best lifts that
unrelated queries reach in the same collection (captions of everyday scenes and nonsense in
English and Russian; generated pictures of gradients, noise and patterns): 0.95 means the hit
stands above the best match of 95 % of them. For a fixed query the confidence only grows
with the score, so a minimum confidence is a cosine threshold for that query.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: the default cutoff of every shell: a hit must beat the best match of this share of
#: unrelated queries
DEFAULT_CONFIDENCE = 0.95
MODALITIES = ("text", "image")
SCALES = ("confidence", "cosine")

#: captions about things a photo collection rarely holds all of at once; a few may match any
#: one collection, which the 95 % quantile tolerates
NULL_TEXTS = (
    "a person cooking dinner in a kitchen",
    "children playing in the snow",
    "a busy street market",
    "an old man reading a newspaper",
    "a cup of coffee on a wooden table",
    "a football match in a stadium",
    "a forest path in autumn",
    "a city skyline at dusk",
    "a dog running after a ball",
    "a bride and groom",
    "a sailing boat on a lake",
    "a bookshelf full of books",
    "an airplane taking off",
    "a bowl of fresh fruit",
    "a cow grazing in a meadow",
    "a woman talking on the phone",
    "a bus stop in the rain",
    "a mountain covered with snow",
    "a baby sleeping",
    "a group of friends at a picnic",
    "a bridge over a river",
    "a guitar leaning against a wall",
    "a desert with sand dunes",
    "a hospital corridor",
    "a tiger in the jungle",
    "a plate of pasta",
    "a motorbike parked on the street",
    "a classroom with students",
    "waves crashing on rocks",
    "a church in a small village",
    "an office meeting",
    "a cat looking out of the window",
    "a garden full of flowers",
    "a farmer in a field of wheat",
    "a swimming pool",
    "a parrot on a branch",
    "an empty parking lot",
    "a family having breakfast",
    "a train crossing a bridge",
    "a crowd at a music festival",
    "fish in an aquarium",
    "a runner in a marathon",
    "a kitchen sink with dishes",
    "a man fixing a car engine",
    "a chess game",
    "a waterfall in the mountains",
    "a museum hall with paintings",
    "a tent at a campsite",
    "a scientist in a laboratory",
    "sheep on a hillside",
    "a sunny beach with umbrellas",
    "a snowy road at night",
    "a teenager with headphones",
    "a fishing boat in a harbour",
    "a bakery shop window",
    "a skateboarder doing a trick",
    "a horse and rider",
    "an elephant drinking water",
    "a frozen lake",
    "a traffic jam",
    "человек готовит ужин на кухне",
    "дети играют в снегу",
    "шумный рынок на улице",
    "старик читает газету",
    "чашка кофе на деревянном столе",
    "футбольный матч на стадионе",
    "лесная тропинка осенью",
    "вечерний город",
    "собака бежит за мячом",
    "жених и невеста",
    "парусная лодка на озере",
    "полка с книгами",
    "самолёт взлетает",
    "миска со свежими фруктами",
    "корова пасётся на лугу",
    "женщина говорит по телефону",
    "остановка под дождём",
    "заснеженная гора",
    "спящий младенец",
    "друзья на пикнике",
    "мост через реку",
    "гитара у стены",
    "пустыня с дюнами",
    "больничный коридор",
    "тигр в джунглях",
    "тарелка макарон",
    "мотоцикл на улице",
    "школьники в классе",
    "волны разбиваются о скалы",
    "церковь в деревне",
    "совещание в офисе",
    "кот смотрит в окно",
    "сад с цветами",
    "фермер в поле пшеницы",
    "бассейн",
    "попугай на ветке",
    "пустая парковка",
    "семья завтракает",
    "поезд на мосту",
    "толпа на фестивале",
    "рыбы в аквариуме",
    "бегун на марафоне",
    "шахматная партия",
    "водопад в горах",
    "зал музея с картинами",
    "палатка в походе",
    "учёный в лаборатории",
    "овцы на холме",
    "пробка на дороге",
    "замёрзшее озеро",
    "xkcd",
    "plumbus",
    "fnord wibble",
    "qazwsx",
    "hjkl uiop",
    "blah blah",
    "asdfgh",
    "ололо",
    "йцукен",
    "фываолдж",
    "тыры пыры",
    "абырвалг",
)


def null_images(count: int = 60, seed: int = 7) -> list[Image.Image]:
    """Pictures of nothing in particular: stripes, checkerboards and soft blobs, at 128 px.
    Plain gradients and noise are left out: product shots, scans and the demo world all have
    such backgrounds, so they are not unrelated to a collection of them."""
    rng = np.random.default_rng(seed)
    makers: tuple[Callable[[np.random.Generator], np.ndarray], ...] = (
        _stripes,
        _checkers,
        _blobs,
    )
    return [Image.fromarray(makers[i % len(makers)](rng)) for i in range(count)]


def _stripes(rng: np.random.Generator) -> np.ndarray:
    period = int(rng.integers(6, 32))
    bands = (np.arange(128) // period) % 2
    colours = rng.integers(0, 256, (2, 3))
    rows = colours[bands]
    picture = np.repeat(rows[None, :, :], 128, axis=0)
    return (picture if rng.random() < 0.5 else picture.transpose(1, 0, 2)).astype(np.uint8)


def _checkers(rng: np.random.Generator) -> np.ndarray:
    cell = int(rng.integers(8, 40))
    y, x = np.mgrid[0:128, 0:128] // cell
    colours = rng.integers(0, 256, (2, 3))
    return colours[(x + y) % 2].astype(np.uint8)


def _blobs(rng: np.random.Generator) -> np.ndarray:
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((128, 128), Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class Calibration:
    """What unrelated queries find in one collection, for one embedder.

    `centroid` is the mean stored vector; `null[modality]` holds, sorted, the best lift each
    unrelated query of that modality reaches in the collection; `items` is how many stored
    vectors it was measured on (it is measured again when the collection has grown or shrunk
    by more than a tenth).
    """

    centroid: np.ndarray
    null: dict[str, np.ndarray]
    items: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "centroid", np.asarray(self.centroid, dtype=np.float64))

    def lifts(self, vector: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Scores less what the query shares with every item."""
        return np.asarray(scores, dtype=np.float64) - float(vector @ self.centroid)

    def confidence(self, vector: np.ndarray, scores: np.ndarray, modality: str) -> np.ndarray:
        """The share of unrelated queries whose best match each score beats."""
        null = self.null[modality]
        return np.searchsorted(null, self.lifts(vector, scores), side="right") / len(null)

    def threshold(self, vector: np.ndarray, min_confidence: float, modality: str) -> float:
        """The cosine score a hit of this query needs for `min_confidence` (-1: any will do)."""
        null = self.null[modality]
        beaten = math.ceil(min_confidence * len(null) - 1e-9)
        if beaten <= 0:
            return -1.0
        if beaten > len(null):
            return math.inf
        return float(null[beaten - 1] + float(vector @ self.centroid))

    def stale(self, items: int) -> bool:
        return self.items == 0 or abs(items - self.items) > 0.1 * self.items

    def with_null(self, modality: str, vectors: np.ndarray, best: np.ndarray) -> Calibration:
        """This calibration and the null distribution of `modality`, measured from the
        unrelated queries' `vectors` and each one's best score in the collection."""
        lifts = np.asarray(best, dtype=np.float64) - vectors.astype(np.float64) @ self.centroid
        return Calibration(self.centroid, {**self.null, modality: np.sort(lifts)}, self.items)


#: the shape of a combined query: (modality, weight) per term, the first one's weight 1
Form = tuple[tuple[str, float], ...]


def form_name(form: str | Form) -> str:
    """The key of a modality or a combined query's form: "text", "image", "image+1*text"."""
    if isinstance(form, str):
        if form not in MODALITIES:
            raise _config_error(f"modality must be one of {', '.join(MODALITIES)}, not {form!r}")
        return form
    if not form or any(modality not in MODALITIES for modality, _ in form):
        raise _config_error(f"a query's form is (modality, weight) pairs of {MODALITIES}")
    if len(form) == 1:
        return form[0][0]
    return form[0][0] + "".join(f"{weight:+g}*{modality}" for modality, weight in form[1:])


def mixed_null(form: Form, vectors: dict[str, np.ndarray]) -> np.ndarray:
    """Unrelated queries of a combined form: each term's unrelated queries mixed with the
    form's weights, every term drawing a different one, as unit rows (mixes that cancel out
    are left out; if all do, the first term's own stand in)."""
    count = max(len(vectors[modality]) for modality, _ in form)
    rows = np.arange(count)
    total = np.zeros((count, vectors[form[0][0]].shape[1]), dtype=np.float64)
    for position, (modality, weight) in enumerate(form):
        pool = vectors[modality]
        total += weight * pool[(rows + 7 * position) % len(pool)]
    norms = np.linalg.norm(total, axis=1, keepdims=True)
    keep = norms[:, 0] > 1e-6  # terms that cancel out make no query, unrelated or not
    if not keep.any():  # a model that embeds every unrelated query alike
        return np.asarray(vectors[form[0][0]], dtype=np.float32)
    return (total[keep] / norms[keep]).astype(np.float32)


def _config_error(message: str) -> Exception:
    from imgfinder.errors import ConfigError

    return ConfigError(message)


def check_min_confidence(value: float) -> float:
    """A minimum confidence must be a number from 0 to 1 (NaN and infinities are not)."""
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        from imgfinder.errors import ConfigError

        raise ConfigError(f"the minimum confidence is a share between 0 and 1, not {value}")
    return value
