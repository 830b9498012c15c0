"""app.py through Streamlit's AppTest: every control and every state, offline and fast.

The app runs with the ColorEmbedder (injected through IMGFINDER_EMBEDDER_FACTORY), on a small
collection of coloured images and one video, so "красный" really means red here.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    NAMES,
    PALETTE,
    ColorEmbedder,
    dated_album,
    fake_hub,
    grid_names,
    grid_tiles,
    make_image,
    open_result,
)
from streamlit.testing.v1 import AppTest
from test_webapp import EMBED_GATE, FACTORY, LOADS, RUNTIMES_ASKED, bomb_bytes

from imgfinder.embedders.registry import list_models, missing_message
from imgfinder.indexers.registry import INDEXERS
from imgfinder.media.uploads import MAX_UPLOAD_MB
from imgfinder.search import SearchModel
from imgfinder.service import Service

APP = str(Path(__file__).resolve().parents[1] / "app.py")
ODD_NAME = "*bold* [link](javascript:alert(1)) <b>x</b>.png"


def color_video(path: Path) -> Path:
    """8 s: orange for the first three seconds and the last two, black in between."""
    from imgfinder.media.video import write_video

    def frame_at(t: float) -> np.ndarray:
        color = PALETTE["orange"] if t < 3.0 or t >= 6.0 else PALETTE["black"]
        return np.full((96, 128, 3), color, dtype=np.uint8)

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frame_at, fps=5, duration=8, size=(128, 96))


def build_collection(directory: Path, album: Path) -> Path:
    model = SearchModel(directory, ColorEmbedder())
    model.model_name = "demo"
    report = model.index([album])
    assert not report.skipped
    model.close()
    return directory


def make_library(base: Path) -> Path:
    """`base/indexes` with `photos` (9 images, one odd name, a video) and `other` (green)."""
    album = base / "album"
    for color in ("red", "green", "blue", "yellow"):
        for number in range(2):
            make_image(album / f"{color}_{number}.png", color, seed=number)
    make_image(album / ODD_NAME, "purple")
    color_video(album / "clips" / "orange.mp4")
    build_collection(base / "indexes" / "photos", album)
    other = base / "other"
    make_image(other / "only_green.jpg", "green")
    build_collection(base / "indexes" / "other", other)
    return base


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_library(tmp_path_factory.mktemp("library"))


@pytest.fixture
def app(library: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("IMGFINDER_COLLECTION", str(library / "indexes" / "photos"))
    monkeypatch.setenv("IMGFINDER_INDEXES", str(library / "indexes"))
    monkeypatch.setenv("IMGFINDER_EMBEDDER_FACTORY", FACTORY)
    monkeypatch.setenv("IMGFINDER_ALLOWED_ROOTS", str(library.parent))  # the tests' tmp folders
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    return at


def plain(markdown: str) -> str:
    """A message body as the reader sees it: the app escapes markdown in file names."""
    return markdown.replace("\\", "")


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def search(at: AppTest, text: str) -> AppTest:
    at.text_input(key="text_query").input(text)
    return rerun(at)


tiles = grid_tiles


names = grid_names


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.main.caption]


def timings(at: AppTest) -> str:
    return next(c for c in captions(at) if " · encode " in c)


def closest_anyway(at: AppTest) -> None:
    at.sidebar.slider(key="confidence").set_value(0.0)


def cosine(at: AppTest):
    """The cosine threshold slider, after switching the cut-off to the cosine scale."""
    at.sidebar.radio(key="scale").set_value("cosine")
    rerun(at)
    return at.sidebar.slider(key="threshold::demo")


def model_key(at: AppTest) -> str:
    return next(s.key for s in at.sidebar.selectbox if s.key.startswith("model::"))


def test_every_control_is_there(app: AppTest, library: Path) -> None:
    sidebar = app.sidebar
    collection = sidebar.selectbox(key="collection")
    assert collection.value == str(library / "indexes" / "photos")
    assert {"photos", "other"} <= set(collection.options)
    model = sidebar.selectbox(key=model_key(app))
    assert model.value == "demo"
    assert set(sidebar.selectbox(key="runtime").options) <= {
        "Automatic",
        "ONNX fp32",
        "ONNX int8",
        "PyTorch",
    }
    index = sidebar.selectbox(key="indexer")
    assert index.value == "exact" and index.options[0].startswith('Exact (the original\'s "dummy")')
    assert len(index.options) == len(INDEXERS) + 1  # and auto
    k = sidebar.slider(key="k")
    assert (k.min, k.max, k.value) == (1, 200, 24)
    assert sidebar.radio(key="scale").value == "confidence"
    confidence = sidebar.slider(key="confidence")
    assert (confidence.min, confidence.max, confidence.value) == (0.0, 1.0, 0.95)
    threshold = cosine(app)
    assert (threshold.min, threshold.max) == (0.0, 1.0)
    assert threshold.value == pytest.approx(0.25)  # the demo model's own, from models.toml
    assert sidebar.radio(key="sort").options == ["Best first", "Worst first"]
    assert [e.label for e in sidebar.expander] == [
        "New collection",
        "Rename or delete photos",
        "Index parameters",
    ]
    assert app.radio(key="mode").options == ["Text", "Image"]
    assert [t.label for t in app.tabs] == ["Search", "Index"]
    assert app.text_input(key="folder").label.startswith("Folder to add")
    assert "Type a description above" in app.info[0].value
    examples = [b.label for b in app.main.button if b.key and b.key.startswith("example::")]
    assert examples == ["собака на пляже", "a red car at night"]
    assert captions(app)[0] == "photos · 9 images · 1 video"
    app.radio(key="mode").set_value("Image")
    rerun(app)
    assert app.info[0].value.startswith("Upload an example image above")
    assert not [b for b in app.main.button if b.key and b.key.startswith("example::")]


def test_russian_query_shows_thumbnails_scores_and_timings(app: AppTest) -> None:
    search(app, "красный")
    assert sorted(names(app)[:2]) == ["red_0.png", "red_1.png"]
    line = timings(app)
    assert re.fullmatch(
        r"\d+ results? · encode [\d.]+ ms · search [\d.]+ ms · render [\d.]+ ms", line
    )
    scores = [float(tile["badge"].split()[0]) for tile in tiles(app)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.9
    assert all(tile["src"].startswith("data:image/jpeg;base64,") for tile in tiles(app))
    pictures = [tile for tile in tiles(app) if tile["kind"] == "image"]
    assert pictures and all(tile["ratio"] == 1.3333 for tile in pictures)  # 64 × 48 photos


def test_top_k_threshold_and_sort(app: AppTest) -> None:
    search(app, "red")
    cosine(app).set_value(0.0)
    app.sidebar.slider(key="k").set_value(3)
    rerun(app)
    best_first = names(app)
    assert len(best_first) == 3 and timings(app).startswith("3 results")
    app.sidebar.radio(key="sort").set_value("Worst first")
    rerun(app)
    assert names(app) == best_first[::-1]


def test_threshold_too_high_explains_the_empty_state(app: AppTest) -> None:
    search(app, "синий")
    cosine(app).set_value(1.0)
    rerun(app)
    assert names(app) == []
    message = plain(app.info[0].value)
    assert message.startswith("Nothing above 1.00 — lower the threshold?")
    assert "best match scores 0" in message


def test_no_results_in_an_empty_collection(app: AppTest, library: Path) -> None:
    app.sidebar.text_input(key="new_collection").input("empty-one")
    app.sidebar.button[0].click()
    rerun(app)
    assert Path(app.sidebar.selectbox(key="collection").value).name == "empty-one"
    assert "This collection is empty" in app.info[0].value
    search(app, "red")
    assert "nothing indexed yet" in app.info[0].value
    app.sidebar.text_input(key="new_collection").input("../escape")
    app.sidebar.button[0].click()
    rerun(app)
    assert "collection name uses letters" in app.sidebar.error[0].value


def upload(at: AppTest, name: str, data: bytes, kind: str) -> AppTest:
    """Switch to image search and upload `data` as the file `name` of MIME type `kind`."""
    at.radio(key="mode").set_value("Image")
    rerun(at)
    at.get("file_uploader")[0].set_value((name, data, kind))
    return rerun(at)


def test_image_upload_ranks_the_same_image_first(app: AppTest, library: Path) -> None:
    data = (library / "album" / "green_1.png").read_bytes()
    upload(app, "photo.bin", data, "application/octet-stream")
    assert names(app)[0] == "green_1.png"
    assert tiles(app)[0]["badge_help"].startswith("score 1.000 · ")


def test_bad_uploads_show_one_message_and_the_app_keeps_working(app: AppTest) -> None:
    app.radio(key="mode").set_value("Image")
    rerun(app)
    for data, message in (
        (b"just some text, named like a picture", "not a JPEG, PNG, WebP, HEIC or AVIF image"),
        (b"\xff\xd8\xff" + bytes(21 * 1024 * 1024), "the limit is 20 MB"),
        (bomb_bytes(), "decompression-bomb guard"),
    ):
        app.get("file_uploader")[0].set_value(("cat.jpg", data, "image/jpeg"))
        rerun(app)
        assert len(app.error) == 1 and message in plain(app.error[0].value)
        assert names(app) == []
    app.radio(key="mode").set_value("Text")
    rerun(app)
    search(app, "yellow")
    assert names(app)[0].startswith("yellow_") and not app.error


def view(at: AppTest, index: int = 0) -> AppTest:
    open_result(at, index)
    return at


def more_like_first(at: AppTest) -> AppTest:
    """ "More like this" on the first result, from its viewer."""
    view(at)
    next(b for b in at.button if b.key and b.key.startswith("viewer-like-")).click()
    return rerun(at)


def test_more_like_this_and_back(app: AppTest) -> None:
    closest_anyway(app)  # the colour embedder's neighbours are not confident ones
    search(app, "blue")
    first = names(app)[0]
    more_like_first(app)
    assert "viewer" not in app.session_state
    assert app.info[0].value.startswith("More like")
    assert first not in names(app) and names(app)[0].startswith("blue_")
    next(b for b in app.button if b.label == "Back to my query").click()
    rerun(app)
    assert names(app)[0] == first


def test_the_viewer_shows_details_steps_and_opens_the_original(app: AppTest, library: Path) -> None:
    search(app, "yellow")
    view(app)
    first = names(app)[0]
    assert f"**{first}** · 1 / {len(names(app))}" in [plain(m.value) for m in app.markdown]
    path = next(c.value for c in app.caption if plain(c.value).startswith(str(library)))
    assert Path(plain(path)).name == first
    facts = plain(next(c.value for c in app.caption if c.value.startswith("score ")))
    assert re.search(r" · 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d · 64 × 48 · [\d.]+ KB$", facts), facts
    assert [d.label for d in app.get("download_button")] == ["Download"]
    next(b for b in app.button if b.key == "viewer-next").click()
    rerun(app)
    assert f"**{names(app)[1]}** · 2 / {len(names(app))}" in [plain(m.value) for m in app.markdown]
    for _ in range(2):
        next(b for b in app.button if b.key == "viewer-previous").click()
        rerun(app)
    assert app.session_state["viewer"]["index"] == len(names(app)) - 1  # it wraps round


def test_a_video_plays_its_best_moment_muted_and_steps_to_the_others(app: AppTest) -> None:
    search(app, "orange")
    video = tiles(app)[0]
    assert video["full_name"] == "clips/orange.mp4" and video["name"] == "orange.mp4"
    assert video["moments_help"] == "2 matching moments"
    assert re.fullmatch(r"00:00:0\d", video["when"])
    assert len(video["marks"]) == 2 and all(0 <= m["left"] < 100 for m in video["marks"])
    view(app)
    (player,) = app.get("video")
    assert player.proto.autoplay and player.proto.muted
    assert player.proto.end_time > player.proto.start_time
    moments = [b for b in app.button if b.key and b.key.startswith("viewer-moment-")]
    assert len(moments) == 2
    chosen = next(b for b in moments if b.proto.type == "primary")
    other = next(b for b in moments if b.proto.type != "primary")
    other.click()
    rerun(app)
    (player,) = app.get("video")
    assert player.proto.start_time == int(other.label.split(":")[-1])
    assert chosen.label != other.label
    search(app, "an orange clip")  # a new query starts with the viewer closed
    assert names(app)[0] == "clips/orange.mp4" and not app.get("video")


def test_show_images_only_or_videos_only(app: AppTest, library: Path) -> None:
    cosine(app).set_value(0.0)
    search(app, "orange")
    assert names(app)[0] == "clips/orange.mp4" and len(names(app)) > 1
    show = app.radio(key="show")
    assert show.options == ["Everything", "Images", "Videos"] and show.value == "Everything"
    show.set_value("Videos")
    rerun(app)
    assert names(app) == ["clips/orange.mp4"]
    app.radio(key="show").set_value("Images")
    rerun(app)
    assert names(app) and "clips/orange.mp4" not in names(app)
    app.sidebar.selectbox(key="collection").set_value(str(library / "indexes" / "other"))
    app.radio(key="show").set_value("Videos")
    rerun(app)
    assert names(app) == []
    assert plain(app.info[0].value) == "This collection has no videos — show everything instead?"


def test_file_names_render_as_text_not_markup(app: AppTest) -> None:
    search(app, "purple")
    assert names(app)[0] == ODD_NAME
    path, taken, _ = tiles(app)[0]["title"].split("\n")
    assert path.endswith(ODD_NAME) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", taken)
    assert tiles(app)[0]["name"] == "b>.png"  # the file's own name; the browser sets it as text
    rendered = [m.value for m in app.main.markdown] + captions(app) + [i.value for i in app.info]
    assert not any("<b>" in value or "](javascript" in value for value in rendered)


def test_model_missing_is_explained_not_a_crash(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_models = tmp_path / "no-models"
    monkeypatch.delenv("IMGFINDER_EMBEDDER_FACTORY")
    monkeypatch.setenv("IMGFINDER_MODEL_DIR", str(no_models))
    absent = next(info for info in list_models(no_models) if info.hf_repo and not info.present)
    at = AppTest.from_file(APP, default_timeout=30)
    rerun(at)
    select = at.sidebar.selectbox(key=model_key(at))
    assert f"{absent.key} — not downloaded" in select.options
    select.set_value(absent.key)
    rerun(at)
    warning = plain(at.warning[0].value)
    assert missing_message(absent, no_models) in warning
    assert f"about {absent.size_mb} MB" in warning  # what a download would fetch
    speed = plain(next(c.value for c in at.caption if c.value.startswith("Measured on this")))
    assert f"{absent.speed('auto'):g} images/s in fp32" in speed, speed
    assert "Indexing this collection's 10 files with it takes under a minute here." in speed
    assert not at.tabs  # nothing to search with; nothing was loaded


def page_without_models(monkeypatch: pytest.MonkeyPatch, models: Path, key: str) -> AppTest:
    monkeypatch.delenv("IMGFINDER_EMBEDDER_FACTORY")
    monkeypatch.setenv("IMGFINDER_MODEL_DIR", str(models))
    at = AppTest.from_file(APP, default_timeout=30)
    rerun(at)
    at.sidebar.selectbox(key=model_key(at)).set_value(key)
    return rerun(at)


def test_a_missing_model_is_downloaded_from_the_page(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_hub(monkeypatch, delay=0.3)
    key = "immich-clip-vit-b-32"
    at = page_without_models(monkeypatch, tmp_path / "models", key)
    [button] = [b for b in at.button if b.label.startswith(f"Download {key}")]
    assert "MB)" in button.label
    button.click()
    rerun(at)
    seen_progress = bool(at.get("progress"))
    deadline = time.monotonic() + 20
    while not at.tabs:
        assert time.monotonic() < deadline, [w.value for w in at.warning]
        time.sleep(0.1)
        rerun(at)
        seen_progress |= bool(at.get("progress"))
    assert seen_progress
    assert not at.warning and not at.error
    assert (tmp_path / "models" / "immich-app--ViT-B-32__openai" / "visual" / "model.onnx").exists()


def test_a_failed_download_says_why_and_can_be_retried(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    key = "immich-clip-vit-b-32"
    at = page_without_models(monkeypatch, tmp_path / "models", key)
    next(b for b in at.button if b.label.startswith(f"Download {key}")).click()
    deadline = time.monotonic() + 20
    while not at.error:
        assert time.monotonic() < deadline
        time.sleep(0.1)
        rerun(at)
    assert plain(at.error[0].value).startswith(f"Downloading {key} failed: cannot reach")
    assert any(b.label.startswith(f"Download {key}") for b in at.button)  # try again
    assert not at.tabs


def test_a_model_that_fails_to_load_is_one_message(app: AppTest) -> None:
    search(app, "red")
    other = next(info.key for info in list_models() if info.key != "demo")
    app.sidebar.selectbox(key=model_key(app)).set_value(other)
    rerun(app)
    assert [plain(e.value) for e in app.error] == [f"Model {other} is not available in the tests."]


def test_every_indexer_is_offered_and_answers_the_same(app: AppTest) -> None:
    assert app.sidebar.selectbox(key="indexer").options == [
        'Exact (the original\'s "dummy")',
        "FAISS",
        "HNSW (nmslib)",
        "Qdrant",
        "Automatic",
    ]
    search(app, "green")
    expected = sorted(names(app)[:2])
    for name in ("faiss", "hnsw", "auto"):
        app.sidebar.selectbox(key="indexer").set_value(name)
        rerun(app)
        assert sorted(names(app)[:2]) == expected, name
    # Qdrant's settings: where it keeps its data (memory, a folder, or a server's URL)
    app.text_input(key="text_query").input("")
    app.sidebar.selectbox(key="indexer").set_value("qdrant")
    rerun(app)
    assert app.sidebar.text_input(key="param::qdrant::location").value == ":memory:"
    assert app.sidebar.text_input(key="param::qdrant::url").value == ""


def test_indexer_parameters_rebuild_without_reembedding(app: AppTest) -> None:
    search(app, "green")
    app.sidebar.selectbox(key="indexer").set_value("faiss")
    rerun(app)
    factory = app.sidebar.text_input(key="param::faiss::factory")
    assert factory.value == "Flat"
    factory.input("HNSW16")
    rerun(app)
    assert names(app)[0].startswith("green_")
    app.sidebar.number_input(key="param::faiss::efSearch").set_value(64)
    rerun(app)
    assert names(app)[0].startswith("green_")


def test_runtime_choice_reaches_the_factory(app: AppTest) -> None:
    runtime = app.sidebar.selectbox(key="runtime")
    assert runtime.value == "auto"
    for name in Service.runtimes():
        app.sidebar.selectbox(key="runtime").set_value(name)
        search(app, f"red {name}")
        assert names(app)[0].startswith("red_")
    assert set(Service.runtimes()) <= RUNTIMES_ASKED


def test_collection_picker_switches_collections(app: AppTest, library: Path) -> None:
    closest_anyway(app)  # in a one-image collection every unrelated query finds that image
    search(app, "green")
    assert "only_green.jpg" not in names(app)
    app.sidebar.selectbox(key="collection").set_value(str(library / "indexes" / "other"))
    rerun(app)
    assert names(app) == ["only_green.jpg"]


def test_moving_sliders_reloads_nothing(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    import imgfinder.search

    built: Counter[str] = Counter()
    real = imgfinder.search.create_indexer

    def counting(name: str, dim: int, **params: object):
        built[name] += 1
        return real(name, dim, **params)

    monkeypatch.setattr(imgfinder.search, "create_indexer", counting)
    search(app, "red")
    loads = LOADS["demo"]
    indexes = sum(built.values())
    for k, threshold, order in (
        (5, 0.1, "Worst first"),
        (50, 0.5, "Best first"),
        (1, 0.0, "Best first"),
    ):
        app.sidebar.slider(key="k").set_value(k)
        cosine(app).set_value(threshold)
        app.sidebar.radio(key="sort").set_value(order)
        rerun(app)
        assert "encode cached" in timings(app)
    assert LOADS["demo"] == loads and sum(built.values()) == indexes


def test_indexing_from_the_ui_with_progress_and_summary(
    app: AppTest, library: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "to-add"
    for number in range(3):
        make_image(folder / f"white_{number}.png", "white", seed=number)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    index_into_a_new_collection(app, "fresh", folder)
    assert app.success[0].value.startswith("Indexed 3 new files from")
    timing = next(c for c in captions(app) if c.startswith("Per image: decoding "))
    assert re.search(r"files/s · CPU [\d.]+ s · peak memory [\d.]+ MB", timing), timing
    skipped = app.get("arrow_data_frame") or app.get("dataframe")
    assert skipped
    closest_anyway(app)
    search(app, "белый")
    assert sorted(names(app)) == [f"white_{n}.png" for n in range(3)]
    next(b for b in app.button if b.label == "Dismiss").click()
    rerun(app)
    assert not app.success


def test_indexed_folders_are_listed_reindexed_and_watched(
    app: AppTest, library: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "phone"
    make_image(folder / "white_0.png", "white")
    index_into_a_new_collection(app, "watched", folder)
    assert str(folder) in [element.value for element in app.text]
    make_image(folder / "white_1.png", "white", seed=1)
    next(b for b in app.button if b.key == "reindex-0").click()
    finish_indexing(app)
    assert app.success[0].value.startswith("Indexed 1 new files from")
    collection = app.sidebar.selectbox(key="collection").value
    watch = app.toggle(key=f"watch::{collection}")
    assert watch.value is False and not [c for c in captions(app) if c.startswith("Watching")]
    watch.set_value(True)
    rerun(app)
    assert "Watching 1 folder" in captions(app)
    app.toggle(key=f"watch::{collection}").set_value(False)
    rerun(app)
    assert not [c for c in captions(app) if c.startswith("Watching")]
    app.text_input(key=f"classes::{collection}").input("white, black")  # classes, from the page
    next(b for b in app.button if b.key == "save_classes").click()
    rerun(app)
    pills = app.button_group(key="only_label")
    assert [plain(option) for option in pills.options] == ["white · 2", "black · 0"]
    app.text_input(key=f"classes::{collection}").input("white")
    next(b for b in app.button if b.key == "save_classes").click()
    rerun(app)
    assert "give at least two labels" in app.error[0].value


def index_into_a_new_collection(at: AppTest, name: str, folder: Path) -> None:
    """Create the collection `name` in the sidebar and index `folder` into it from the Index
    tab, until the run's summary is up."""
    at.sidebar.text_input(key="new_collection").input(name)
    at.sidebar.button[0].click()
    rerun(at)
    at.text_input(key="folder").input(str(folder))
    next(b for b in at.button if b.label == "Index folder").click()
    finish_indexing(at)


def finish_indexing(at: AppTest) -> None:
    """Rerun the page until the background run it started has its summary up."""
    rerun(at)
    deadline = time.monotonic() + 20
    while not at.success and not at.warning:
        assert time.monotonic() < deadline, "indexing did not finish"
        time.sleep(0.1)
        rerun(at)


def test_progress_and_cancel_while_search_keeps_working(
    app: AppTest, library: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    for number in range(40):
        make_image(folder / f"black_{number}.png", "black", size=(40 + number, 30))
    app.sidebar.text_input(key="new_collection").input("cancelled")
    app.sidebar.button[0].click()
    rerun(app)
    EMBED_GATE.clear()  # the run stops inside its first batch
    try:
        app.text_input(key="folder").input(str(folder))
        next(b for b in app.button if b.label == "Index folder").click()
        rerun(app)
        deadline = time.monotonic() + 10
        while not app.get("progress") or "Embedding" not in app.get("progress")[0].proto.text:
            assert time.monotonic() < deadline, "no progress bar"
            time.sleep(0.05)
            rerun(app)
        assert re.fullmatch(r"Embedding 0/40 · ETA —", app.get("progress")[0].proto.text)
        assert next(b for b in app.button if b.label == "Index folder").disabled
        search(app, "black")  # the page answers while the run is held
        assert "nothing indexed yet" in plain(app.info[0].value)
        next(b for b in app.button if b.label == "Cancel").click()
        rerun(app)
    finally:
        EMBED_GATE.set()
    deadline = time.monotonic() + 10
    while not app.warning:
        assert time.monotonic() < deadline, "the run did not stop"
        time.sleep(0.05)
        rerun(app)
    cancelled = re.match(r"Cancelled\. Indexed (\d+) new files", plain(app.warning[0].value))
    assert cancelled and int(cancelled[1]) < 40  # the batch in flight finishes, no more


def test_indexing_a_missing_folder_says_so(app: AppTest, tmp_path: Path) -> None:
    app.text_input(key="folder").input(str(tmp_path / "nowhere"))
    next(b for b in app.button if b.label == "Index folder").click()
    rerun(app)
    assert "there is no folder at" in plain(app.error[0].value)
    search(app, "red")
    assert names(app)


def test_safe_server_defaults() -> None:
    """The settings `make run` relies on: local only, bounded uploads, XSRF, no tracebacks."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB
    assert config["server"]["enableXsrfProtection"] is True
    assert config["client"]["showErrorDetails"] == "none"
    assert config["browser"]["gatherUsageStats"] is False


PAGE_FILES = [Path(APP), *sorted((Path(APP).parent / "imgfinder" / "ui").glob("*.py"))]


@pytest.mark.parametrize("source", PAGE_FILES, ids=lambda path: path.name)
def test_the_page_is_ui_only(source: Path) -> None:
    """app.py and its ui pieces import widgets, formatting and the service, never models,
    indexes or files."""
    import ast

    tree = ast.parse(source.read_text(encoding="utf-8"))
    nodes = list(ast.walk(tree))
    imported = {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in nodes if isinstance(n, ast.ImportFrom)}
    allowed = {"__future__", "time", "pathlib", "typing", "streamlit", "imgfinder.errors"}
    allowed |= {"imgfinder.timefmt", "imgfinder.service", "imgfinder.textfmt", "imgfinder.jobs"}
    allowed |= {"imgfinder.media.uploads", "imgfinder.ui.jobs", "imgfinder.ui.results"}
    allowed |= {"imgfinder.ui", "imgfinder.ui.urlstate", "imgfinder.ui.words", "math"}
    allowed |= {"imgfinder.ui.collections", "imgfinder.ui.filters", "datetime"}
    allowed |= {"imgfinder.ui.grid", "imgfinder.ui.viewer", "collections.abc"}
    allowed |= {"imgfinder.ui.folders"}
    assert imported <= allowed, imported - allowed
    calls = {
        n.func.attr for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    reads = {"open", "read_bytes", "read_text", "iterdir", "glob", "embed_texts"}
    if source.name == "__init__.py":
        reads.remove("read_text")  # `asset`: the page's own scripts and styles
    assert not calls & reads


def test_app_py_is_at_most_400_lines() -> None:
    assert len(Path(APP).read_text(encoding="utf-8").splitlines()) <= 400


def url(at: AppTest) -> dict[str, str]:
    """The page's query parameters, as a browser's address bar would hold them."""
    return {k: v if isinstance(v, str) else v[0] for k, v in at.query_params.items()}


def fresh_page(query: dict[str, str]) -> AppTest:
    """The page opened at a URL with these query parameters (the app fixture's environment)."""
    at = AppTest.from_file(APP, default_timeout=30)
    for name, value in query.items():
        at.query_params[name] = value
    return rerun(at)


def test_a_search_lives_in_the_url(app: AppTest) -> None:
    search(app, "red")
    app.sidebar.slider(key="k").set_value(5)
    rerun(app)
    shared = url(app)
    assert shared["q"] == "red" and shared["k"] == "5" and shared["c"] == "photos"
    assert shared["scale"] == "confidence" and shared["min"] == "0.95"
    reloaded = fresh_page(shared)
    assert reloaded.text_input(key="text_query").value == "red"
    assert reloaded.sidebar.slider(key="k").value == 5
    assert names(reloaded) == names(app)
    other = fresh_page({"c": "other", "q": "green", "scale": "cosine", "min": "0.1", "k": "1"})
    assert other.sidebar.selectbox(key="collection").value.endswith("other")
    assert other.sidebar.slider(key="threshold::demo").value == pytest.approx(0.1)
    assert names(other) == ["only_green.jpg"] and not other.warning


def test_a_bad_url_is_ignored(app: AppTest) -> None:
    page = fresh_page({"c": "../etc", "k": "nan", "min": "inf", "mode": "Sound", "like": "-1"})
    assert not page.error and not page.warning
    assert page.sidebar.slider(key="k").value == 24
    assert page.radio(key="mode").value == "Text"
    assert page.sidebar.slider(key="confidence").value == pytest.approx(0.95)


def test_more_like_this_travels_in_the_url(app: AppTest) -> None:
    closest_anyway(app)
    search(app, "blue")
    more_like_first(app)
    shared = url(app)
    assert "like" in shared
    reloaded = fresh_page(shared)
    assert reloaded.info[0].value.startswith("More like") and names(reloaded) == names(app)


@pytest.fixture
def dated_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The page over `dated_album`: folders `many/` and `few/`, EXIF dates in July 2019."""
    album = dated_album(tmp_path / "album")
    build_collection(tmp_path / "indexes" / "dated", album)
    monkeypatch.setenv("IMGFINDER_COLLECTION", str(tmp_path / "indexes" / "dated"))
    monkeypatch.setenv("IMGFINDER_INDEXES", str(tmp_path / "indexes"))
    monkeypatch.setenv("IMGFINDER_EMBEDDER_FACTORY", FACTORY)
    at = AppTest.from_file(APP, default_timeout=30)
    rerun(at)
    closest_anyway(at)
    return search(at, "green")


def test_results_can_be_limited_to_a_folder_and_dates(dated_page: AppTest) -> None:
    at = dated_page
    assert any(name.startswith("many/") for name in names(at))
    folders = at.selectbox(key="only_folder").options
    assert [plain(o) for o in folders] == ["All", "album", "album/few", "album/many"]
    at.selectbox(key="only_folder").set_value(at.selectbox(key="only_folder").options[2])
    rerun(at)
    assert sorted(names(at)) == ["few/f0.jpg", "few/f1.jpg", "few/f2.jpg"]
    assert url(at)["folder"].endswith("/album/few")
    at.selectbox(key="only_folder").set_value("")
    at.date_input(key="only_dates").set_value((date(2019, 7, 2), date(2019, 7, 31)))
    rerun(at)
    shown = names(at)
    assert shown and all(int(Path(name).stem[1:]) % 2 == 1 for name in shown), shown
    shared = url(at)
    assert (shared["from"], shared["to"]) == ("2019-07-02", "2019-07-31")
    reloaded = fresh_page(shared)
    assert reloaded.date_input(key="only_dates").value == (date(2019, 7, 2), date(2019, 7, 31))
    assert names(reloaded) == shown and not reloaded.warning


def test_a_filter_nothing_passes_says_so_and_clears(dated_page: AppTest) -> None:
    at = dated_page
    at.selectbox(key="only_folder").set_value(at.selectbox(key="only_folder").options[2])
    at.date_input(key="only_dates").set_value((date(2019, 7, 2), date(2019, 7, 31)))
    rerun(at)
    assert names(at) == []
    assert "Nothing here is in that folder and those dates." in plain(at.info[0].value)
    next(b for b in at.main.button if b.label == "Clear the filters").click()
    rerun(at)
    assert len(names(at)) > 3 and at.selectbox(key="only_folder").value == ""


UI_SOURCES = [Path(APP), *sorted((Path(APP).parent / "imgfinder" / "ui").glob("*.py"))]
#: the page's tables of labels and its long texts, shown through `t`
LABEL_TABLES = {"EMPTY", "SORTS", "MODES", "SCALES", "SHOWS", "PHASES", "METHOD_LABELS"}
LABEL_TABLES |= {"DEMO_NOTE", "WHY_HELP", "TIMINGS"}


def page_words() -> set[str]:
    """Every English text the page passes through `t`: literal arguments and label tables."""
    import ast

    words: set[str] = set()
    for source in UI_SOURCES:
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            called = isinstance(node, ast.Call) and getattr(node.func, "id", "") == "t"
            if called and node.args and isinstance(node.args[0], ast.Constant):
                words.add(node.args[0].value)
            if isinstance(node, ast.Assign) and any(
                getattr(target, "id", "") in LABEL_TABLES for target in node.targets
            ):
                value = ast.literal_eval(node.value)
                if isinstance(value, dict):
                    value = value.values() if node.targets[0].id != "SHOWS" else value.keys()
                words |= {value} if isinstance(value, str) else set(value)
    return words - {None}


def test_every_word_of_the_page_is_in_russian_too() -> None:
    from imgfinder.ui.words import RUSSIAN

    words = page_words()
    assert len(words) > 90, len(words)
    assert not words - set(RUSSIAN), words - set(RUSSIAN)
    for english, russian in RUSSIAN.items():  # same placeholders, both ways
        assert sorted(re.findall(r"{(\w+)", english)) == sorted(re.findall(r"{(\w+)", russian))


def test_the_page_speaks_russian(app: AppTest) -> None:
    page = fresh_page({"lang": "ru", "q": "красный", "scale": "cosine", "min": "0.1"})
    assert [tab.label for tab in page.tabs] == ["Поиск", "Индексация"]
    assert page.text_input(key="text_query").label.startswith("Опишите, что ищете")
    assert any(c.startswith("2 результата · кодирование ") for c in captions(page)), captions(page)
    grid = json.loads(next(iter(page.main.get("bidi_component"))).proto.json)
    assert grid["like_label"] == "Похожие"
    assert url(page)["lang"] == "ru"
    # AppTest re-formats radio options outside the run, so switching in place is the
    # browser walk's to check; a fresh English page is this one's
    assert [tab.label for tab in fresh_page({"lang": "en"}).tabs] == ["Search", "Index"]


def test_a_collection_is_renamed_and_deleted_from_the_page(app: AppTest, library: Path) -> None:
    indexes = library / "indexes"
    app.sidebar.text_input(key="new_collection").input("scratch")
    next(b for b in app.sidebar.button if b.label == "Create").click()
    rerun(app)
    assert app.sidebar.selectbox(key="collection").value == str(indexes / "scratch")
    app.sidebar.text_input(key="renamed_collection").input("../escape")
    next(b for b in app.sidebar.button if b.label == "Rename").click()
    rerun(app)
    assert app.sidebar.error and (indexes / "scratch").is_dir()
    app.sidebar.text_input(key="renamed_collection").input("kept")
    next(b for b in app.sidebar.button if b.label == "Rename").click()
    rerun(app)
    assert not (indexes / "scratch").exists() and (indexes / "kept").is_dir()
    assert app.sidebar.selectbox(key="collection").value == str(indexes / "kept")
    delete = next(b for b in app.sidebar.button if b.label == "Delete")
    assert delete.disabled  # until the box is ticked
    next(c for c in app.sidebar.checkbox if c.key.startswith("sure-delete::")).check()
    rerun(app)
    next(b for b in app.sidebar.button if b.label == "Delete").click()
    rerun(app)
    assert not (indexes / "kept").exists() and (library / "album").is_dir()
    assert app.sidebar.selectbox(key="collection").value != str(indexes / "kept")


def test_a_heic_photo_is_a_query(app: AppTest, library: Path) -> None:
    import io

    from PIL import Image

    from imgfinder.media.images import register_heif

    assert register_heif()
    buffer = io.BytesIO()
    Image.open(library / "album" / "green_1.png").save(buffer, format="HEIF")
    closest_anyway(app)
    upload(app, "IMG_0001.HEIC", buffer.getvalue(), "image/heic")
    assert not app.error and names(app)[0].startswith("green_"), names(app)


def image_captions(at: AppTest) -> list[str]:
    """Captions of the pictures in the main area."""
    return [caption for element in at.main.get("image") for caption in element.captions]


def test_the_query_picture_is_shown_above_the_results(app: AppTest, library: Path) -> None:
    closest_anyway(app)
    search(app, "blue")
    assert "More like this picture" not in image_captions(app)
    more_like_first(app)
    assert image_captions(app)[0] == "More like this picture"
    next(b for b in app.button if b.label == "Back to my query").click()
    upload(app, "photo.png", (library / "album" / "green_1.png").read_bytes(), "image/png")
    assert image_captions(app)[0] == "Your picture"


def test_the_page_says_what_the_demo_model_knows(app: AppTest) -> None:
    notes = [i.value for i in app.sidebar.info]
    assert any(n.startswith("The demo model knows only its synthetic world") for n in notes)
    russian = fresh_page({"lang": "ru"})
    assert any(i.value.startswith("Демо-модель знает только") for i in russian.sidebar.info)


def test_classes_are_facets_that_limit_the_results(dated_page: AppTest, tmp_path: Path) -> None:
    from imgfinder.classes import Labels
    from imgfinder.store.collection import Collection

    Collection(tmp_path / "indexes" / "dated").set_labels(Labels(("red", "green", "blue"), "{}"))
    at = rerun(dated_page)
    pills = at.button_group(key="only_label")
    assert [plain(option) for option in pills.options] == ["red · 33", "green · 15", "blue · 15"]
    pills.set_value("blue")
    rerun(at)
    shown = names(at)
    blue = NAMES.index("blue")
    assert shown and all(int(Path(name).stem[1:]) % 4 == blue for name in shown), shown
    assert url(at)["class"] == "blue"
    assert names(fresh_page(url(at))) == shown


def test_more_results_page_on_until_the_cutoff(app: AppTest) -> None:
    search(app, "red")
    cosine(app).set_value(0.9)
    app.sidebar.slider(key="k").set_value(1)
    rerun(app)
    assert len(names(app)) == 1
    more = next(b for b in app.main.button if b.key == "more_results")
    assert more.label == "Show 1 more"
    more.click()
    rerun(app)
    assert sorted(names(app)) == ["red_0.png", "red_1.png"]
    more = next(b for b in app.main.button if b.key == "more_results")
    more.click()
    rerun(app)  # the cutoff ends the results at the two red pictures: no more pages
    assert sorted(names(app)) == ["red_0.png", "red_1.png"]
    assert not [b for b in app.main.button if b.key == "more_results"]
    search(app, "blue")  # a new query starts at its first page
    assert len(names(app)) == 1
