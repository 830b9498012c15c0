"""Relevance maps: which regions of an image make it match a query.

The default method needs nothing but the embedder's image tower, so it runs on ONNX Runtime
with no torch: the image is shown to the model many times with random regions hidden (set to
the dataset's mean colour, which is zero after normalising), and each pixel is credited with
how much the cosine to the query rose when it was visible (randomised input sampling, RISE).
The masks are evaluated in batches, five hundred of them in about a fifth of a second with the
demo model. Where torch is installed, "gradcam" asks the gradient of the same cosine instead.

Maps are computed over the model's input (for most models the centre square) and laid back on
the image; outside what the model saw nothing could have mattered and the map is zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgfinder.embedders.base import Embedder
from imgfinder.errors import ConfigError
from imgfinder.media.images import to_rgb

METHODS = ("masks", "gradcam")
#: how many random masks the masking method shows the model
DEFAULT_MASKS = 500
#: cells across the coarse random grid (RISE's "s"): about one per ViT-B/32 patch at 224 px
GRID = 8
#: the chance each cell stays visible
KEEP = 0.5
_CHUNK = 50
#: the longest side of a stored map and of the image it came with
MAP_SIDE = 512


@dataclass(frozen=True)
class RelevanceMap:
    """A heat map over an image: 1 where the match is strongest, 0 where nothing counted."""

    image: Image.Image
    #: float32[h, w] in [0, 1], the image's aspect ratio
    heat: np.ndarray
    #: the whole image's cosine similarity to the query
    score: float
    method: str
    seconds: float
    #: how many masked views the masking method evaluated (0 for gradients)
    views: int = 0

    @property
    def peak(self) -> tuple[float, float]:
        """(x, y) of the hottest point, as fractions of the image's width and height."""
        row, column = np.unravel_index(int(np.argmax(self.heat)), self.heat.shape)
        height, width = self.heat.shape
        return ((column + 0.5) / width, (row + 0.5) / height)

    def overlay(self, strength: float = 0.6) -> Image.Image:
        """The image with the map laid over it: cold regions dimmed, hot ones tinted red to
        yellow, so what matched stands out and the rest stays recognisable."""
        heat = np.asarray(
            Image.fromarray(self.heat).resize(self.image.size, Image.Resampling.BILINEAR)
        )[..., None]
        pixels = np.asarray(self.image, dtype=np.float32)
        tint = np.concatenate([np.ones_like(heat), heat, np.zeros_like(heat)], axis=2) * 255.0
        shown = pixels * (1.0 - strength * (1.0 - heat))
        mixed = shown * (1.0 - strength * heat) + tint * strength * heat
        return Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8), mode="RGB")


def relevance_map(
    embedder: Embedder,
    image: Image.Image,
    target: np.ndarray,
    *,
    method: str = "masks",
    masks: int = DEFAULT_MASKS,
    seed: int = 0,
    budget: float | None = None,
) -> RelevanceMap:
    """Where in `image` the match with the unit query vector `target` comes from.

    `method` is "masks" (any runtime) or "gradcam" (the embedder's PyTorch runtime). The
    masking method is seeded, so one image and query always give one map; with a `budget`
    (seconds) it stops early, after at least one batch, so a slow model still answers in
    time with a coarser map (ViT-B/32 on two cores needs about 33 s for 500 masks).
    """
    if method not in METHODS:
        raise ConfigError(f"the relevance method is one of {', '.join(METHODS)}, not {method!r}")
    if masks < 1:
        raise ConfigError(f"the masking method needs at least one mask, not {masks}")
    if budget is not None and not budget > 0:  # NaN fails this too
        raise ConfigError(f"a map's time budget is a number of seconds above 0, not {budget}")
    started = time.perf_counter()
    image = _bounded(to_rgb(image))
    target = np.asarray(target, dtype=np.float32)
    pixels = embedder.prepare_image(image)
    score = float(embedder.embed_prepared(pixels[None])[0] @ target)
    views = 0
    if method == "gradcam":
        from imgfinder.gradcam import gradcam_heat

        input_heat = gradcam_heat(embedder, pixels, target)
    else:
        deadline = None if budget is None else started + budget
        input_heat, views = _masked_heat(embedder, pixels, target, masks, seed, deadline)
    heat = _place(_unit_range(input_heat), image.size, embedder.input_box(*image.size))
    return RelevanceMap(image, heat, score, method, time.perf_counter() - started, views)


def _masked_heat(
    embedder: Embedder,
    pixels: np.ndarray,
    target: np.ndarray,
    count: int,
    seed: int,
    deadline: float | None,
) -> tuple[np.ndarray, int]:
    """Covariance of the cosine with each pixel's visibility over random masks (a pixel that
    raises the score when shown gets a positive weight, one that lowers it a negative), and
    how many masks it took: `count`, or fewer once `deadline` (perf_counter) has passed."""
    side = pixels.shape[-1]
    rng = np.random.default_rng(seed)
    total = np.zeros((side, side), dtype=np.float64)
    shown = np.zeros((side, side), dtype=np.float64)
    scores_sum, used = 0.0, 0
    while used < count and (deadline is None or not used or time.perf_counter() < deadline):
        chunk = _random_masks(rng, min(_CHUNK, count - used), side)
        scores = embedder.embed_prepared(pixels[None] * chunk[:, None]) @ target
        total += np.tensordot(scores, chunk, axes=1)
        shown += chunk.sum(axis=0)
        scores_sum += float(scores.sum())
        used += len(chunk)
    # Σ s·m − (Σ s)(Σ m)/n: the covariance, so masks that happen to be fuller don't dominate
    return (total - scores_sum * shown / used).astype(np.float32), used


def _random_masks(rng: np.random.Generator, count: int, side: int) -> np.ndarray:
    """float32[count, side, side] smooth masks: a coarse random grid upsampled bilinearly and
    shifted by up to one cell, so the hidden regions have soft edges anywhere in the image."""
    cell = side / GRID
    span = int(np.ceil((GRID + 1) * cell))
    coarse = (rng.random((count, GRID + 1, GRID + 1)) < KEEP).astype(np.float32)
    shifts = rng.integers(0, max(1, int(cell)), size=(count, 2))
    out = np.empty((count, side, side), dtype=np.float32)
    for i in range(count):
        big = np.asarray(
            Image.fromarray(coarse[i], mode="F").resize((span, span), Image.Resampling.BILINEAR)
        )
        dx, dy = shifts[i]
        out[i] = big[dy : dy + side, dx : dx + side]
    return out


def _unit_range(heat: np.ndarray) -> np.ndarray:
    """Negative evidence clipped to zero, the rest scaled so the peak is 1."""
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    heat = np.maximum(heat, 0.0)
    top = float(heat.max()) if heat.size else 0.0
    return heat / top if top > 0 else heat


def _place(
    input_heat: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int]
) -> np.ndarray:
    """A map over the model's input, laid on the part of the image the model saw (`box`,
    from `Embedder.input_box`); zero elsewhere."""
    width, height = size
    left, top, right, bottom = box
    seen = Image.fromarray(input_heat, mode="F").resize(
        (right - left, bottom - top), Image.Resampling.BILINEAR
    )
    heat = np.zeros((height, width), dtype=np.float32)
    heat[top:bottom, left:right] = np.clip(np.asarray(seen), 0.0, 1.0)
    return heat


def _bounded(image: Image.Image) -> Image.Image:
    """The image at most MAP_SIDE on its longer side: a map needs no more, and a 12 MP photo
    would otherwise cost 50 MB per map."""
    if max(image.size) <= MAP_SIDE:
        return image
    scale = MAP_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


__all__ = ["DEFAULT_MASKS", "METHODS", "RelevanceMap", "relevance_map"]
