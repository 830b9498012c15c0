"""app.py in a real browser: Debian's chromium, driven by Playwright, against `streamlit run`.

The server starts the way `make run` starts it, on a free port, with the ColorEmbedder factory
injected (slowed to 0.2 s per image, so a run lasts long enough to cancel). One flow walks
through every control; screenshots go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image
from PIL import Image
from playwright.sync_api import expect
from test_app import ODD_NAME, make_library
from test_webapp import bomb_bytes

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUERY_BOX = "Describe what you are looking for, in English or Russian"
EXPECT_TIMEOUT = 20_000
BIG = 100
#: every URL the walk's page requested
REQUESTED: list[str] = []

#: marks of every real-browser test module
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"Debian's chromium is not installed at {CHROMIUM}; `make browser` installs it",
    ),
]
pytestmark = BROWSER_MARKS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fill_library(base: Path) -> None:
    """The test collections, a small folder to add (one file broken) and a big one to cancel."""
    make_library(base)
    for number in range(3):
        make_image(base / "to-add" / f"white_{number}.png", "white", seed=number)
    (base / "to-add" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    for number in range(BIG):
        make_image(base / "big" / f"many_{number}.png", "black", size=(40 + number, 30))


@contextmanager
def streamlit_server(
    env: dict[str, str], log_path: Path, while_booting: Callable[[], None] = lambda: None
) -> Iterator[str]:
    """`streamlit run app.py --server.address 127.0.0.1 --server.port P --server.headless true`
    as `make run` starts it; `while_booting` runs while the server starts. Yields its URL."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("streamlit")),
        "run",
        "app.py",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while_booting()
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read() == b"ok":
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail("the server did not start:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.2)


@contextmanager
def browser_page(
    url: str, profile: Path, requested: list[str] | None = None, **options: Any
) -> Iterator[Any]:
    """Debian's chromium on `url`, once the query box is there; screenshots go to ARTIFACTS.
    Every URL the page requests is appended to `requested`."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
            **options,
        )
        context.set_default_timeout(EXPECT_TIMEOUT)
        expect.set_options(timeout=EXPECT_TIMEOUT)
        if requested is not None:
            context.on("request", lambda request: requested.append(request.url))
        tab = context.new_page()
        tab.goto(url)
        tab.get_by_label(QUERY_BOX).wait_for()
        yield tab
        context.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The server, started first so that it boots while the test collections are built."""
    base = tmp_path_factory.mktemp("browser")
    env = {
        **os.environ,
        "IMGFINDER_COLLECTION": str(base / "indexes" / "photos"),
        "IMGFINDER_INDEXES": str(base / "indexes"),
        "IMGFINDER_EMBEDDER_FACTORY": "test_webapp:slow_color_embedder",
        "IMGFINDER_ALLOWED_ROOTS": str(base),  # the folders the Index tab adds
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    with streamlit_server(env, base / "server.log", lambda: fill_library(base)) as url:
        yield url, base


@pytest.fixture(scope="module")
def page(site: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory):
    profile = tmp_path_factory.mktemp("profile")
    with browser_page(site[0], profile, REQUESTED, accept_downloads=True) as tab:
        yield tab


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def query(page, text: str) -> None:
    box = page.get_by_label(QUERY_BOX)
    box.fill(text)
    box.press("Enter")


def cards(page):
    """The result grid's tiles, in page order (their captions are names cut to fit; each
    tile's `data-name` holds the whole name)."""
    return page.locator('[data-testid="stMain"] figure.tile')


def names(page) -> list[str]:
    return cards(page).evaluate_all("tiles => tiles.map(tile => tile.dataset.name)")


def expect_first(page, expected: str | re.Pattern[str]) -> None:
    expect(cards(page).first).to_have_attribute("data-name", expected)


def expect_cards(page, *expected: str | re.Pattern[str]) -> None:
    """Wait until the result tiles are exactly these names (strings or patterns)."""
    expect(cards(page)).to_have_count(len(expected))
    for number, name in enumerate(expected):
        expect(cards(page).nth(number)).to_have_attribute("data-name", name)


def choose(page, label: str, option: str) -> None:
    """Pick `option` from a select box. A rerun that is still finishing (the previous step's
    cards can already be on screen) may close the list just opened, so open it again then."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.get_by_role("combobox", name=label, exact=True)
    for attempt in range(3):
        box.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    expect(box).to_have_value(option)


def slide(page, label: str, key: str, value: str) -> None:
    slider = page.get_by_role("slider", name=label)
    slider.press(key)
    expect(slider).to_have_value(value)


def alert(page, kind: str):
    """The text of the main area's st.info / st.error / ... messages (their icon left out;
    the sidebar's standing notes, such as what the demo model knows, are not among them)."""
    return page.locator(
        f'[data-testid="stMain"] [data-testid="stAlertContent{kind}"] '
        '[data-testid="stMarkdownContainer"]'
    )


def starts(prefix: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(prefix))


def test_every_control_in_a_real_browser(page, site: tuple[str, Path]) -> None:
    try:
        walk_through(page, site[1])
    finally:
        shot(page, "last")
    assert REQUESTED and not outside(REQUESTED), outside(REQUESTED)


def outside(urls: list[str]) -> list[str]:
    """The requests that left the machine: anything but 127.0.0.1 (data: and blob: stay)."""
    from urllib.parse import urlsplit

    return [
        u
        for u in urls
        if urlsplit(u).scheme in ("http", "https", "ws", "wss")
        and urlsplit(u).hostname != "127.0.0.1"
    ]


def assert_dense_grid_keeps_aspect(page) -> None:
    """At 1400 pixels with the sidebar open at least six tiles share the first row, and
    every picture is shown at its own aspect ratio (within a pixel of rounding)."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('*')].filter(e => e.shadowRoot).flatMap(e =>"
        " [...e.shadowRoot.querySelectorAll('figure.tile img')]).every(i => i.complete)"
    )
    boxes = (
        cards(page)
        .locator("img")
        .evaluate_all(
            "images => images.map(i => [i.getBoundingClientRect().top, i.clientWidth,"
            " i.clientHeight, i.naturalWidth, i.naturalHeight])"
        )
    )
    first_row = [box for box in boxes if abs(box[0] - boxes[0][0]) < 2]
    assert len(first_row) >= 6, boxes
    for _, width, height, natural_width, natural_height in boxes:
        assert abs(width / height - natural_width / natural_height) < 2 / height, boxes


def walk_through(page, library: Path) -> None:
    red = starts("red_")
    # a Russian text query: results with scores, thumbnails and timings
    query(page, "красный")
    expect_cards(page, red, red)
    timing = re.compile(r"^2 results · encode [\d.]+ ms · search [\d.]+ ms · render [\d.]+ ms$")
    expect(page.get_by_text(timing)).to_be_visible()
    thumbnails = cards(page).locator("img")
    expect(thumbnails).to_have_count(2)
    sources = thumbnails.evaluate_all("images => images.map(i => i.src)")
    assert all(source.startswith("data:image/jpeg;base64,") for source in sources)
    expect(cards(page).first.locator(".badge.score")).to_have_text(
        re.compile(r"^\d\.\d\d · \d+%$")  # score and confidence
    )
    shot(page, "01-text-query")

    # the search lives in the URL: a reload (or a shared link) shows the same results
    expect(page).to_have_url(re.compile(r"[?&]q=%D0%BA%D1%80%D0%B0%D1%81"))
    page.reload()
    expect(page.get_by_label(QUERY_BOX)).to_have_value("красный")
    expect_cards(page, red, red)

    # the page in Russian and back, the search kept
    page.get_by_text("Русский", exact=True).click()
    expect(page.get_by_role("tab", name="Поиск")).to_be_visible()
    expect(page.get_by_label("Опишите, что ищете, по-русски или по-английски")).to_have_value(
        "красный"
    )
    expect(page.get_by_text(starts("2 результата · кодирование"))).to_be_visible()
    expect(page.get_by_role("radio", name="Тексту")).to_be_checked()  # choices survive
    expect_cards(page, red, red)
    russian_box = page.get_by_label("Опишите, что ищете, по-русски или по-английски")
    russian_box.fill("синий")  # and a new search in Russian runs with every choice intact
    russian_box.press("Enter")
    expect_cards(page, starts("blue_"), starts("blue_"))
    russian_box.fill("красный")
    russian_box.press("Enter")
    expect_cards(page, red, red)
    shot(page, "01-russian")
    page.get_by_text("English", exact=True).click()
    expect(page.get_by_role("tab", name="Search")).to_be_visible()
    expect_cards(page, red, red)

    # the rest of the walk cuts on cosine, where the colour embedder's scores are plain
    page.get_by_text("Cosine", exact=True).click()
    query(page, "красный")
    expect_cards(page, red, red)

    # sort by score, top-k
    first = names(page)
    page.get_by_text("Worst first", exact=True).click()
    expect_cards(page, *first[::-1])
    page.get_by_text("Best first", exact=True).click()
    expect_cards(page, *first)
    slide(page, "Results (top-k)", "Home", "1")
    expect_cards(page, first[0])
    page.get_by_role("button", name="Show 1 more").click()  # the next page, up to the cutoff
    expect_cards(page, *first)
    expect(page.get_by_role("button", name="Show 1 more")).to_be_visible()
    slide(page, "Results (top-k)", "End", "200")
    expect_cards(page, *first)

    # a folder filter inside the search: no red image is in clips/, the filter goes into the
    # URL, and clearing it brings the red images back
    page.get_by_text("Limit to a folder or dates", exact=True).click()
    choose(page, "Folder", "album/clips")
    expect(page.locator('figure.tile[data-name^="red_"]')).to_have_count(0)
    expect(page).to_have_url(re.compile(r"[?&]folder=[^&]*clips"))
    page.get_by_role("button", name="Clear the filters").first.click()
    expect_cards(page, *first)

    # more like this, from a tile's own button (shown on hover), and back
    cards(page).first.hover()
    cards(page).first.get_by_role("button", name="More like this").click()
    expect(alert(page, "Info").first).to_have_text(f"More like {first[0]}")
    expect_first(page, first[1])
    page.get_by_role("button", name="Back to my query").click()
    expect_cards(page, *first)

    # a click on a tile opens the viewer: the path and details, the arrow keys step through
    # the results, and the original downloads
    cards(page).first.click()
    dialog = page.get_by_role("dialog")
    original = library / "album" / first[0]
    expect(dialog.get_by_text(str(original))).to_be_visible()
    expect(dialog.get_by_text(re.compile(r"^score \d\.\d{3} · .* · 64 × 48 · "))).to_be_visible()
    expect(dialog.get_by_text(re.compile(r" · 1 / 2$"))).to_be_visible()
    expect(dialog.get_by_role("button", name="Next")).to_be_enabled()  # its key is bound
    page.keyboard.press("ArrowRight")
    expect(dialog.get_by_text(re.compile(r" · 2 / 2$"))).to_be_visible()
    expect(dialog.get_by_text(str(library / "album" / first[1]))).to_be_visible()
    expect(dialog.get_by_role("button", name="Previous")).to_be_enabled()
    page.keyboard.press("ArrowLeft")
    expect(dialog.get_by_text(str(original))).to_be_visible()
    frame = dialog.bounding_box()  # the whole viewer, buttons included, fits the window
    assert frame is not None and frame["y"] >= 0
    assert frame["y"] + frame["height"] <= page.viewport_size["height"], frame
    shot(page, "02-viewer")
    with page.expect_download() as download:
        dialog.get_by_role("button", name="Download").click()
    assert Path(download.value.path()).read_bytes() == original.read_bytes()
    dialog.get_by_role("button", name="More like this").click()
    expect(dialog).to_be_hidden()
    expect(alert(page, "Info").first).to_have_text(f"More like {first[0]}")
    page.get_by_role("button", name="Back to my query").click()
    expect_cards(page, *first)

    # why it matched: a relevance map in the viewer, and back to the plain picture
    cards(page).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Why it matched").click()
    explained = dialog.get_by_text(starts("Brightest where the match is strongest"))
    expect(explained).to_be_visible()
    expect(dialog.locator('[data-testid="stImage"] img')).to_have_count(1)
    shot(page, "02-relevance-map")
    dialog.get_by_text("Why it matched").click()
    expect(explained).to_be_hidden()
    expect(dialog.locator('[data-testid="stImage"] img')).to_have_count(1)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # a video's tile marks its moments; a mark plays that moment at once, muted, and it
    # stops at the moment's end; the viewer's timeline steps to the other moment
    query(page, "orange")
    expect_first(page, "clips/orange.mp4")
    video_tile = cards(page).first
    expect(video_tile.locator(".strip i")).to_have_count(2)
    expect(page.locator("video")).to_have_count(0)  # a thumbnail until asked to play
    video_tile.locator(".strip i").nth(1).click()
    player = page.get_by_role("dialog").locator("video")
    expect(player).to_have_count(1)
    page.wait_for_function(  # muted, and playing on from the moment's start
        "() => { const v = document.querySelector('[role=dialog] video');"
        " return v && v.muted && v.currentTime >= 5.5; }",
        timeout=30_000,
    )
    page.wait_for_function(  # the moment plays to its end, then stops there
        "() => { const v = document.querySelector('[role=dialog] video');"
        " return v && v.paused && v.currentTime >= 8; }",
        timeout=30_000,
    )
    shot(page, "03-video-moment")
    page.get_by_role("dialog").get_by_role("button", name=re.compile(r"^00:00:0[0-4]$")).click()
    page.wait_for_function(
        "() => { const v = document.querySelector('[role=dialog] video');"
        " return v && !v.paused && v.currentTime < 5; }"
    )
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()

    # only videos, only images, then everything again
    page.get_by_text("Videos", exact=True).click()
    expect_cards(page, "clips/orange.mp4")
    query(page, "red")
    expect(alert(page, "Info").first).to_have_text(starts("Nothing above"))
    page.get_by_text("Images", exact=True).click()
    expect_cards(page, red, red)
    page.get_by_text("Everything", exact=True).click()
    expect_cards(page, red, red)

    # file names are text: markdown and HTML in a name show as typed
    query(page, "purple")
    expect_first(page, ODD_NAME)
    expect(cards(page).first.locator("figcaption")).to_have_text("b>.png")
    expect(cards(page).first).to_have_attribute("aria-label", starts(ODD_NAME + ", score "))

    # the threshold at its maximum empties the page, and says why
    query(page, "синий")
    expect_first(page, starts("blue_"))
    slide(page, "Minimum similarity (cosine)", "End", "1")
    expect(alert(page, "Info").first).to_have_text(
        starts("Nothing above 1.00 — lower the threshold?")
    )
    expect_cards(page)
    shot(page, "04-threshold-too-high")
    slide(page, "Minimum similarity (cosine)", "Home", "0")
    expect(cards(page)).to_have_count(10)
    expect(cards(page).locator("img")).to_have_count(10)
    assert_dense_grid_keeps_aspect(page)
    shot(page, "whole-collection")

    # search by an uploaded image: the same image ranks first with a score of 1
    page.get_by_text("Image", exact=True).click()
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploader.set_input_files(str(library / "album" / "green_1.png"))
    expect_first(page, "green_1.png")
    expect(cards(page).first.locator(".badge.score")).to_have_text(starts("1.00"))
    shot(page, "05-image-query")
    webp = io.BytesIO()
    Image.open(library / "album" / "red_0.png").save(webp, format="WEBP", lossless=True)
    uploader.set_input_files(
        {"name": "q.webp", "mimeType": "image/webp", "buffer": webp.getvalue()}
    )
    expect_first(page, "red_0.png")

    # refused uploads: one clear message each, and the app keeps working
    for name, data, message in (
        (
            "cat.jpg",
            b"plain text pretending to be a photo",
            "not a JPEG, PNG, WebP, HEIC or AVIF image",
        ),
        ("bomb.png", bomb_bytes(), "decompression-bomb guard"),
    ):
        uploader.set_input_files({"name": name, "mimeType": "image/jpeg", "buffer": data})
        expect(alert(page, "Error")).to_have_text(re.compile(re.escape(message)))
        expect_cards(page)
    oversized = library / "huge.jpg"
    oversized.write_bytes(b"\xff\xd8\xff" + bytes(21 * 1024 * 1024))
    uploader.set_input_files(str(oversized))
    expect(page.get_by_text(re.compile(r"File must be 20(\.0)?\s?MB or smaller"))).to_be_visible()
    shot(page, "06-oversized-upload")
    page.get_by_text("Text", exact=True).click()
    query(page, "yellow")
    yellow = starts("yellow_")
    expect_first(page, yellow)

    # indexers, their parameters, runtimes and models
    choose(page, "Index", "FAISS")
    page.get_by_text("Index parameters").click()
    factory = page.get_by_label("factory")
    expect(factory).to_have_value("Flat")
    expect_first(page, yellow)
    factory.fill("HNSW16")
    factory.press("Enter")
    expect(page.get_by_label("factory")).to_have_value("HNSW16")
    expect_first(page, yellow)
    for label in ("HNSW (nmslib)", "Qdrant"):
        choose(page, "Index", label)
        expect_first(page, yellow)
    choose(page, "Index", 'Exact (the original\'s "dummy")')
    page.get_by_role("combobox", name="Runtime").click()
    runtimes = page.get_by_role("option").all_inner_texts()
    assert runtimes[0] == "Automatic"
    assert set(runtimes) <= {"Automatic", "ONNX fp32", "ONNX int8", "PyTorch"}
    page.get_by_role("option", name=runtimes[-1], exact=True).click()
    expect_first(page, yellow)
    choose(page, "Model", "clip-vit-b-32")
    expect(alert(page, "Error")).to_have_text("Model clip-vit-b-32 is not available in the tests.")
    choose(page, "Model", "demo")
    expect_first(page, yellow)

    # the collection picker
    choose(page, "Collection", "other")
    query(page, "green")
    expect_cards(page, "only_green.jpg")

    # a new collection, filled from the Index tab: progress, summary with skipped files
    page.get_by_text("New collection").click()
    page.get_by_label("Name", exact=True).fill("fresh")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("combobox", name="Collection")).to_have_value("fresh")
    page.get_by_role("tab", name="Index").click()
    page.get_by_role("textbox", name="Folder to add (on this computer)").fill(
        str(library / "to-add")
    )
    page.get_by_role("button", name="Index folder").click()
    expect(alert(page, "Success")).to_have_text(starts("Indexed 3 new files from"))
    expect(page.get_by_text("Skipped files")).to_be_visible()
    skipped = page.get_by_test_id("stDataFrame")
    row = skipped.locator("tr", has_text="broken.png")  # the grid's accessible table
    expect(row).to_contain_text("not an image: cannot identify image file")
    shot(page, "07-index-summary")
    page.get_by_role("button", name="Dismiss").click()
    expect(alert(page, "Success")).to_have_count(0)

    # the collection's folders: watched, a photo copied in is indexed by itself
    # (a rerun that shifts the tab's elements up can show a stale copy for a moment)
    expect(page.get_by_text(str(library / "to-add"), exact=True)).to_have_count(1)
    page.get_by_text("Watch these folders: index new and changed files by themselves").click()
    expect(page.get_by_text("Watching 1 folder", exact=True)).to_have_count(1)
    make_image(library / "to-add" / "white_9.png", "white", seed=9)
    watched = page.get_by_text(re.compile(r"^Watching 1 folder · last re-indexed at "))
    expect(watched).to_have_count(1, timeout=30_000)
    page.get_by_text("Watch these folders: index new and changed files by themselves").click()
    expect(page.get_by_text(starts("Watching 1 folder"))).to_have_count(0)

    # a longer run: progress bar with counts and ETA, search meanwhile, then cancel
    page.get_by_role("textbox", name="Folder to add (on this computer)").fill(str(library / "big"))
    page.get_by_role("button", name="Index folder").click()
    expect(page.get_by_text(re.compile(rf"Embedding \d+/{BIG} .*· ETA"))).to_be_visible()
    shot(page, "08-indexing")
    page.get_by_role("tab", name="Search").click()
    query(page, "белый")
    expect_cards(page, *(re.compile(r"^white_\d\.png$") for _ in range(4)))  # 3 + the watched one
    page.get_by_role("tab", name="Index").click()
    page.get_by_role("button", name="Cancel").click()
    expect(alert(page, "Warning")).to_have_text(starts("Cancelled."))
