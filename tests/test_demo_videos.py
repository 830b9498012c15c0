"""Video events of the demo collection found by the bundled demo model, in both languages."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgfinder.demo_collection import VideoEvent, demo_events
from imgfinder.search import SearchModel

TOLERANCE_S = 1.0


@pytest.fixture(scope="module")
def model(small_demo: tuple[Path, Path]):
    search_model = SearchModel(small_demo[0], create=False)
    yield search_model
    search_model.close()


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("event", demo_events(), ids=lambda e: f"{e.colour}-{e.shape}")
def test_the_top_moment_is_the_event(model: SearchModel, event: VideoEvent, language: str) -> None:
    query = event.query_en if language == "en" else event.query_ru
    top = model.search_text(query, k=5, only="video")[0]
    assert Path(top.path).name == event.video
    assert abs(top.t_start - event.start) <= TOLERANCE_S, (top.t_start, top.t_end)
    assert abs(top.t_end - event.end) <= TOLERANCE_S, (top.t_start, top.t_end)


def test_everything_ranks_images_and_moments_together(model: SearchModel) -> None:
    hits = model.search_text("красный круг", k=200)
    assert {hit.kind for hit in hits} == {"image", "video"}
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert {hit.kind for hit in model.search_text("красный круг", k=50, only="image")} == {"image"}
