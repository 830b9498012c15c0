"""The facts a photo viewer shows beside a photo: pixel size, camera, lens, exposure, date.

Only the header and the EXIF block are read, never the pixels, so the panel is cheap to show
for any file. Files and EXIF blocks in the wild are often damaged or odd (rationals with a zero
denominator, bytes where text belongs, tuples where a number belongs), so nothing here raises:
a field that cannot be read is None, and the reason goes to the log.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from PIL import ExifTags, Image

from imgfinder.media.images import register_heif, taken_at

logger = logging.getLogger(__name__)

_Tag = ExifTags.Base

#: EXIF orientations that turn the stored image by a quarter, so its upright width is the
#: stored height
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class PhotoDetails:
    """What is known about a photo; None wherever the file does not say or says nonsense."""

    width: int | None = None
    height: int | None = None
    camera: str | None = None
    lens: str | None = None
    exposure: str | None = None
    taken: str | None = None


def photo_details(source: BinaryIO | str | os.PathLike[str]) -> PhotoDetails:
    """What a viewer's info panel shows about a photo, read from its header and EXIF only.

    The size is the upright one (EXIF orientation applied), as the viewer shows the photo.
    Never raises: a file that is not an image gives all None, and a broken EXIF block gives
    just the size (or whatever part of it is readable).
    """
    register_heif()
    try:
        with Image.open(source) as image:  # lazy: reads the header, not the pixels
            return _details(image)
    except Exception as exc:  # plugins raise many types on malformed input; all mean "bad file"
        logger.info("no photo details for %s: %s: %s", _name(source), type(exc).__name__, exc)
        return PhotoDetails()


def _details(image: Image.Image) -> PhotoDetails:
    width, height = image.size
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow would decode the whole PNG to look for an eXIf chunk after the pixel data.
        return PhotoDetails(width=width, height=height)
    try:
        exif = image.getexif()
        inner = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception as exc:  # a damaged EXIF block is not worth the size
        logger.debug("ignoring unreadable EXIF: %s", exc)
        return PhotoDetails(width=width, height=height)
    if _integer(_get(exif, inner, _Tag.Orientation)) in _QUARTER_TURNS:
        width, height = height, width
    return PhotoDetails(
        width=width,
        height=height,
        camera=_camera(_text(_get(exif, inner, _Tag.Make)), _text(_get(exif, inner, _Tag.Model))),
        lens=_text(_get(exif, inner, _Tag.LensModel)),
        exposure=_exposure(exif, inner),
        taken=taken_at(image),
    )


def _get(exif: Mapping[int, object], inner: Mapping[int, object], tag: _Tag) -> object:
    """A tag's value from the Exif IFD, or from IFD0 where some writers flatten it to.

    Pillow decodes values lazily, so a damaged value raises only when it is looked up.
    """
    for ifd in (inner, exif):
        try:
            value = ifd.get(tag)
        except Exception as exc:
            logger.debug("ignoring unreadable EXIF %s: %s", tag.name, exc)
            continue
        if value is not None:
            return value
    return None


def _camera(make: str | None, model: str | None) -> str | None:
    """Make and model, without the make twice ("Canon" + "Canon EOS 5D", "NIKON CORPORATION"
    + "NIKON D750")."""
    if make and model and make.split()[0].casefold() == model.split()[0].casefold():
        return model
    return " ".join(part for part in (make, model) if part) or None


def _exposure(exif: Mapping[int, object], inner: Mapping[int, object]) -> str | None:
    """Shutter · aperture · ISO · focal length, as far as the EXIF says them."""
    seconds = _number(_get(exif, inner, _Tag.ExposureTime))
    f_number = _number(_get(exif, inner, _Tag.FNumber))
    iso = _integer(_get(exif, inner, _Tag.ISOSpeedRatings))
    focal = _number(_get(exif, inner, _Tag.FocalLength))
    parts = [
        _shutter(seconds) if seconds else None,
        f"f/{_decimal(f_number)}" if f_number else None,
        f"ISO {iso}" if iso else None,
        f"{_decimal(focal)} mm" if focal else None,
    ]
    return " · ".join(part for part in parts if part) or None


def _shutter(seconds: float) -> str:
    """Long exposures in seconds ("2 s"), short ones as the fraction cameras show ("1/250 s")."""
    if seconds >= 1:
        return f"{_decimal(seconds)} s"
    return f"1/{round(1 / seconds)} s"


def _decimal(value: float) -> str:
    return f"{round(value, 1):g}"


def _text(value: object) -> str | None:
    """EXIF text, which cameras pad with NULs and spaces, and some store as bytes."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    return value.replace("\x00", " ").strip() or None


def _number(value: object) -> float | None:
    """A positive finite number from an int, float or IFDRational, or the first of a tuple of
    them (ISO may have several); a zero denominator reads as NaN and so as None."""
    if isinstance(value, tuple):
        value = value[0] if value else None
    if not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def _integer(value: object) -> int | None:
    number = _number(value)
    return round(number) if number is not None else None


def _name(source: BinaryIO | str | os.PathLike[str]) -> str:
    """What to call the source in the log: its path, or the name of an open file."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    return str(getattr(source, "name", "a stream"))
