"""How a picture is fitted into a model's square input: centre-crop it, or pad it to a square.

CLIP-style models see the centre square of an image, so a panorama's ends, or a portrait's
head and feet, never reach them. Padding to a square first (in the model's mean colour,
which its normalisation turns into zeros) lets the model see everything, smaller. Which one
a collection uses is part of the embedder key: padded vectors are never searched as cropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from imgfinder.embedders.base import Embedder
from imgfinder.errors import ConfigError
from imgfinder.media.images import to_rgb

CROP = "crop"
PAD = "pad"
FRAMINGS = (CROP, PAD)
#: what the key of padded vectors ends with
PAD_SUFFIX = f":{PAD}"


def check_framing(framing: str) -> str:
    if framing not in FRAMINGS:
        raise ConfigError(f"unknown framing {framing!r}; choose one of {', '.join(FRAMINGS)}")
    return framing


def framing_of_key(embedder_key: str) -> str:
    """The framing vectors stored under `embedder_key` were made with."""
    return PAD if embedder_key.endswith(PAD_SUFFIX) else CROP


def pad_to_square(image: Image.Image, mean: Sequence[float]) -> Image.Image:
    """`image` centred on a square canvas of the mean colour, as wide as its longer side."""
    image = to_rgb(image)
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    fill = tuple(round(channel * 255) for channel in mean)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


class PaddedEmbedder(Embedder):
    """Another embedder, fed whole pictures padded to a square; everything else is its own."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        # runtime, parity, towers, tokenize, family...: whatever the model itself offers
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"PaddedEmbedder({self.inner!r})"

    @property
    def key(self) -> str:
        return f"{self.inner.key}{PAD_SUFFIX}"

    def load(self, modality: str = "image") -> None:
        self.inner.load(modality)

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property  # type: ignore[override]
    def image_size(self) -> int:
        return self.inner.image_size

    @property  # type: ignore[override]
    def mean(self) -> tuple[float, float, float]:
        return self.inner.mean

    @property  # type: ignore[override]
    def std(self) -> tuple[float, float, float]:
        return self.inner.std

    @property  # type: ignore[override]
    def languages(self) -> tuple[str, ...]:
        return self.inner.languages

    def unreadable(self, text: str) -> str | None:
        return self.inner.unreadable(text)

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        return self.inner.prepare_image(pad_to_square(image, self.inner.mean))

    def input_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        return (0, 0, width, height)

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.embed_prepared(batch)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_texts(texts)


def framed(embedder: Embedder, framing: str) -> Embedder:
    """`embedder` fitting pictures by `framing` ("crop" is what every model does itself)."""
    return PaddedEmbedder(embedder) if check_framing(framing) == PAD else embedder
