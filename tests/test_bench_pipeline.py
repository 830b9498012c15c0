"""`make bench`'s pipeline benchmark makes its photo-like JPEGs cheaply, all different, once."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_pipeline  # noqa: E402


def test_the_folder_holds_distinct_photo_sized_jpegs_made_once(tmp_path: Path) -> None:
    paths = bench_pipeline.make_folder(tmp_path / "photos", (160, 120), 12)
    assert len({hashlib.sha256(path.read_bytes()).digest() for path in paths}) == 12
    with Image.open(paths[5]) as image:
        assert image.format == "JPEG" and image.size == (160, 120)
    made = [path.stat().st_mtime_ns for path in paths]
    again = bench_pipeline.make_folder(tmp_path / "photos", (160, 120), 12)
    assert again == paths and [path.stat().st_mtime_ns for path in again] == made


def test_the_preview_folder_holds_the_same_photos_with_a_camera_preview(tmp_path: Path) -> None:
    plain = bench_pipeline.make_folder(tmp_path / "plain", (320, 240), 4)
    cameras = bench_pipeline.make_folder(tmp_path / "cameras", (320, 240), 4, preview=(160, 120))
    with Image.open(plain[1]) as photo, Image.open(cameras[1]) as camera:
        assert camera.format == "MPO"
        assert camera.mpinfo[0xB002][1]["Attribute"]["MPType"].startswith("Large Thumbnail")
        assert photo.tobytes() == camera.tobytes()
        camera.seek(1)
        assert camera.size == (160, 120)
