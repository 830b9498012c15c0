"""How a model wants its pixels: resize, crop or squash, normalise. Pillow and numpy only, so
every runtime (and the decode threads ahead of it) prepares images without torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from imgfinder.errors import ModelError
from imgfinder.media.images import to_rgb

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its pixels: the part of open_clip's transform that matters at inference.

    `resize_mode` is "shortest" (resize the short side, centre-crop), "squash" (resize to the
    square, ignoring aspect) or "crop" (centre-crop the largest square, then resize; ruCLIP).
    """

    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        size = data["size"]
        if isinstance(size, (list, tuple)):
            if len(set(size)) != 1:
                raise ModelError(f"non-square model input {tuple(size)} is not supported")
            size = size[0]
        preprocess = cls(
            size=int(size),
            mean=tuple(float(v) for v in data.get("mean", CLIP_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data.get("std", CLIP_STD)),  # type: ignore[arg-type]
            interpolation=str(data.get("interpolation", "bicubic")),
            resize_mode=str(data.get("resize_mode", "shortest")),
        )
        if preprocess.interpolation not in _RESAMPLE:
            raise ModelError(f"unsupported image interpolation {preprocess.interpolation!r}")
        if preprocess.resize_mode not in ("shortest", "squash", "crop"):
            raise ModelError(f"unsupported image resize mode {preprocess.resize_mode!r}")
        return preprocess

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One image to float32[3, size, size], normalised."""
        image = to_rgb(image)
        size, resample = self.size, _RESAMPLE[self.interpolation]
        width, height = image.size
        if self.resize_mode == "squash":
            image = image.resize((size, size), resample)
        elif self.resize_mode == "crop":
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            image = image.resize((size, size), resample)
        else:
            scale = size / min(width, height)
            new_w = max(size, int(width * scale))
            new_h = max(size, int(height * scale))
            if (new_w, new_h) != (width, height):
                image = image.resize((new_w, new_h), resample)
            left = round((new_w - size) / 2.0)
            top = round((new_h - size) / 2.0)
            image = image.crop((left, top, left + size, top + size))
        return normalize(image, self.mean, self.std)


def resize_center_crop_normalize(
    image: Image.Image,
    size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> np.ndarray:
    """CLIP-style preprocessing in Pillow + numpy, with no torch import."""
    image = to_rgb(image)
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return normalize(image, mean, std)


def normalize(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """float32[3, H, W] of an RGB image: (pixel / 255 - mean) / std per channel.

    One multiply and one add per value on a channels-first copy, a third of the CPU of dividing,
    subtracting and dividing again; it runs once per image in the decode threads, beside the model.
    """
    scale = 1.0 / (255.0 * np.asarray(std, dtype=np.float64))
    offset = -np.asarray(mean, dtype=np.float64) / np.asarray(std, dtype=np.float64)
    array = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32, order="C")
    array *= scale.astype(np.float32)[:, None, None]
    array += offset.astype(np.float32)[:, None, None]
    return array
