"""Tests for media scanning and image decoding, all on files generated in tmp_path."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import png_claiming_size
from PIL import Image

from imgfinder.errors import MediaError
from imgfinder.media.images import decode_ahead, open_image, register_heif, taken_at, to_rgb
from imgfinder.media.scan import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, content_hash, scan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from common import LARGE_THUMBNAIL_FULL_HD, camera_jpeg

# ---------------------------------------------------------------- helpers

_WHITE = (255, 255, 255)


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def save(image: Image.Image, path: Path, fmt: str | None = None, **params: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **params)
    return path


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Gradients, smooth blobs and fine noise: compresses and decodes like a real photo."""
    rng = np.random.default_rng(seed)
    gx = np.linspace(0, 130, width).astype(np.uint8)
    gy = np.linspace(0, 130, height).astype(np.uint8)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[..., 0] = gx[None, :]
    pixels[..., 1] = gy[:, None]
    pixels[..., 2] = gx[None, :] // 2 + gy[:, None] // 2
    small = rng.integers(0, 80, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    pixels += np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))
    pixels += rng.integers(0, 36, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def names(result) -> list[str]:
    return [f.path.name for f in result.files]


def reasons(result) -> dict[str, str]:
    return {os.path.basename(s.path): s.reason for s in result.skipped}


def close_to(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 3) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# ---------------------------------------------------------------- scan


def test_extensions_any_case_and_video_filter(tmp_path: Path) -> None:
    for name in ["a.jpg", "B.JPG", "c.Png", "d.jpeg", "e.TIF", "f.webp", "notes.txt", "raw.cr2"]:
        write(tmp_path / name)
    write(tmp_path / "sub" / "clip.MP4")
    write(tmp_path / "sub" / "movie.mov")

    result = scan(tmp_path)
    expected = ["B.JPG", "a.jpg", "c.Png", "d.jpeg", "e.TIF", "f.webp", "clip.MP4", "movie.mov"]
    assert names(result) == expected
    kinds = {f.path.name: f.kind for f in result.files}
    assert kinds["clip.MP4"] == "video" and kinds["B.JPG"] == "image"
    assert result.skipped == []
    first = result.files[0]
    assert first.path.is_absolute() and first.root == tmp_path
    assert first.size == 1 and first.mtime_ns == first.path.stat().st_mtime_ns

    assert names(scan(tmp_path, include_videos=False))[-1] == "f.webp"
    assert {"jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff", "tif"} <= IMAGE_EXTENSIONS
    assert {"mp4", "mov", "avi", "mkv", "webm", "m4v"} == VIDEO_EXTENSIONS


def test_heif_extensions_follow_pillow_heif() -> None:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        assert "heic" not in IMAGE_EXTENSIONS
    else:
        assert {"heic", "heif"} <= IMAGE_EXTENSIONS


def test_hidden_and_system_folders(tmp_path: Path) -> None:
    write(tmp_path / "keep" / "a.jpg")
    write(tmp_path / ".hidden.jpg")
    for folder in [
        ".thumbs",
        "@eaDir",
        ".Trashes",
        "$RECYCLE.BIN",
        "System Volume Information",
        "__MACOSX",
    ]:
        write(tmp_path / folder / "junk.jpg")

    assert names(scan(tmp_path)) == ["a.jpg"]
    everything = scan(tmp_path, include_hidden=True)
    assert len(everything.files) == 8
    # A root is never filtered, even when its own name is hidden.
    assert names(scan(tmp_path / "@eaDir")) == ["junk.jpg"]


def test_symlink_loop_terminates_and_counts_once(tmp_path: Path) -> None:
    write(tmp_path / "a" / "x.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "b").symlink_to(tmp_path / "a", target_is_directory=True)
    write(tmp_path / "c" / "y.jpg")
    (tmp_path / "c" / "link.jpg").symlink_to(tmp_path / "c" / "y.jpg")

    # In a child process, so a walk that loops fails the test instead of hanging the run.
    code = "import sys; from imgfinder.media.scan import scan; print(len(scan(sys.argv[1]).files))"
    repo = Path(__file__).resolve().parents[1]
    child = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=10,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert child.stdout.strip() == "3", child.stderr
    result = scan(tmp_path)
    assert names(result) == ["x.jpg", "link.jpg", "y.jpg"]
    loop = "symlink to a folder already scanned (a loop or a duplicate)"
    assert reasons(result) == {"loop": loop, "b": loop}
    # Overlapping roots do not list a folder twice either.
    assert len(scan([tmp_path, tmp_path / "a"]).files) == 3


def test_broken_symlink_is_skipped_with_reason(tmp_path: Path) -> None:
    write(tmp_path / "ok.jpg")
    (tmp_path / "dead.jpg").symlink_to(tmp_path / "missing.jpg")
    result = scan(tmp_path)
    assert names(result) == ["ok.jpg"]
    assert reasons(result) == {"dead.jpg": "broken symlink"}


def test_unreadable_folder_real_permissions(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    write(locked / "a.jpg")
    write(tmp_path / "b.jpg")
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
        except PermissionError:
            pass
        else:
            pytest.skip("this user (root?) can read a chmod 000 folder; see the simulated test")
        result = scan(tmp_path)
    finally:
        locked.chmod(0o755)
    assert names(result) == ["b.jpg"]
    assert reasons(result) == {"locked": "permission denied"}


def test_unreadable_folder_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "locked" / "a.jpg")
    write(tmp_path / "b.jpg")
    real_scandir = os.scandir

    def guarded(path):
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded)
    result = scan(tmp_path)
    assert names(result) == ["b.jpg"]
    assert reasons(result) == {"locked": "permission denied"}


def test_non_utf8_names_are_found_with_their_exact_bytes(tmp_path: Path) -> None:
    base = os.fsencode(tmp_path)
    try:
        fd = os.open(base + b"/bad\xff.jpg", os.O_CREAT | os.O_WRONLY, 0o644)
    except OSError:
        pytest.skip("this filesystem refuses non-UTF-8 names")
    os.write(fd, b"data")
    os.close(fd)
    os.mkdir(base + b"/dir\xfe")
    fd = os.open(base + b"/dir\xfe/inside.jpg", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"data")
    os.close(fd)
    write(tmp_path / "good.jpg")

    result = scan(tmp_path)
    assert not result.skipped
    found = sorted(os.fsencode(f.path)[len(base) :] for f in result.files)
    assert found == [b"/bad\xff.jpg", b"/dir\xfe/inside.jpg", b"/good.jpg"]


def test_empty_missing_and_file_roots(tmp_path: Path) -> None:
    write(tmp_path / "empty.jpg", b"")
    photo = write(tmp_path / "photo.jpg")
    notes = write(tmp_path / "notes.txt")

    result = scan(tmp_path)
    assert names(result) == ["photo.jpg"]
    assert reasons(result) == {"empty.jpg": "empty file"}

    missing = scan([tmp_path / "nope", photo, notes])
    assert [(f.path, f.root) for f in missing.files] == [(photo, photo)]
    assert reasons(missing) == {
        "nope": "not found",
        "notes.txt": "not a supported image or video type",
    }
    assert scan(str(photo)).files[0].path == photo


def test_content_hash(tmp_path: Path) -> None:
    payload = os.urandom(3 * (1 << 20) + 123)  # spans several 1 MiB chunks
    first = write(tmp_path / "a.bin", payload)
    second = write(tmp_path / "moved" / "b.jpg", payload)
    other = write(tmp_path / "c.bin", payload[:-1] + b"!")
    assert content_hash(first) == content_hash(second)
    assert content_hash(first) == hashlib.blake2b(payload, digest_size=16).hexdigest()
    assert content_hash(first) != content_hash(other)
    assert len(content_hash(first)) == 32
    with pytest.raises(MediaError, match="not found"):
        content_hash(tmp_path / "missing")


# ---------------------------------------------------------------- decoding errors


@pytest.fixture(scope="module")
def small_jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    photo_like(320, 240).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (os.urandom(4096), "not an image"),
        (b"just some notes, not a picture\n" * 20, "not an image"),
        ("truncated", "truncated image"),
    ],
    ids=["zero-byte", "random-bytes", "text-file", "truncated"],
)
def test_bad_files_raise_media_error(
    tmp_path: Path, small_jpeg_bytes: bytes, content: bytes | str, reason: str
) -> None:
    data = small_jpeg_bytes[: len(small_jpeg_bytes) // 2] if content == "truncated" else content
    path = write(tmp_path / "photo.jpg", data)
    with pytest.raises(MediaError) as info:
        open_image(path, 224)
    assert str(info.value).startswith(reason)
    assert str(path) not in str(info.value)  # reasons are path-free so they can be counted


def test_missing_file_raises_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="file not found"):
        open_image(tmp_path / "nope.jpg")


def test_decompression_bomb(tmp_path: Path) -> None:
    bomb = write(tmp_path / "bomb.png", png_claiming_size(30_000, 30_000))
    with pytest.raises(MediaError, match="too large"):
        open_image(bomb, 224)
    small = save(Image.new("RGB", (20, 20)), tmp_path / "small.png")
    with pytest.raises(MediaError, match="too large"):
        open_image(small, max_pixels=100)
    assert open_image(small, max_pixels=400).size == (20, 20)


# ---------------------------------------------------------------- colour modes


def _mode_cases(tmp_path: Path) -> list[tuple[str, Path, tuple[int, int, int]]]:
    cases = []

    def add(label: str, image: Image.Image, name: str, expected: tuple[int, int, int]) -> None:
        params = {"lossless": True} if name.endswith(".webp") else {}
        cases.append((label, save(image, tmp_path / name, **params), expected))

    add("CMYK jpeg red", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "cmyk.jpg", (255, 0, 0))
    add("CMYK tiff blue", Image.new("CMYK", (16, 16), (255, 255, 0, 0)), "cmyk.tif", (0, 0, 255))
    grey16 = Image.fromarray(np.full((16, 16), 32768, dtype=np.uint16))
    assert grey16.mode == "I;16"
    add("I;16 png mid-grey", grey16, "grey16.png", (128, 128, 128))
    add("I;16 tiff mid-grey", grey16, "grey16.tif", (128, 128, 128))
    add("I 16-bit range", Image.new("I", (16, 16), 65535), "int32.tif", (255, 255, 255))
    add("F in [0,1]", Image.new("F", (16, 16), 0.5), "float.tif", (128, 128, 128))
    add("RGBA transparent", Image.new("RGBA", (16, 16), (10, 200, 30, 0)), "clear.png", _WHITE)
    add("RGBA half black", Image.new("RGBA", (16, 16), (0, 0, 0, 128)), "half.png", (127,) * 3)
    add(
        "RGBA opaque", Image.new("RGBA", (16, 16), (10, 200, 30, 255)), "opaque.webp", (10, 200, 30)
    )
    add("LA transparent", Image.new("LA", (16, 16), (0, 0)), "la.png", _WHITE)
    add("L", Image.new("L", (16, 16), 77), "grey.png", (77, 77, 77))
    add("1 white", Image.new("1", (16, 16), 1), "bits.bmp", _WHITE)
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    add("P opaque red", palette, "pal.bmp", (255, 0, 0))
    clear = palette.copy()
    clear.info["transparency"] = 1
    add("P transparent index (gif)", clear, "clear.gif", _WHITE)
    add("P transparent index (png)", clear, "clear_p.png", _WHITE)
    return cases


def test_every_mode_becomes_correct_rgb(tmp_path: Path) -> None:
    for label, path, expected in _mode_cases(tmp_path):
        image = open_image(path, 8)
        assert image.mode == "RGB", label
        pixel = image.getpixel((4, 4))
        assert close_to(pixel, expected), f"{label}: {pixel} != {expected}"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("RGBa", (4, 4), (0, 0, 0, 0)), _WHITE),
        (Image.new("La", (4, 4), (0, 0)), _WHITE),
        (Image.new("PA", (4, 4), (0, 0)), _WHITE),
        (Image.new("YCbCr", (4, 4), (76, 85, 255)), (254, 0, 0)),
        (Image.new("HSV", (4, 4), (0, 255, 255)), (255, 0, 0)),
        (Image.new("LAB", (4, 4), (255, 128, 128)), _WHITE),
        (Image.new("I;16B", (4, 4), 65535), _WHITE),
        (Image.new("I", (4, 4), 100), (100, 100, 100)),
        (Image.new("I", (4, 4), -5), (0, 0, 0)),
        (Image.new("F", (4, 4), 1000.0), (4, 4, 4)),
    ],
    ids=lambda value: getattr(value, "mode", ""),
)
def test_to_rgb_in_memory_modes(image: Image.Image, expected: tuple[int, int, int]) -> None:
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert close_to(rgb.getpixel((0, 0)), expected), rgb.getpixel((0, 0))


def test_float_range_stretches_when_outside_known_ranges() -> None:
    values = np.array([[-1.0, 0.0], [1.0, 3.0]], dtype=np.float32)
    rgb = to_rgb(Image.fromarray(values))
    assert [rgb.getpixel((x, y))[0] for y in (0, 1) for x in (0, 1)] == [0, 64, 128, 255]


# ---------------------------------------------------------------- orientation, frames


def _halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue, so a rotation shows where each half went."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


@pytest.mark.parametrize(("orientation", "red_on_top"), [(6, True), (8, False)])
@pytest.mark.parametrize("target", [None, 100])
def test_exif_orientation(
    tmp_path: Path, orientation: int, red_on_top: bool, target: int | None
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    small = save(_halves(40, 20), tmp_path / "small.jpg", exif=exif, quality=95)
    big = save(_halves(1600, 800), tmp_path / "big.jpg", exif=exif, quality=95)

    assert open_image(small, target).size == (20, 40)
    image = open_image(big, target)  # the draft path when target is set
    width, height = image.size
    assert height > width
    if target is not None:
        assert min(image.size) >= target and max(image.size) < 1600
    top, bottom = image.getpixel((width // 2, 5)), image.getpixel((width // 2, height - 5))
    red, blue = (255, 0, 0), (0, 0, 255)
    assert close_to(top, red if red_on_top else blue, 8)
    assert close_to(bottom, blue if red_on_top else red, 8)


def test_animated_images_return_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in [(255, 0, 0), (0, 255, 0)]]
    for name in ("anim.gif", "anim.webp"):
        path = save(
            frames[0], tmp_path / name, save_all=True, append_images=frames[1:], lossless=True
        )
        assert Image.open(path).n_frames == 2
        assert close_to(open_image(path).getpixel((16, 16)), (255, 0, 0), 4), name


def test_heic_when_pillow_heif_is_installed(tmp_path: Path) -> None:
    if not register_heif():
        pytest.skip("pillow-heif is not installed")
    path = tmp_path / "phone.heic"
    try:
        Image.new("RGB", (64, 48), (200, 30, 30)).save(path, quality=90)
    except (KeyError, OSError, ValueError) as exc:
        pytest.skip(f"this pillow-heif cannot encode HEIC: {exc}")
    image = open_image(path, 32)
    assert image.mode == "RGB" and image.size == (64, 48)
    assert close_to(image.getpixel((32, 24)), (200, 30, 30), 12)


def test_a_heic_s_own_thumbnail_stands_in_when_large_enough(tmp_path: Path) -> None:
    if not register_heif():
        pytest.skip("pillow-heif is not installed")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2024:05:01 10:00:00"
    photo = _halves(800, 600)
    path = tmp_path / "phone.heic"
    try:
        photo.save(path, quality=90, thumbnails=[320], exif=exif)
    except (KeyError, OSError, ValueError) as exc:
        pytest.skip(f"this pillow-heif cannot encode HEIC: {exc}")
    with Image.open(path) as written:
        if not written.info.get("thumbnails"):
            pytest.skip("this pillow-heif writes no HEIC thumbnails")
    image = open_image(path, 224)
    assert image.size == (320, 240)  # the thumbnail; the photo would be box-reduced to 400x300
    assert close_to(image.getpixel((80, 120)), (255, 0, 0), 16)
    assert close_to(image.getpixel((240, 120)), (0, 0, 255), 16)
    assert taken_at(image) == "2024-05-01T10:00:00"
    assert open_image(path, 256).size == (400, 300)  # 240 px is short of 256: the photo
    assert open_image(path, 320, longer_side=True).size == (320, 240)  # a grid thumbnail's


def test_a_thumbnail_that_fits_a_square_decodes_less(tmp_path: Path) -> None:
    path = save(photo_like(1632, 1224), tmp_path / "2mp.jpg", quality=90)
    assert open_image(path, 320).size == (816, 612)  # shorter side >= 320: 1/2 scale
    assert open_image(path, 320, longer_side=True).size == (408, 306)  # longer side: 1/4
    assert open_image(path, 2000, longer_side=True).size == (1632, 1224)  # never enlarged


# ---------------------------------------------------------------- reduced decoding


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "12mp.jpg"
    return save(photo_like(4000, 3000), path, quality=90)


def _best_cpu_ms(*calls, runs: int = 5) -> list[float]:
    """Best CPU time of this thread per call, the calls interleaved run by run: a neighbour's
    load (these machines are shared) then slows neither side of a comparison."""
    best = [float("inf")] * len(calls)
    for _ in range(runs):
        for index, call in enumerate(calls):
            started = time.thread_time()
            call()
            best[index] = min(best[index], time.thread_time() - started)
    return [seconds * 1000 for seconds in best]


def test_draft_keeps_shortest_side_and_is_faster(big_jpeg: Path) -> None:
    image = open_image(big_jpeg, 224)
    assert image.mode == "RGB"
    assert 224 <= min(image.size) < 2 * 224
    assert image.size == (500, 375)  # 1/8 DCT scaling, no further reduction needed

    drafted, full = _best_cpu_ms(lambda: open_image(big_jpeg, 224), lambda: open_image(big_jpeg))
    assert open_image(big_jpeg).size == (4000, 3000)
    assert drafted * 1.5 < full, (drafted, full)


RED, BLUE = (220, 30, 30), (30, 60, 220)


def _camera_file(
    path: Path, preview_size: tuple[int, int] = (1200, 900), **options: object
) -> Path:
    """A red 2400x1800 photo whose camera preview is blue, so the colour says which was read;
    the preview has no EXIF of its own, so its orientation and date can only be the photo's."""
    preview = Image.new("RGB", preview_size, BLUE)
    preview.encoderinfo = {"exif": b""}  # Pillow would give every picture the photo's EXIF
    return camera_jpeg(path, Image.new("RGB", (2400, 1800), RED), preview, quality=90, **options)


def test_a_camera_preview_stands_in_for_the_photo_with_the_photo_s_exif(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    exif.get_ifd(0x8769)[36867] = "2024:05:01 10:00:00"
    path = _camera_file(tmp_path / "camera.jpg", exif=exif)
    image = open_image(path, 224)
    assert image.size == (225, 300)  # 1200x900 at 1/4 scale, turned upright
    assert close_to(image.getpixel((112, 150)), BLUE, 8)
    assert taken_at(image) == "2024-05-01T10:00:00"
    whole = open_image(path)  # no target size: the photo itself
    assert whole.size == (1800, 2400) and close_to(whole.getpixel((900, 1200)), RED, 8)


def test_a_camera_preview_embeds_like_its_photo(tmp_path: Path) -> None:
    """The demo model's vectors from the previews are the photos' own, each nearest its photo."""
    from imgfinder.demo import world
    from imgfinder.embedders.registry import create_embedder

    embedder = create_embedder("demo")
    paths = []
    for number, scene in enumerate(world.make_dataset(8, seed=7)):
        photo = world.render(scene, 1000, supersample=1)
        preview = photo.resize((600, 600), Image.Resampling.LANCZOS)
        paths.append(camera_jpeg(tmp_path / f"{number}.jpg", photo, preview, quality=90))
    side = embedder.image_size
    assert open_image(paths[0], side).size == (75, 75)  # the preview at 1/8 (the photo: 125)
    from_previews = embedder.embed_images([open_image(path, side) for path in paths])
    from_photos = embedder.embed_images([open_image(path) for path in paths])
    similarity = from_previews @ from_photos.T
    assert similarity.diagonal().min() > 0.99
    assert (similarity.argmax(axis=1) == np.arange(len(paths))).all()


@pytest.mark.parametrize(
    ("case", "preview_size", "mp_type"),
    [
        ("gain map or other untyped picture", (1200, 900), 0x000000),
        ("stereo view", (1200, 900), 0x020002),
        ("smaller than the model's input", (200, 150), LARGE_THUMBNAIL_FULL_HD),
        ("framed unlike the photo (a stale crop)", (1200, 800), LARGE_THUMBNAIL_FULL_HD),
    ],
)
def test_pictures_that_are_not_a_usable_preview_leave_the_photo(
    tmp_path: Path, case: str, preview_size: tuple[int, int], mp_type: int
) -> None:
    path = _camera_file(tmp_path / "camera.jpg", preview_size, mp_type=mp_type)
    image = open_image(path, 224)
    assert image.size == (300, 225), case  # the photo at 1/8 scale
    assert close_to(image.getpixel((150, 112)), RED, 8), case


@pytest.mark.parametrize("damage", ["cut halfway", "cut off", "overwritten at its start"])
def test_a_damaged_preview_leaves_the_photo_with_its_exif(tmp_path: Path, damage: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[36867] = "2024:05:01 10:00:00"
    # a JFIF resolution, so Pillow reads the EXIF lazily: a failed seek must not lose it
    path = _camera_file(tmp_path / "camera.jpg", exif=exif, dpi=(300, 300))
    with Image.open(path) as written:
        preview_bytes = written.mpinfo[0xB002][1]["Size"]
    data = bytearray(path.read_bytes())
    start = len(data) - preview_bytes
    if damage == "cut halfway":
        data = data[: start + preview_bytes // 2]
    elif damage == "cut off":
        data = data[:start]
    else:
        data[start : start + 4] = b"junk"
    path.write_bytes(bytes(data))
    image = open_image(path, 224)
    assert image.size == (225, 300), damage  # the photo at 1/8, turned upright
    assert close_to(image.getpixel((112, 150)), RED, 8), damage
    assert taken_at(image) == "2024-05-01T10:00:00", damage


def test_a_preview_larger_than_its_photo_is_never_decoded(tmp_path: Path) -> None:
    """It would escape the photo's pixel budget (an upload's decompression-bomb guard)."""
    preview = Image.new("RGB", (4000, 3000), BLUE)
    path = camera_jpeg(tmp_path / "bomb.jpg", Image.new("RGB", (64, 48), RED), preview)
    image = open_image(path, 224, max_pixels=64 * 48)
    assert image.size == (64, 48) and close_to(image.getpixel((32, 24)), RED, 8)


@pytest.mark.parametrize(
    ("size", "fmt"),
    [
        ((3000, 4000), "JPEG"),
        ((4000, 500), "JPEG"),
        ((500, 4000), "JPEG"),
        ((1000, 1000), "JPEG"),
        ((230, 300), "JPEG"),
        ((100, 80), "JPEG"),
        ((1200, 900), "PNG"),
        ((1500, 1000), "WEBP"),
    ],
)
def test_reduced_size_never_below_target(tmp_path: Path, size: tuple[int, int], fmt: str) -> None:
    path = save(photo_like(*size), tmp_path / f"image.{fmt.lower()}", fmt)
    image = open_image(path, 224)
    shortest = min(image.size)
    assert shortest >= min(224, min(size))
    assert shortest < 2 * 224 or shortest == min(size)
    original_ratio, ratio = size[0] / size[1], image.size[0] / image.size[1]
    assert abs(ratio - original_ratio) / original_ratio < 0.02


# ---------------------------------------------------------------- decode_ahead


def test_decode_ahead_order_errors_and_concurrency() -> None:
    lock = threading.Lock()
    running = peak = 0

    def work(item: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002 * ((item * 7) % 5))  # finish out of order
        with lock:
            running -= 1
        if item % 4 == 3:
            raise ValueError(f"bad {item}")
        return item * 10

    results = list(decode_ahead(range(40), work, workers=3, max_in_flight=5))
    assert [item for item, _ in results] == list(range(40))
    for item, outcome in results:
        if item % 4 == 3:
            assert isinstance(outcome, ValueError) and str(outcome) == f"bad {item}"
        else:
            assert outcome == item * 10
    assert 1 < peak <= 3


def test_decode_ahead_bounds_items_pulled_ahead() -> None:
    pulled = 0

    def source():
        nonlocal pulled
        for item in range(100):
            pulled += 1
            yield item

    consumed = 0
    for _item, _result in decode_ahead(source(), lambda x: x, workers=2, max_in_flight=4):
        consumed += 1
        assert pulled - consumed <= 3  # at most max_in_flight - 1 wait beyond the one in hand
    assert consumed == 100


def test_decode_ahead_stops_when_consumer_breaks() -> None:
    calls = []
    gate = threading.Event()

    def work(item: int) -> int:
        calls.append(item)
        if item > 0:
            gate.wait(1)
        return item

    generator = decode_ahead(range(1000), work, workers=2, max_in_flight=6)
    for item, _ in generator:
        if item == 0:
            break
    gate.set()
    generator.close()
    settled = len(calls)
    assert settled <= 6
    time.sleep(0.05)
    assert len(calls) == settled  # nothing runs after close
    assert not [t for t in threading.enumerate() if t.name.startswith("imgfinder-decode")]


def test_decode_ahead_tells_how_long_the_consumer_waited() -> None:
    waits: list[float] = []
    gate = threading.Event()

    def work(item: int) -> int:
        if item == 1:
            gate.wait(1)
        return item

    results = decode_ahead(range(3), work, workers=2, max_in_flight=3, on_wait=waits.append)
    assert next(results) == (0, 0)
    waits.clear()  # item 0 may or may not have been ready
    threading.Timer(0.1, gate.set).start()
    assert [item for item, _ in results] == [1, 2]
    assert 0.05 < sum(waits) < 1  # item 1 held the consumer until the gate opened


def test_decode_ahead_rejects_bad_limits() -> None:
    with pytest.raises(ValueError):
        decode_ahead([1], str, workers=0)
    with pytest.raises(ValueError):
        decode_ahead([1], str, max_in_flight=0)


def test_decode_ahead_with_open_image(tmp_path: Path, small_jpeg_bytes: bytes) -> None:
    good = write(tmp_path / "good.jpg", small_jpeg_bytes)
    bad = write(tmp_path / "bad.jpg", b"nope")
    outcomes = dict(decode_ahead([good, bad, good], lambda p: open_image(p, 64)))
    assert isinstance(outcomes[bad], MediaError)
    assert outcomes[good].mode == "RGB"
