"""Small cached JPEG thumbnails, so the browser never receives a full-size original.

Thumbnails live in the collection's own `thumbs/` folder, named by a digest of the source
path, size and modification time: an edited file gets a fresh thumbnail, an unchanged one is
decoded once per collection, not once per page view.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from imgfinder.atomic import atomic_write
from imgfinder.media.frames import thumb_path
from imgfinder.media.images import open_image

#: longest side of a grid thumbnail, in pixels
GRID_SIZE = 320
#: longest side of the enlarged view
PREVIEW_SIZE = 1024
QUALITY = 82


def image_thumbnail(thumbs_dir: Path, source: BinaryIO, name: str, size: int = GRID_SIZE) -> Path:
    """Path of a JPEG at most `size` pixels on its longer side; made on first request from
    the open, already checked `source` file, whose path is `name`.

    Raises MediaError when the source cannot be decoded.
    """
    info = os.fstat(source.fileno())
    digest = hashlib.sha1(
        f"{name}\0{info.st_size}\0{info.st_mtime_ns}\0{size}".encode("utf-8", "surrogatepass")
    ).hexdigest()
    target = thumbs_dir / "images" / digest[:2] / f"{digest}.jpg"
    if not target.is_file():
        image = open_image(source, target_size=size, longer_side=True)
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        atomic_write(target, lambda handle: image.save(handle, format="JPEG", quality=QUALITY))
    return target


def frame_thumbnail(thumbs_dir: Path, content_hash: str, t: float) -> Path | None:
    """The thumbnail indexing kept for the video frame at `t` seconds, if it is on disk."""
    target = thumb_path(thumbs_dir / content_hash, t)
    return target if target.is_file() else None


def jpeg_bytes(image: Image.Image, size: int = GRID_SIZE) -> bytes:
    """A small JPEG of an in-memory image (an uploaded query), for showing it back."""
    small = image.copy()
    small.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


@dataclass(frozen=True)
class Inline:
    """A thumbnail a page can embed as it is (a data URI), with its pixel size for laying
    out a grid whose tiles keep each picture's aspect ratio."""

    uri: str
    width: int
    height: int


@functools.lru_cache(maxsize=4096)
def inline(path: Path) -> Inline:
    """A thumbnail file as a data URI; cached, since a thumbnail's name changes with its
    source, so one path always holds the same bytes."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return Inline(f"data:image/jpeg;base64,{base64.b64encode(data).decode('ascii')}", width, height)
