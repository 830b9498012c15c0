"""Shared helpers for the benchmarks: realistic test media and result files."""

from __future__ import annotations

import io
import json
import platform
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from imgfinder.embedders.base import Embedder

RESULTS = Path(__file__).resolve().parent / "results"


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Gradients, shapes and sensor-like noise: JPEG-compresses like a photo, not a flat fill."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(9, 12, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(width // 40, width // 6))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
    array = np.asarray(image, dtype=np.int16)
    array = array + rng.integers(-10, 11, size=array.shape, dtype=np.int16)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


#: MPF type of a camera's Full-HD-sized preview (CIPA DC-007), as Sony and Panasonic write it
LARGE_THUMBNAIL_FULL_HD = 0x010002


def camera_jpeg(
    path: Path,
    photo: Image.Image,
    preview: Image.Image,
    mp_type: int = LARGE_THUMBNAIL_FULL_HD,
    **options: Any,
) -> Path:
    """A JPEG laid out as cameras write one: the photo, then a reduced copy of it in the same
    file, listed in the photo's MPF index as `mp_type`.

    Pillow writes the pair (`options` go to its JPEG encoder, e.g. exif, quality) but types the
    second picture "Undefined"; its index entry is then retyped in place.
    """
    buffer = io.BytesIO()
    photo.save(buffer, format="MPO", save_all=True, append_images=[preview], **options)
    data = bytearray(buffer.getvalue())
    buffer.seek(0)
    with Image.open(buffer) as written:
        entry = written.mpinfo[0xB002][1]  # type: ignore[attr-defined]
    untyped = struct.pack("<LLL", 0, entry["Size"], entry["DataOffset"])
    where = data.index(untyped)
    data[where : where + 4] = struct.pack("<L", mp_type)
    path.write_bytes(bytes(data))
    return path


class StoredVectors(Embedder):
    """Stands for the model that made vectors a bench or a test wrote itself: its key and
    width, nothing to embed."""

    image_size = 32

    def __init__(self, key: str, dim: int) -> None:
        self._key, self._dim = key, dim

    @property
    def key(self) -> str:
        return self._key

    @property
    def dim(self) -> int:
        return self._dim

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError("only stored vectors are searched here")

    def embed_texts(self, texts: Any) -> np.ndarray:
        raise NotImplementedError("only stored vectors are searched here")


def write_result(name: str, data: dict[str, Any], table: str) -> None:
    """bench/results/<name>.json and <name>.md, with the machine they ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or "?"},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        **data,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (RESULTS / f"{name}.md").write_text(table + "\n")
