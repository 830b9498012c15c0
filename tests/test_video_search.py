"""Video moments end to end: frames in the catalog, merged time ranges, changed/deleted videos."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PALETTE, ColorEmbedder, make_image
from PIL import Image

from imgfinder.errors import ConfigError
from imgfinder.media.frames import VideoSampling
from imgfinder.media.video import write_video
from imgfinder.search import SearchModel


def event_video(path: Path, events: list[tuple[str, float, float]], duration: float) -> Path:
    """Grey frames, with a full-frame colour while each (colour, start, end) event lasts."""

    def frame_at(t: float) -> Image.Image:
        for colour, start, end in events:
            if start <= t < end:
                return Image.new("RGB", (96, 64), PALETTE[colour])
        return Image.new("RGB", (96, 64), (128, 128, 128))

    return write_video(path, frame_at, fps=10, duration=duration, size=(96, 64))


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    event_video(root / "clip.mp4", [("red", 3.0, 5.0), ("blue", 8.0, 9.5)], 12.0)
    make_image(root / "red_photo.png", "red")
    return root


def test_moments_come_back_as_time_ranges(tmp_path: Path, media: Path) -> None:
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    report = model.index([media])
    assert report.indexed == 2 and report.frames >= 12 and not report.skipped
    hits = model.search_text("red", k=5, threshold=0.5)
    kinds = {h.kind for h in hits}
    assert kinds == {"image", "video"}
    moment = next(h for h in hits if h.kind == "video")
    assert moment.path == str(media / "clip.mp4")
    assert abs(moment.t_start - 3.0) <= 1.0 and abs(moment.t_end - 5.0) <= 1.0
    assert moment.t_start <= moment.t_best <= moment.t_end
    blue = model.search_text("blue", k=1)[0]
    assert blue.kind == "video" and abs(blue.t_start - 8.0) <= 1.0
    thumbs = list((tmp_path / "c" / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == report.frames
    assert max(Image.open(t).size[0] for t in thumbs) <= 256


def test_more_like_a_moment(tmp_path: Path, media: Path) -> None:
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    model.index([media])
    moment = next(h for h in model.search_text("red", k=5) if h.kind == "video")
    similar = model.similar(moment.item_id, k=3)
    # the red photo first; the query moment itself (its best frame) is not offered back
    assert similar[0].path == str(media / "red_photo.png") and similar[0].score > 0.9
    assert moment.item_id not in {h.item_id for h in similar}


def test_changed_and_deleted_videos(tmp_path: Path, media: Path) -> None:
    embedder = ColorEmbedder()
    model = SearchModel(tmp_path / "c", embedder)
    model.index([media])
    before = embedder.images_embedded
    assert model.index([media]).unchanged == 2 and embedder.images_embedded == before

    event_video(media / "clip.mp4", [("green", 1.0, 3.0)], 6.0)
    report = model.index([media])
    assert report.indexed == 1
    assert not any(h.kind == "video" for h in model.search_text("blue", k=5, threshold=0.5))
    green = model.search_text("green", k=1)[0]
    assert green.kind == "video" and abs(green.t_start - 1.0) <= 1.0

    thumbs = tmp_path / "c" / "thumbs"
    assert len([d for d in thumbs.iterdir() if d.name != "images"]) == 1  # the old clip's: gone
    (media / "clip.mp4").unlink()
    model.index([media])
    assert all(h.kind == "image" for h in model.search_text("green", k=10))
    assert not [d for d in thumbs.iterdir() if d.name != "images"]


def test_sampling_settings_and_the_time_limit(tmp_path: Path, media: Path) -> None:
    no_cuts = VideoSampling(every=2.0, scene_cuts=False)
    report = SearchModel(tmp_path / "a", ColorEmbedder(), video=no_cuts).index([media])
    assert report.frames == 6  # 0, 2, ..., 10 s of a 12 s clip
    every_two = SearchModel(tmp_path / "b", ColorEmbedder(), video=VideoSampling(every=2.0))
    assert every_two.index([media]).frames == 9  # and the cuts at 3, 5 and 9.5 s
    no_time = VideoSampling(time_limit=0.0, time_per_second=0.0)
    report = SearchModel(tmp_path / "c", ColorEmbedder(), video=no_time).index([media])
    assert report.indexed == 1 and [Path(s.path).name for s in report.skipped] == ["clip.mp4"]
    assert "time limit" in report.skipped[0].reason
    with pytest.raises(ConfigError, match="every must be a positive"):
        VideoSampling(every=0)


def test_bad_videos_are_skipped(tmp_path: Path, media: Path) -> None:
    (media / "empty.mp4").write_bytes(b"")
    (media / "noise.mkv").write_bytes(bytes(range(256)) * 40)
    good = (media / "clip.mp4").read_bytes()
    (media / "half.mov").write_bytes(good[: len(good) // 2])
    report = SearchModel(tmp_path / "c", ColorEmbedder()).index([media])
    skipped = {Path(s.path).name for s in report.skipped}
    assert {"empty.mp4", "noise.mkv"} <= skipped
    assert report.indexed >= 2


def test_images_only_and_videos_only(tmp_path: Path, media: Path) -> None:
    long_black = event_video(media / "long_black.mp4", [("black", 0.0, 40.0)], 40.0)
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    model.index([media])
    # 40 black frames outrank the only image for "black": the search must look past them
    only_image = model.search_text("black", k=1, only="image")
    assert [h.path for h in only_image] == [str(media / "red_photo.png")]
    videos = model.search_text("red", k=10, only="video")
    assert videos and {h.kind for h in videos} == {"video"}
    assert model.search_text("black", k=1, only="video")[0].path == str(long_black)
    red_images = model.search_text("red", k=10, threshold=0.5, only="image")
    assert [h.path for h in red_images] == [str(media / "red_photo.png")]
    with pytest.raises(ConfigError, match="kind must be one of image, video"):
        model.search_text("red", only="photos")


def test_moment_thumbnails_are_made_at_card_size_not_model_size(tmp_path: Path) -> None:
    """The colour model sees 32-pixel frames; the page shows 320-pixel cards."""
    root = tmp_path / "media"
    root.mkdir()
    write_video(
        root / "wide.mp4",
        lambda t: Image.new("RGB", (640, 360), PALETTE["red" if t < 1 else "blue"]),
        fps=5,
        duration=2.0,
        size=(640, 360),
    )
    model = SearchModel(tmp_path / "collection", ColorEmbedder())
    model.index([root])
    thumbs = sorted(model.collection.thumbs_dir().rglob("*.jpg"))
    assert thumbs
    for thumb in thumbs:
        assert Image.open(thumb).size == (320, 180), thumb
    assert model.search_text("red", k=1, only="video")[0].t_best < 1
