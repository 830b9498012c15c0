"""Checks an uploaded query image before any model sees it.

A browser upload is untrusted: its name and MIME type say nothing. The bytes must be small
enough, start like a JPEG, PNG, WebP, HEIC or AVIF file, declare a sane number of pixels (a
tiny file can claim gigapixels: a decompression bomb) and decode cleanly. Every refusal is one
sentence.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, features

from imgfinder.errors import MediaError
from imgfinder.media.images import open_image, register_heif

#: largest upload accepted, in megabytes; the uploader widget is given the same limit
MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
#: pixel budget of a query image: 50 MP covers phone cameras, refuses decompression bombs
MAX_UPLOAD_PIXELS = 50_000_000
ACCEPTED = "JPEG, PNG, WebP, HEIC or AVIF"
#: ISO-BMFF brands (bytes 8-12, after "ftyp") of phone photos: HEIC/HEIF, and AVIF
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


class UploadError(MediaError):
    """An upload that cannot be used as a query; the message is shown as is."""


@dataclass(frozen=True)
class CheckedUpload:
    """A decoded upload, reduced for the embedder, and what it was."""

    image: Image.Image
    format: str
    width: int
    height: int


def sniff_format(head: bytes) -> str | None:
    """The image format the first bytes announce ("JPEG", "PNG", "WEBP", "HEIF", "AVIF"),
    or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        if head[8:12] in _AVIF_BRANDS:
            return "AVIF"
        if head[8:12] in _HEIF_BRANDS:
            return "HEIF"
    return None


def _check_decoder(kind: str) -> None:
    """A HEIC or AVIF upload needs a decoder this install may lack: say which."""
    if kind == "HEIF" and not register_heif():
        raise UploadError("HEIC photos need pillow-heif: pip install 'imgfinder[heic]'.")
    if kind == "AVIF" and not features.check("avif"):
        raise UploadError("This Pillow cannot read AVIF; upload a JPEG, PNG or WebP instead.")


def check_upload(
    data: bytes,
    *,
    target_size: int | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> CheckedUpload:
    """Validate and decode an upload by its content; raises UploadError with one sentence."""
    if not data:
        raise UploadError("The uploaded file is empty.")
    if len(data) > max_bytes:
        raise UploadError(
            f"The uploaded file is {len(data) / 1048576:.1f} MB; "
            f"the limit is {max_bytes / 1048576:.0f} MB."
        )
    kind = sniff_format(data[:16])
    if kind is None:
        raise UploadError(f"That file is not a {ACCEPTED} image (checked by its content).")
    _check_decoder(kind)
    try:
        with Image.open(io.BytesIO(data)) as header:  # reads the header only
            width, height = header.size
            declared = "JPEG" if header.format == "MPO" else header.format  # phone JPEGs
    except Image.DecompressionBombError as exc:  # Pillow's own guard fired before ours
        raise UploadError(
            f"That image has too many pixels, more than the {max_pixels // 1_000_000} MP "
            f"allowed (a decompression-bomb guard)."
        ) from exc
    except Exception as exc:  # any parser failure means the same thing to the user
        raise UploadError(f"That {kind} file is damaged and cannot be read.") from exc
    if declared != kind:
        raise UploadError(f"That file is not a {ACCEPTED} image (checked by its content).")
    if width * height > max_pixels:
        raise UploadError(
            f"That image has too many pixels: {width}×{height}, more than the "
            f"{max_pixels // 1_000_000} MP allowed (a decompression-bomb guard)."
        )
    try:
        image = open_image(io.BytesIO(data), target_size=target_size, max_pixels=max_pixels)
    except MediaError as exc:
        raise UploadError(f"That {kind} file is damaged and cannot be decoded.") from exc
    return CheckedUpload(image=image, format=kind, width=width, height=height)
