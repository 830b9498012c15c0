"""The indexing pipeline itself: its timings, the model loading beside the decoding, and what a
model that cannot load does to a run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import ColorEmbedder, make_image

from imgfinder.errors import ModelError
from imgfinder.indexing import IndexReport
from imgfinder.search import SearchModel

TIMINGS = (
    "items_per_s",
    "hash_ms_per_file",
    "decode_ms_per_image",
    "embed_ms_per_image",
    "store_ms_per_image",
    "hash_seconds",
    "decode_seconds",
    "model_seconds",
    "wait_seconds",
    "embed_seconds",
    "store_seconds",
    "video_seconds",
    "cpu_seconds",
    "peak_rss_mb",
)


class SlowLoadingEmbedder(ColorEmbedder):
    """Loads (on first use of `dim`) only once an image has been decoded for it, so a run
    that loaded the model before decoding would wait here in vain."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared = threading.Event()
        self.loaded_after_a_decode = False
        self._loaded = False

    @property
    def dim(self) -> int:
        if not self._loaded:
            self.loaded_after_a_decode = self.prepared.wait(timeout=5)
            self._loaded = True
        return self._dim

    def prepare_image(self, image):
        self.prepared.set()
        return super().prepare_image(image)


class BrokenEmbedder(ColorEmbedder):
    @property
    def dim(self) -> int:
        raise ModelError("cannot load the weights")


def album(root: Path, count: int) -> Path:
    colours = ("red", "green", "blue", "yellow")
    for number in range(count):
        make_image(root / f"photo_{number:02d}.jpg", colours[number % 4], seed=number)
    return root


def test_the_summary_says_where_the_time_went(tmp_path: Path) -> None:
    root = album(tmp_path / "album", 10)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    report = SearchModel(tmp_path / "c", ColorEmbedder()).index([root], batch_size=4)
    summary = report.summary()
    assert summary["indexed"] == 10 and summary["skipped"] == 1
    assert all(isinstance(summary[key], float) and summary[key] >= 0 for key in TIMINGS)
    assert report.hashed == 11 and report.decoded == 11 and report.embedded == 10
    assert report.decode_seconds > 0 and report.hash_seconds > 0 and report.embed_seconds > 0
    assert report.cpu_seconds > 0 and report.peak_rss_mb > 10
    own = (report.model_seconds, report.wait_seconds, report.embed_seconds, report.store_seconds)
    assert sum(own) <= report.seconds
    assert summary["items_per_s"] == round(10 / report.seconds, 2)
    assert summary["decode_ms_per_image"] == round(1000 * report.decode_seconds / 11, 2)


def test_an_empty_report_divides_by_nothing() -> None:
    summary = IndexReport().summary()
    assert all(summary[key] == 0 for key in TIMINGS)


def test_images_decode_while_the_model_loads(tmp_path: Path) -> None:
    embedder = SlowLoadingEmbedder()
    report = SearchModel(tmp_path / "c", embedder).index([album(tmp_path / "a", 8)])
    assert report.indexed == 8
    assert embedder.loaded_after_a_decode


def test_a_model_that_cannot_load_fails_the_run_cleanly(tmp_path: Path) -> None:
    root = album(tmp_path / "album", 6)
    with pytest.raises(ModelError, match="cannot load the weights"):
        SearchModel(tmp_path / "c", BrokenEmbedder()).index([root])
    assert not any(t.name.startswith("imgfinder-") for t in threading.enumerate())
    embedder = ColorEmbedder()
    assert SearchModel(tmp_path / "c", embedder).index([root]).indexed == 6
    assert embedder.images_embedded == 6


def test_nothing_new_loads_no_model(tmp_path: Path) -> None:
    root = album(tmp_path / "album", 4)
    SearchModel(tmp_path / "c", ColorEmbedder()).index([root])
    again = SearchModel(tmp_path / "c", ColorEmbedder()).index([root])
    assert again.unchanged == 4 and again.hashed == 0 and again.model_seconds == 0
