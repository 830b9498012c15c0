"""Test-time augmentation for image queries: the mean of a few views of the picture.

A query photo taken from a little further away, or the other way round, should find the
same things. Averaging the embeddings of the whole picture, a closer centre view and the
mirror image of each gives a query vector that no longer depends on which way the picture
faces, and leans less on what happens to sit at its edges. It costs one model call per view,
for the query only: stored vectors are never augmented.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from imgfinder.embedders.base import Embedder, l2_normalize
from imgfinder.media.images import to_rgb

#: the centre views, as a share of each side (1.0: the whole picture)
ZOOMS = (1.0, 0.8)


def views(image: Image.Image) -> list[Image.Image]:
    """Each centre view of `image` and its mirror image; the set is the same, mirrored,
    for the mirrored picture, which is what makes the mean flip-invariant."""
    image = to_rgb(image)
    width, height = image.size
    found = []
    for zoom in ZOOMS:
        # equal margins on both sides, so the view of the mirrored picture is this one mirrored
        left = min(round(width * (1 - zoom) / 2), (width - 1) // 2)
        top = min(round(height * (1 - zoom) / 2), (height - 1) // 2)
        view = image.crop((left, top, width - left, height - top))
        found += [view, ImageOps.mirror(view)]
    return found


def embed_augmented(embedder: Embedder, image: Image.Image) -> np.ndarray:
    """One unit query vector: the mean of the embeddings of `views(image)`."""
    vectors = embedder.embed_images(views(image))
    return l2_normalize(vectors.mean(axis=0))
