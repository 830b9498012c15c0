"""The photo info panel: size, camera, lens, exposure and date from a file's header and EXIF."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageFile
from PIL.TiffImagePlugin import IFDRational

from imgfinder.media.details import PhotoDetails, photo_details
from imgfinder.media.images import register_heif

Tag = ExifTags.Base


def exif(**tags: object) -> Image.Exif:
    """EXIF with IFD0 tags (Make, Model, Orientation) where cameras put them, the rest in the
    Exif sub-IFD, as real cameras write it."""
    block = Image.Exif()
    inner = block.get_ifd(ExifTags.IFD.Exif)
    for name, value in tags.items():
        ifd = block if name in ("Make", "Model", "Orientation") else inner
        ifd[Tag[name]] = value
    return block


def jpeg(path: Path, block: Image.Exif | None = None, size: tuple[int, int] = (64, 48)) -> Path:
    """A noisy JPEG, so it has enough scan data after the header to cut in half."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    extra = {} if block is None else {"exif": block}
    Image.fromarray(pixels).save(path, "JPEG", **extra)
    return path


FULL = {
    "Make": "FUJIFILM",
    "Model": "X-T3",
    "LensModel": "XF35mmF1.4 R",
    "ExposureTime": IFDRational(1, 250),
    "FNumber": IFDRational(28, 10),
    "ISOSpeedRatings": 100,
    "FocalLength": IFDRational(35, 1),
    "DateTimeOriginal": "2021:06:05 14:30:00",
}


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Formats of the images whose pixels got decoded: the panel must only read headers."""
    formats: list[str] = []
    load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        formats.append(str(self.format))
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return formats


def test_full_exif_gives_every_field(tmp_path: Path, decoded: list[str]) -> None:
    assert photo_details(jpeg(tmp_path / "a.jpg", exif(**FULL))) == PhotoDetails(
        width=64,
        height=48,
        camera="FUJIFILM X-T3",
        lens="XF35mmF1.4 R",
        exposure="1/250 s · f/2.8 · ISO 100 · 35 mm",
        taken="2021-06-05T14:30:00",
    )
    assert decoded == []


@pytest.mark.parametrize(
    ("make", "model", "camera"),
    [
        ("Canon", "Canon EOS 5D", "Canon EOS 5D"),
        ("Canon\x00", "  Canon EOS 5D\x00\x00", "Canon EOS 5D"),
        ("NIKON CORPORATION", "NIKON D750", "NIKON D750"),
        ("Apple", "iPhone 12", "Apple iPhone 12"),
        ("Canon", None, "Canon"),
        (None, "EOS 5D", "EOS 5D"),
        ("\x00\x00", "  ", None),
    ],
)
def test_the_make_is_not_repeated_in_the_camera(
    tmp_path: Path, make: str | None, model: str | None, camera: str | None
) -> None:
    tags = {name: value for name, value in (("Make", make), ("Model", model)) if value is not None}
    assert photo_details(jpeg(tmp_path / "a.jpg", exif(**tags))).camera == camera


def test_no_exif_gives_only_the_size(tmp_path: Path) -> None:
    assert photo_details(jpeg(tmp_path / "a.jpg")) == PhotoDetails(width=64, height=48)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (IFDRational(2, 1), "2 s"),
        (IFDRational(5, 2), "2.5 s"),
        (IFDRational(1, 250), "1/250 s"),
        (IFDRational(10, 2500), "1/250 s"),
        (IFDRational(1, 1), "1 s"),
    ],
)
def test_exposure_time(tmp_path: Path, seconds: IFDRational, shown: str) -> None:
    path = jpeg(tmp_path / "a.jpg", exif(ExposureTime=seconds))
    assert photo_details(path).exposure == shown


def test_zero_denominators_are_left_out(tmp_path: Path) -> None:
    block = exif(
        ExposureTime=IFDRational(1, 0),
        FNumber=IFDRational(0, 0),
        FocalLength=IFDRational(35, 0),
        ISOSpeedRatings=200,
    )
    assert photo_details(jpeg(tmp_path / "a.jpg", block)).exposure == "ISO 200"


def test_odd_value_types_are_read(tmp_path: Path) -> None:
    block = exif(LensModel=b"EF 35mm\x00", ISOSpeedRatings=(400, 0), FNumber=1.8)
    details = photo_details(jpeg(tmp_path / "a.jpg", block))
    assert (details.lens, details.exposure) == ("EF 35mm", "f/1.8 · ISO 400")


def test_quarter_turned_photos_have_their_upright_size(tmp_path: Path) -> None:
    details = photo_details(jpeg(tmp_path / "a.jpg", exif(Orientation=6)))
    assert (details.width, details.height) == (48, 64)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_a_broken_exif_block_still_gives_the_size(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48)).save(path, "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7fjunk")
    assert photo_details(path) == PhotoDetails(width=64, height=48)


def test_a_truncated_photo_gives_what_its_header_says(tmp_path: Path) -> None:
    path = jpeg(tmp_path / "a.jpg", exif(**FULL), size=(256, 256))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    details = photo_details(path)
    assert (details.width, details.camera) == (256, "FUJIFILM X-T3")


@pytest.mark.parametrize(
    "content", [b"", b"\xff\xd8\xff\xe1\x00", b"hello, I am not a photo\n"], ids=repr
)
def test_files_that_are_not_photos_give_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    with caplog.at_level(logging.INFO, logger="imgfinder.media.details"):
        assert photo_details(path) == PhotoDetails()
    assert "fake.jpg" in caplog.text


def test_a_missing_file_gives_nothing(tmp_path: Path) -> None:
    assert photo_details(tmp_path / "gone.jpg") == PhotoDetails()


def test_a_png_gives_its_size_without_decoding(tmp_path: Path, decoded: list[str]) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (30, 20)).save(path)
    assert photo_details(path) == PhotoDetails(width=30, height=20)
    assert decoded == []


def test_a_png_with_exif_gives_its_camera(tmp_path: Path, decoded: list[str]) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (30, 20)).save(path, exif=exif(Make="Canon", Model="Canon EOS 5D"))
    assert photo_details(path) == PhotoDetails(width=30, height=20, camera="Canon EOS 5D")
    assert decoded == []


def test_an_open_stream_is_read_and_left_open(tmp_path: Path) -> None:
    stream = io.BytesIO(jpeg(tmp_path / "a.jpg", exif(Make="Canon")).read_bytes())
    assert photo_details(stream) == PhotoDetails(width=64, height=48, camera="Canon")
    assert not stream.closed


def test_a_heic_photo_gives_its_size(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    if not register_heif() or not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif has no HEIC encoder")
    path = tmp_path / "IMG_0001.HEIC"
    Image.new("RGB", (40, 30), (30, 180, 60)).save(path, "HEIF", exif=exif(Make="Apple"))
    assert photo_details(path) == PhotoDetails(width=40, height=30, camera="Apple")
