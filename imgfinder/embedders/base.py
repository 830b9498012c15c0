"""The embedder contract: batches of images or texts in, L2-normalised float32 rows out."""

from __future__ import annotations

import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from PIL import Image

from imgfinder.embedders.preprocess import CLIP_MEAN, CLIP_STD, resize_center_crop_normalize
from imgfinder.media.images import to_rgb

#: the script each language's words are written in
SCRIPTS = {"en": "LATIN", "ru": "CYRILLIC"}
LANGUAGE_NAMES = {"en": "English", "ru": "Russian"}


class Embedder(ABC):
    """Maps images and texts into one space where cosine similarity means relatedness.

    `prepare_image` is thread-safe and cheap, so the indexing pipeline runs it in its decode
    pool ahead of `embed_prepared`, which is where the model's time goes. The app searches
    while it indexes, so every method may be called from several threads at once.
    """

    #: side of the square input, in pixels; decoders reduce images to about this size
    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    #: query languages it reads ("en", "ru"; "multi" for about a hundred); the registry sets it
    languages: tuple[str, ...] = ("multi",)

    def unreadable(self, text: str) -> str | None:
        """Why this model cannot read `text` at all (no letter of a script of its languages),
        or None when it may; a model that knows its vocabulary can be stricter."""
        scripts = {SCRIPTS[lang] for lang in self.languages if lang in SCRIPTS}
        if "multi" in self.languages or not scripts:
            return None
        letters = [char for char in text if char.isalpha()]
        if not letters or any(_script(char) in scripts for char in letters):
            return None
        names = " or ".join(LANGUAGE_NAMES[lang] for lang in self.languages if lang in SCRIPTS)
        return f"this model reads only {names}, and the query has no word in it"

    @property
    @abstractmethod
    def key(self) -> str:
        """Changes whenever the vectors would change (model, weights, preprocessing, runtime)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of each embedding row."""

    @abstractmethod
    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        """Embed float32[n, 3, S, S] prepared images into float32[n, dim] unit rows."""

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts into float32[n, dim] unit rows."""

    def load(self, modality: str = "image") -> None:
        """Make ready everything embedding `modality` ("image" or "text") needs, so that a
        caller can pay for it while other work goes on; otherwise the first call does."""
        self.dim  # noqa: B018 - a lazy embedder loads its model for this property

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        """Resize (shortest side), centre-crop and normalise one RGB image to float32[3, S, S]."""
        return resize_center_crop_normalize(image, self.image_size, self.mean, self.std)

    def input_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the part of a `width` x `height` image the model sees
        after `prepare_image`: the centre square, as CLIP-style preprocessing crops it."""
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return (left, top, left + side, top + side)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed PIL images (any mode) into float32[n, dim] unit rows."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = np.stack([self.prepare_image(to_rgb(image)) for image in images])
        return self.embed_prepared(batch)


def _script(char: str) -> str:
    """ "LATIN", "CYRILLIC", "CJK"...: the first word of the character's Unicode name."""
    return unicodedata.name(char, "UNKNOWN").split(" ")[0]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit rows in float32; zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
