"""The bundled demo model in a real browser, served the way `make run` serves it.

On a smaller demo collection (same generator, same videos, the shipped weights through the
default runtime) the page must answer Russian and English queries with the right shapes, rank
an uploaded image first and find a video event. Its `docs-*.png` in tests/artifacts/ are the
pictures committed in docs/screenshots/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from test_app_demo import assert_top_images_are, labels
from test_browser import (
    BROWSER_MARKS,
    QUERY_BOX,
    alert,
    browser_page,
    cards,
    choose,
    expect_cards,
    expect_first,
    names,
    query,
    shot,
    starts,
    streamlit_server,
)

from imgfinder.embedders.registry import get_model
from imgfinder.search import SearchModel

#: the app's top-k slider starts here
DEFAULT_K = 24

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def demo(
    small_demo: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, Path]]:
    """(url, collection, media folder): `streamlit run app.py` on the small demo collection."""
    collection, folder = small_demo
    base = tmp_path_factory.mktemp("demo-server")
    env = {
        **os.environ,
        "IMGFINDER_COLLECTION": str(collection),
        "IMGFINDER_MODEL_DIR": str(base / "no-models"),  # nothing downloaded on this machine
        "HF_HUB_CACHE": str(base / "no-hub-cache"),
    }
    env.pop("IMGFINDER_EMBEDDER_FACTORY", None)
    with streamlit_server(env, base / "server.log") as url:
        yield url, collection, folder


@pytest.fixture(scope="module")
def page(demo: tuple[str, Path, Path], tmp_path_factory: pytest.TempPathFactory):
    with browser_page(demo[0], tmp_path_factory.mktemp("profile")) as tab:
        yield tab


def expected_cards(demo: tuple[str, Path, Path], text: str) -> list[str]:
    """The card names the page must show for `text` with its default top-k and threshold:
    the library's own hits, a video's moments sharing one card."""
    _, collection, folder = demo
    model = SearchModel(collection, create=False)
    try:
        hits = model.search_text(text, k=DEFAULT_K, threshold=get_model("demo").threshold)
    finally:
        model.close()
    return list(dict.fromkeys(Path(hit.path).relative_to(folder).as_posix() for hit in hits))


def ask(page, demo: tuple[str, Path, Path], text: str) -> None:
    """Types the query and waits until every card on the page is the library's answer (a
    rerun replaces cards one by one, so the first card alone says too little)."""
    expected = expected_cards(demo, text)
    query(page, text)
    expect_cards(page, *expected)


def test_an_example_query_is_one_click_away(page, demo) -> None:
    expected = expected_cards(demo, "красный круг")
    page.get_by_role("button", name="красный круг").click()
    expect(page.get_by_label(QUERY_BOX)).to_have_value("красный круг")
    expect_cards(page, *expected)
    assert_top_images_are(names(page), demo[2], ("red", "circle"))


@pytest.mark.parametrize(
    ("text", "truth"),
    [
        ("красный круг", ("red", "circle")),
        ("синяя звезда", ("blue", "star")),
        ("a green triangle", ("green", "triangle")),
    ],
)
def test_demo_queries_find_the_right_shapes(page, demo, text: str, truth: tuple[str, str]) -> None:
    ask(page, demo, text)
    expect(page.get_by_text(re.compile(r"results? · encode [\d.]+ ms"))).to_be_visible()
    assert_top_images_are(names(page), demo[2], truth)


def test_russian_query_screenshot(page, demo) -> None:
    ask(page, demo, "жёлтый квадрат")
    expect(cards(page).locator("img").first).to_be_visible()
    shot(page, "demo-screenshot")
    assert_top_images_are(names(page), demo[2], ("yellow", "square"))


def test_upload_from_the_demo_ranks_it_first(page, demo) -> None:
    name = next(iter(labels(demo[2])))
    page.get_by_text("Image", exact=True).click()
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploader.set_input_files(str(demo[2] / name))
    expect_first(page, name)
    expect(cards(page).first.locator(".badge.score")).to_have_text(re.compile(r"^1\.00"))
    page.get_by_text("Text", exact=True).click()


def test_video_event_is_a_moment(page, demo) -> None:
    ask(page, demo, "фиолетовое сердце")
    video = page.locator('figure.tile[data-name$="street_camera.mp4"]')
    expect(video).to_be_visible()
    marks = video.locator(".strip i").evaluate_all("marks => marks.map(mark => mark.title)")
    assert any(re.match(r"^00:00:(09|1[0-3])–", mark) for mark in marks), marks


def test_a_model_not_downloaded_says_what_to_fetch(page, demo) -> None:
    choose(page, "Model", "clip-vit-b-32 — not downloaded")
    expect(alert(page, "Warning")).to_have_text(
        re.compile(r"^Model clip-vit-b-32 is not available here: .*huggingface\.co/timm/")
    )
    speed = page.get_by_text(starts("Measured on this machine by make bench"))
    measured = dict(get_model("clip-vit-b-32").images_per_s)  # as bench_models wrote it
    expect(speed).to_contain_text(
        f"{measured['fp32']:g} images/s in fp32, {measured['int8']:g} in int8."
    )
    expect(speed).to_contain_text("Indexing this collection's 302 files with it takes")
    choose(page, "Model", "demo")
    ask(page, demo, "красный круг")


def test_screenshots_for_the_docs(page, demo) -> None:
    """The pictures in docs/screenshots/, in English and in Russian: the grid, the viewer
    and a video moment playing (copied from tests/artifacts/ when the page changes)."""
    ask(page, demo, "a yellow square")
    expect(cards(page).locator("img").first).to_be_visible()
    shot(page, "docs-en-grid")
    cards(page).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("button", name="Next")).to_be_visible()
    shot(page, "docs-en-viewer")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_text("Русский", exact=True).click()
    expect(page.get_by_role("tab", name="Поиск")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^\d+ результат"))).to_be_visible()  # redrawn
    try:
        box = page.get_by_label("Опишите, что ищете, по-русски или по-английски")
        box.fill("фиолетовое сердце")
        box.press("Enter")
        expect_cards(page, *expected_cards(demo, "фиолетовое сердце"))
        expect(cards(page).locator("img").first).to_be_visible()
        shot(page, "docs-ru-grid")
        page.locator('figure.tile[data-name$="street_camera.mp4"]').click()
        page.wait_for_function(
            "() => { const v = document.querySelector('[role=dialog] video');"
            " return v && !v.paused && v.currentTime > 0.5; }"
        )
        expect(dialog.get_by_role("button", name="Вперёд")).to_be_visible()
        shot(page, "docs-ru-video")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
    finally:
        page.get_by_text("English", exact=True).click()
        expect(page.get_by_role("tab", name="Search")).to_be_visible()
