"""Fast, defensive image decoding for the indexing pipeline.

The embedder only needs about `image_size` pixels on the shortest side, so decoding reduces
early (JPEG DCT scaling, then integer box reduction) instead of decoding full size and resizing.
Every failure becomes a `MediaError` whose message is a short reason without the path, so a run
can count skipped files by reason.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import IO, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgfinder.errors import MediaError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Images with more pixels than this are refused before any pixel is decoded. It equals
#: Pillow's own hard limit (2 × `Image.MAX_IMAGE_PIXELS`), above which `Image.open` refuses
#: anyway, so the two guards agree; a larger value only helps if that global is raised too.
DEFAULT_MAX_PIXELS = 178_956_970

_GRAY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE = (255, 255, 255)

#: EXIF tags of when a photo was taken, best first: DateTimeOriginal and DateTimeDigitized (in
#: the Exif IFD), then IFD0's DateTime, which editors may have rewritten
_EXIF_IFD = 0x8769
_EXIF_TAKEN = ((_EXIF_IFD, 36867), (_EXIF_IFD, 36868), (None, 306))

#: MPF (CIPA DC-007) types of the reduced copies cameras store beside a photo. Gain maps
#: (Ultra HDR), stereo views and panorama parts have other types and never stand in for it.
_PREVIEW_TYPES = frozenset(
    {"Large Thumbnail (VGA Equivalent)", "Large Thumbnail (Full HD Equivalent)"}
)
_MP_ENTRIES = 0xB002
#: how far a preview's aspect ratio may differ from its photo's (Sony: 1616x1080 for 3:2, 0.25 %)
_PREVIEW_SHAPE_TOLERANCE = 0.01

_heif_lock = threading.Lock()
_heif_available: bool | None = None


def register_heif() -> bool:
    """Let Pillow open HEIC/HEIF (phone photos) when pillow-heif is installed; True if it can.

    Safe to call from many threads and many times; the import happens once, on first use, so
    importing imgfinder stays cheap.
    """
    global _heif_available
    if _heif_available is not None:
        return _heif_available
    with _heif_lock:
        if _heif_available is None:
            try:
                from pillow_heif import register_heif_opener
            except ImportError:
                _heif_available = False
            else:
                register_heif_opener()
                _heif_available = True
    return _heif_available


def open_image(
    source: str | os.PathLike[str] | IO[bytes],
    target_size: int | None = None,
    *,
    longer_side: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode the first frame of an image as upright RGB, reduced but never below `target_size`.

    With `target_size`, the shorter side of the result (the longer one with `longer_side`, for a
    thumbnail that fits a square) is at least `target_size`, or the original's if smaller, and
    usually under twice that, so the embedder's own resize is cheap. Raises `MediaError` with a
    short reason for anything that is not a usable image.
    """
    if target_size is not None and target_size < 1:
        raise ValueError(f"target_size must be positive, got {target_size}")
    register_heif()
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as handle:
                if os.fstat(handle.fileno()).st_size == 0:
                    raise MediaError("empty file")
                return _decode(handle, target_size, longer_side, max_pixels)
        return _decode(source, target_size, longer_side, max_pixels)
    except MediaError:
        raise
    except Exception as exc:  # plugins raise many types on malformed input; all mean "bad file"
        raise MediaError(_reason(exc)) from exc


def _decode(
    handle: IO[bytes], target_size: int | None, longer_side: bool, max_pixels: int
) -> Image.Image:
    image = Image.open(handle)  # reads the header only
    width, height = image.size
    if width < 1 or height < 1:
        raise MediaError("image has no pixels")
    if width * height > max_pixels:
        raise MediaError(f"image too large: {width}x{height} is over {max_pixels:,} pixels")
    if target_size is None:
        image.load()
        return _upright_rgb(image)
    box = _smallest_box(image.size, target_size, longer_side)
    # draft() keeps each side at least the requested one; for the shorter side a target square
    # asks exactly that (the box, rounded up to the shape, could cost a DCT scale step)
    request = box if longer_side else (target_size, target_size)
    if image.format == "MPO" and (frames := _preview_frames(image)):
        preview = _camera_preview(image, frames, box, request)
        if preview is not None:
            return _reduced(_upright_rgb(preview), target_size, longer_side)
        image = Image.open(handle)  # trying left the file on another picture: back to the photo
    if image.format in ("JPEG", "MPO", "HEIF"):
        # A JPEG's draft() divides by the largest of 8, 4, 2, 1 that keeps each side at least
        # the requested one (DCT scaling). pillow-heif's picks the smallest embedded thumbnail
        # at least that size which is a scaled copy of the photo (same shape, rotation, crop
        # and colour profile), else keeps the photo: a 12 MP HEIC costs about 1.9 s of CPU,
        # its 320x240 thumbnail 20 ms.
        image.draft("RGB", request)
    image.load()
    return _reduced(_upright_rgb(image), target_size, longer_side)


def _smallest_box(size: tuple[int, int], target_size: int, longer_side: bool) -> tuple[int, int]:
    """The smallest (width, height) of the shape of `size` whose shorter side (or longer, with
    `longer_side`) is at least `target_size`, and never larger than `size`."""
    width, height = size
    side = max(size) if longer_side else min(size)
    if side <= target_size:
        return size
    return (-(-width * target_size // side), -(-height * target_size // side))


def _preview_frames(image: Image.Image) -> list[int]:
    """The pictures of an MPO file listed as the camera's reduced copies of the photo."""
    entries = getattr(image, "mpinfo", {}).get(_MP_ENTRIES, [])
    return [
        frame
        for frame, entry in enumerate(entries[1:], start=1)
        if entry.get("Attribute", {}).get("MPType") in _PREVIEW_TYPES
        and entry["Attribute"].get("ImageDataFormat") == "JPEG"
    ]


def _camera_preview(
    image: Image.Image, frames: list[int], box: tuple[int, int], request: tuple[int, int]
) -> Image.Image | None:
    """The first of `frames` that can stand in for the photo, decoded (drafted to `request`)
    and carrying the photo's EXIF: at least `box` on each side, smaller than the photo (so
    within its pixel budget) and framed like it; else None, with `image` left anywhere.

    Huffman decoding does not shrink with DCT scaling: a 12 MP photo costs about 46 ms of CPU
    even at 1/8 scale, the 1616x1080 preview a Sony camera stores beside it a fraction of that.
    A preview whose shape differs from the photo's (a crop that left it stale) is not used.
    """
    width, height = image.size
    photo_metadata = {key: image.info.get(key) for key in ("exif", "xmp")}  # seek drops them
    for frame in frames:
        try:
            image.seek(frame)
            preview_width, preview_height = image.size
            if not (box[0] <= preview_width < width and box[1] <= preview_height < height):
                continue
            if not _same_shape(image.size, (width, height)):
                continue
            image.draft("RGB", request)
            image.load()
        except Exception as exc:  # a damaged preview is no reason to lose the photo
            logger.debug("ignoring unreadable camera preview: %s", exc)
            continue
        preview = image.copy()  # a plain image, which reads its EXIF from `info`, set next
        for key, value in photo_metadata.items():
            if value is None:
                preview.info.pop(key, None)
            else:
                preview.info[key] = value
        return preview
    return None


def _same_shape(size: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether two pixel sizes have the same aspect ratio, within `_PREVIEW_SHAPE_TOLERANCE`."""
    (width, height), (other_width, other_height) = size, other
    return abs(width * other_height - height * other_width) <= (
        _PREVIEW_SHAPE_TOLERANCE * height * other_width
    )


def _upright_rgb(image: Image.Image) -> Image.Image:
    """A loaded image turned upright by its EXIF, in RGB."""
    _apply_orientation(image)
    return to_rgb(image)


def _reduced(image: Image.Image, target_size: int, longer_side: bool) -> Image.Image:
    """Box reduction by an integer factor: cheap, anti-aliased, the measured side >= target."""
    factor = (max(image.size) if longer_side else min(image.size)) // target_size
    return image.reduce(factor) if factor >= 2 else image


def _apply_orientation(image: Image.Image) -> None:
    """Rotate/flip as the EXIF orientation says; a damaged EXIF block is not worth the image."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:  # malformed EXIF/XMP can raise from deep inside Pillow
        logger.debug("ignoring unreadable orientation: %s", exc)


def taken_at(image: Image.Image) -> str | None:
    """When the photo was taken by its EXIF, as ISO text in the camera's local time (EXIF
    keeps no zone), or None when it does not say or says nonsense."""
    try:
        exif = image.getexif()
        inner = exif.get_ifd(_EXIF_IFD)
    except Exception as exc:  # a damaged EXIF block is not worth the image
        logger.debug("ignoring unreadable EXIF: %s", exc)
        return None
    for ifd, tag in _EXIF_TAKEN:
        value = (inner if ifd else exif).get(tag)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str):
            continue
        try:
            taken = datetime.strptime(value.strip().rstrip("\x00")[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        if 1900 <= taken.year <= 2200:
            return taken.isoformat()
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of an image in any Pillow mode, with transparency composited onto white.

    16-bit grey is scaled to 8 bits (Pillow's own conversion clips it to white); 32-bit integer
    and float images are scaled by the range their values fit in.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _GRAY16_MODES:
        gray = np.asarray(image).astype(np.uint32)
        return _gray_to_rgb(((gray * 255 + 32767) // 65535).astype(np.uint8))
    if mode in ("I", "F"):
        return _gray_to_rgb(_wide_to_uint8(np.asarray(image, dtype=np.float32), mode == "F"))
    if mode in _ALPHA_MODES or "transparency" in image.info:
        if mode == "La":
            image = image.convert("LA")  # Pillow cannot go from La to RGBA directly
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _wide_to_uint8(values: np.ndarray, is_float: bool) -> np.ndarray:
    """Scale 32-bit samples to 0..255 by the range they fit: [0,1] float, 8 or 16 bit, else span."""
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    if is_float and low >= 0.0 and high <= 1.0:
        offset, scale = 0.0, 255.0
    elif low >= 0.0 and high <= 255.0:
        offset, scale = 0.0, 1.0
    elif low >= 0.0 and high <= 65535.0:
        offset, scale = 0.0, 255.0 / 65535.0
    else:
        offset, scale = low, 255.0 / max(high - low, 1e-12)
    return np.clip(np.rint((values - offset) * scale), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray)).convert("RGB")


def _reason(exc: BaseException) -> str:
    """Short, path-free reason for a decode failure."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "image too large: refused by the decompression-bomb guard"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image: cannot identify image file"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, EOFError):
        return "truncated image"
    if isinstance(exc, OSError):
        message = str(exc)
        if "truncated" in message.lower():
            return "truncated image"
        return f"cannot decode image: {message}"
    if isinstance(exc, SyntaxError):
        return f"corrupt image: {exc.msg}"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode image"
    return f"cannot decode image: {type(exc).__name__}: {exc}"


def decode_ahead(
    items: Iterable[T],
    fn: Callable[[T], R],
    *,
    workers: int = 2,
    max_in_flight: int | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> Iterator[tuple[T, R | Exception]]:
    """Run `fn` over `items` in a thread pool, yielding `(item, result or exception)` in order.

    Decoding releases the GIL, so threads keep the embedder fed. At most `max_in_flight`
    (default `4 * workers`) items are submitted but not yet yielded, which bounds memory however
    long `items` is. Closing the generator early cancels what has not started and waits for
    what has, so no thread outlives the loop. `on_wait` is told the seconds the consumer
    waited for each result that was not ready yet.
    """
    if workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    limit = 4 * workers if max_in_flight is None else max_in_flight
    if limit < 1:
        raise ValueError(f"max_in_flight must be positive, got {max_in_flight}")
    return _decode_ahead(items, fn, workers, limit, on_wait)


def _decode_ahead(
    items: Iterable[T],
    fn: Callable[[T], R],
    workers: int,
    limit: int,
    on_wait: Callable[[float], None] | None,
) -> Iterator[tuple[T, R | Exception]]:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgfinder-decode")
    pending: deque[tuple[T, Future[R]]] = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= limit:
                yield _settle(*pending.popleft(), on_wait)
        while pending:
            yield _settle(*pending.popleft(), on_wait)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _settle(
    item: T, future: Future[R], on_wait: Callable[[float], None] | None
) -> tuple[T, R | Exception]:
    if on_wait is not None and not future.done():
        started = time.perf_counter()
        wait([future])
        on_wait(time.perf_counter() - started)
    try:
        return item, future.result()
    except Exception as exc:
        return item, exc
