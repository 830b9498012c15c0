"""The app's library side without a browser: service, uploads, thumbnails, safe paths."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import PALETTE, ColorEmbedder, make_image, png_claiming_size
from PIL import Image

from imgfinder.embedders.registry import get_model
from imgfinder.errors import ConfigError, ModelError
from imgfinder.media.scan import content_hash
from imgfinder.media.served import UnsafePathError, is_under, open_indexed
from imgfinder.media.thumbs import GRID_SIZE, frame_thumbnail, image_thumbnail, jpeg_bytes
from imgfinder.media.uploads import UploadError, check_upload, sniff_format
from imgfinder.search import Hit, SearchModel
from imgfinder.service import (
    Query,
    Selection,
    Service,
    Settings,
    _display_name,
    load_factory,
)
from imgfinder.store.catalog import FileRecord
from imgfinder.textfmt import (
    escape_markdown,
    format_bytes,
    format_ms,
    format_seconds,
    shorten_middle,
)

#: embedders built by `color_embedder`, by model key: lets tests see that nothing reloads
LOADS: Counter[str] = Counter()
#: every runtime the app asked the test factory for
RUNTIMES_ASKED: set[str] = set()
FACTORY = "test_webapp:color_embedder"
#: a test clears this to hold the injected embedder inside a batch (progress, cancel)
EMBED_GATE = threading.Event()
EMBED_GATE.set()


#: the largest batch `HeldEmbedder` slows down: an index run's (32 images); a relevance map's
#: 50 masks at a time run at full speed
SLOWED_BATCH = 32


class HeldEmbedder(ColorEmbedder):
    """A ColorEmbedder that waits at `gate` before each image batch and takes `delay` per image
    of an index run's batches, so a run lasts long enough to be watched and cancelled."""

    def __init__(self, gate: threading.Event = EMBED_GATE, delay: float = 0.0) -> None:
        super().__init__()
        self.gate = gate
        self.delay = delay

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        assert self.gate.wait(20)
        if len(batch) <= SLOWED_BATCH:
            time.sleep(self.delay * len(batch))
        return super().embed_prepared(batch)


def color_embedder(key: str, runtime: str = "auto") -> ColorEmbedder:
    """The embedder factory the app tests inject: `demo` is a ColorEmbedder, nothing else is."""
    if key != "demo":
        raise ModelError(f"model {key} is not available in the tests")
    LOADS[key] += 1
    RUNTIMES_ASKED.add(runtime)
    return HeldEmbedder()


def slow_color_embedder(key: str, runtime: str = "auto") -> ColorEmbedder:
    """For the browser test: 0.2 s per image, so a run lasts long enough to search and cancel."""
    if key != "demo":
        raise ModelError(f"model {key} is not available in the tests")
    return HeldEmbedder(delay=0.2)


def image_bytes(color: str = "red", size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, PALETTE[color]).save(buffer, format=fmt)
    return buffer.getvalue()


def bomb_bytes() -> bytes:
    """A real PNG of a few kilobytes that decodes to 60 megapixels."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 6_000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def album(tmp_path: Path) -> Path:
    root = tmp_path / "album"
    for color in ("red", "green", "blue", "yellow"):
        for number in range(2):
            make_image(root / f"{color}_{number}.png", color, seed=number)
    return root


@pytest.fixture
def service(tmp_path: Path) -> Service:
    settings = Settings(indexes_dir=str(tmp_path / "indexes"), embedder_factory=FACTORY)
    app_service = Service(settings)
    yield app_service
    app_service.close()


@pytest.fixture
def selection(tmp_path: Path, album: Path) -> Selection:
    model = SearchModel(tmp_path / "indexes" / "photos", ColorEmbedder())
    model.index([album])
    model.close()
    return Selection(str(tmp_path / "indexes" / "photos"), "demo")


# -- safe paths -----------------------------------------------------------------------------


def record_of(path: Path) -> FileRecord:
    info = path.stat()
    return FileRecord(str(path), info.st_size, info.st_mtime_ns, content_hash(path))


def test_only_files_under_a_root_are_served(tmp_path: Path, album: Path) -> None:
    inside = album / "red_0.png"
    with open_indexed(record_of(inside), [album]) as handle:
        assert handle.read() == inside.read_bytes()
    assert is_under(album, album)
    outside = make_image(tmp_path / "secret.png")
    climbing = replace(record_of(outside), path=str(album / ".." / "secret.png"))
    nul = replace(record_of(inside), path=f"{album}\x00/red_0.png")
    for sneaky in (record_of(outside), climbing, nul, None):
        with pytest.raises(UnsafePathError):
            open_indexed(sneaky, [album])
    assert not is_under(tmp_path / "album-evil" / "x.png", album)
    with pytest.raises(UnsafePathError, match="no longer exists"):
        open_indexed(replace(record_of(inside), path=str(album / "gone.png")), [album])
    with pytest.raises(UnsafePathError):
        open_indexed(record_of(inside), [])


def test_a_swapped_file_is_never_served(tmp_path: Path) -> None:
    root = tmp_path / "root"
    photo = make_image(root / "photo.png", "red")
    indexed = record_of(photo)
    secret = make_image(tmp_path / "elsewhere" / "secret.png", "blue")
    photo.unlink()
    photo.symlink_to(secret)  # the indexed name now leads outside the root
    with pytest.raises(UnsafePathError, match="not inside"):
        open_indexed(indexed, [root])
    photo.unlink()
    make_image(photo, "green")  # same name, other content, inside the root
    with pytest.raises(UnsafePathError, match="changed since it was indexed"):
        open_indexed(indexed, [root])
    photo.unlink()
    shutil.copy(secret, photo)
    os.utime(photo, ns=(indexed.mtime_ns, indexed.mtime_ns))  # same mtime, other bytes
    with pytest.raises(UnsafePathError):
        open_indexed(indexed, [root])


def test_touched_but_identical_file_is_still_served(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "photo.png", "red")
    indexed = record_of(photo)
    os.utime(photo, ns=(1, 1))  # mtime differs: the hash decides
    with open_indexed(indexed, [tmp_path]) as handle:
        assert handle.read() == photo.read_bytes()


# -- uploads --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_upload_accepts_images_by_content(fmt: str) -> None:
    checked = check_upload(image_bytes("blue", fmt=fmt), target_size=16)
    assert checked.format == fmt
    assert (checked.width, checked.height) == (40, 30)
    assert checked.image.mode == "RGB" and min(checked.image.size) >= 16


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"%PDF-1.7 definitely a document", "not a JPEG, PNG, WebP, HEIC or AVIF"),
        (b"GIF89a" + b"\0" * 64, "not a JPEG, PNG, WebP, HEIC or AVIF"),
        (image_bytes()[:60], "damaged"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "damaged"),
        (bomb_bytes(), "too many pixels: 10000×6000"),
        (png_claiming_size(40_000, 40_000), "too many pixels, more than the 50 MP"),
    ],
    ids=["empty", "pdf", "gif", "truncated", "garbage-png", "bomb", "giant-bomb"],
)
def test_upload_refusals_are_one_sentence(data: bytes, message: str) -> None:
    with pytest.raises(UploadError, match=message) as caught:
        check_upload(data)
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")


def test_upload_size_limit() -> None:
    with pytest.raises(UploadError, match=r"the limit is 1 MB"):
        check_upload(b"\xff\xd8\xff" + b"\0" * (1 << 20), max_bytes=1 << 20)


def test_sniff_format() -> None:
    assert sniff_format(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP"
    assert sniff_format(b"RIFF\0\0\0\0AVI LIST") is None
    assert sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"


# -- thumbnails -----------------------------------------------------------------------------


def test_thumbnails_are_small_cached_and_follow_edits(tmp_path: Path) -> None:
    source = make_image(tmp_path / "big.png", "green", size=(800, 600))
    thumbs = tmp_path / "thumbs"

    def thumbnail() -> Path:
        with open(source, "rb") as handle:
            return image_thumbnail(thumbs, handle, str(source))

    first = thumbnail()
    with Image.open(first) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == GRID_SIZE
    stamp = first.stat().st_mtime_ns
    assert thumbnail() == first and first.stat().st_mtime_ns == stamp
    make_image(source, "red", size=(400, 300), seed=1)
    os.utime(source, ns=(stamp + 10**9, stamp + 10**9))
    assert thumbnail() != first
    assert frame_thumbnail(thumbs, "0" * 32, 1.0) is None
    small = Image.open(io.BytesIO(jpeg_bytes(Image.new("RGB", (900, 300)), 90)))
    assert small.size == (90, 30)


# -- the service ----------------------------------------------------------------------------


def test_text_search_with_timings_and_query_cache(service: Service, selection: Selection) -> None:
    outcome = service.search(selection, Query.for_text("красный"), 3, 0.2)
    assert not outcome.error
    assert [Path(r.hit.path).name.split("_")[0] for r in outcome.results[:2]] == ["red", "red"]
    assert outcome.results[0].name == "red_0.png" or outcome.results[0].name == "red_1.png"
    assert outcome.encode_s >= 0 and outcome.search_s >= 0 and not outcome.cached_query
    again = service.search(selection, Query.for_text("красный"), 5, 0.0)
    assert again.cached_query and len(again.results) == 5
    assert LOADS["demo"] >= 1


def test_empty_states_say_why(service: Service, selection: Selection, tmp_path: Path) -> None:
    high = service.search(selection, Query.for_text("blue"), 10, 1.0)
    assert high.results == [] and not high.error
    assert high.empty == "below_threshold" and 0.0 < high.best_score < 1.0
    empty = Selection(str(service.create_collection("empty")), "demo")
    outcome = service.search(empty, Query.for_text("blue"), 10, 0.2)
    assert outcome.empty == "nothing_indexed"
    only_videos = service.search(selection, Query.for_text("blue"), 10, 0.2, "video")
    assert only_videos.empty == "no_such_kind"
    for words in ("!!!???", "   "):
        refused = service.search(selection, Query.for_text(words), 10, 0.2)
        assert refused.error and not refused.results  # the library's own refusal
    assert service.counts(empty.collection)["items"] == 0


def test_image_query_and_more_like_this(
    service: Service, selection: Selection, album: Path
) -> None:
    data = (album / "yellow_1.png").read_bytes()
    outcome = service.search(selection, Query.for_image(data), 4, None)
    top = outcome.results[0].hit
    assert top.path == str(album / "yellow_1.png") and top.score == pytest.approx(1.0, abs=1e-3)
    similar = service.search(selection, Query.like(top.item_id), 4, None)
    assert top.item_id not in {r.hit.item_id for r in similar.results}
    assert Path(similar.results[0].hit.path).name == "yellow_0.png"


def test_errors_become_one_sentence(service: Service, selection: Selection) -> None:
    bad = service.search(selection, Query.for_image(b"hello"), 4, None)
    assert (
        bad.error
        == "That file is not a JPEG, PNG, WebP, HEIC or AVIF image (checked by its content)."
    )
    missing = service.search(Selection(selection.collection, "clip"), Query.for_text("x"), 4, 0)
    assert missing.error == "Model clip is not available in the tests."
    wrong = Selection(selection.collection, "demo", indexer="faiss", params=(("bogus", 1),))
    assert "has no parameter bogus" in service.search(wrong, Query.for_text("red"), 4, 0).error


def count_index_builds(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> Counter:
    """Indexes built from now on, by indexer name (each build taking `delay` seconds more)."""
    import imgfinder.search

    built: Counter = Counter()
    real = imgfinder.search.create_indexer

    def counting(name: str, dim: int, **params):
        built[name] += 1
        time.sleep(delay)
        return real(name, dim, **params)

    monkeypatch.setattr(imgfinder.search, "create_indexer", counting)
    return built


def test_models_and_indexes_load_once(
    service: Service, selection: Selection, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = count_index_builds(monkeypatch)
    before = LOADS["demo"]
    for k in (1, 5, 20):
        for threshold in (0.0, 0.3):
            service.search(selection, Query.for_text("green"), k, threshold)
    faiss = Selection(selection.collection, "demo", indexer="faiss")
    assert service.search(faiss, Query.for_text("green"), 2, 0.5).results
    assert LOADS["demo"] - before <= 1  # at most the first load in this test
    assert built == Counter({"faiss": 1})  # the index run saved its exact index for the page
    assert service.model(selection) is service.model(selection)


def test_concurrent_sessions_share_one_load(
    service: Service, selection: Selection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions are threads: eight searching at once load the model and build the index once."""
    # a slow build widens the window in which a second session could race the first
    built = count_index_builds(monkeypatch, delay=0.2)
    fresh = Selection(selection.collection, "demo", indexer="faiss")
    before = LOADS["demo"]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(lambda _: service.search(fresh, Query.for_text("green"), 3, 0.0), range(8))
        )
    assert not any(o.error for o in outcomes)
    assert len({tuple(r.name for r in o.results) for o in outcomes}) == 1
    assert LOADS["demo"] - before <= 1 and built == Counter({"faiss": 1})


def test_video_hits_become_one_card_with_moments(service: Service, tmp_path: Path) -> None:
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    video = str(tmp_path / "clip.mp4")
    hits = [
        Hit(7, video, 0.9, "video", 10.0, 12.0, 11.0),
        Hit(3, str(tmp_path / "a.png"), 0.8, "image"),
        Hit(2, video, 0.7, "video", 2.0, 3.0, 2.0),
    ]
    cards = service._group(model, hits)
    assert [c.hit.item_id for c in cards] == [7, 3]
    assert [m.t_start for m in cards[0].moments] == [2.0, 10.0]
    assert cards[1].moments == ()
    model.close()


def test_display_names() -> None:
    assert _display_name("/p/a/b/c.jpg", ["/p", "/p/a"]) == "b/c.jpg"
    assert _display_name("/elsewhere/c.jpg", ["/p"]) == "c.jpg"
    assert _display_name("/p/one.jpg", ["/p/one.jpg"]) == "one.jpg"


def test_originals_only_under_roots(
    service: Service, selection: Selection, album: Path, tmp_path: Path
) -> None:
    inside = str(album / "red_0.png")
    assert service.read_original(selection.collection, inside) == Path(inside).read_bytes()
    secret = make_image(tmp_path / "secret.png")
    with pytest.raises(UnsafePathError):
        service.read_original(selection.collection, str(secret))
    assert service.preview(selection.collection, str(secret)) is None
    hit = Hit(-5, str(secret), 1.0, "image")
    assert service.thumbnail(selection.collection, hit) is None
    page = service.search(selection, Query.for_text("red"), 4, None).results
    thumbs = service.thumbnails(selection.collection, [r.hit for r in page] + [hit])
    assert thumbs[-5] is None and len(thumbs) == 5
    assert all(thumbs[r.hit.item_id].suffix == ".jpg" for r in page)


def test_indexing_in_background_keeps_search_working(
    tmp_path: Path, selection: Selection, album: Path
) -> None:
    gated = HeldEmbedder(threading.Event())
    settings = Settings(indexes_dir=str(tmp_path / "indexes"), allowed_roots=(str(tmp_path),))
    service = Service(settings, lambda k, r: gated)
    new = tmp_path / "new"
    for number in range(3):
        make_image(new / f"purple_{number}.png", "purple", seed=number)
    (new / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    status = service.start_indexing(selection, str(new))
    assert status.running and status.folder == str(new)
    with pytest.raises(ConfigError, match="already being indexed"):
        service.start_indexing(selection, str(new))
    # while the run is blocked inside the embedder, the collection answers queries
    during = service.search(selection, Query.for_text("red"), 2, 0.2)
    assert not during.error and during.results
    gated.gate.set()
    assert service.job(selection.collection).wait(20)
    final = service.job_status(selection.collection)
    assert final.state == "done" and final.summary["indexed"] == 3
    time.sleep(0.05)
    assert service.job_status(selection.collection).elapsed == final.elapsed  # a finished clock
    assert [(Path(s.path).name, s.reason) for s in final.skipped] == [
        ("broken.jpg", "not an image: cannot identify image file")
    ]
    found = service.search(selection, Query.for_text("purple"), 3, 0.5)
    assert {Path(r.hit.path).name for r in found.results} == {f"purple_{n}.png" for n in range(3)}
    service.dismiss_job(selection.collection)
    assert service.job_status(selection.collection) is None
    service.close()


def test_cancel_and_bad_folders(tmp_path: Path, selection: Selection) -> None:
    gated = HeldEmbedder(threading.Event())
    settings = Settings(indexes_dir=str(tmp_path / "indexes"), allowed_roots=(str(tmp_path),))
    service = Service(settings, lambda k, r: gated)
    folder = tmp_path / "many"
    for number in range(40):
        make_image(folder / f"red_{number}.png", "red", seed=number)
    service.start_indexing(selection, str(folder))
    deadline = time.monotonic() + 10
    while service.job_status(selection.collection).phase != "embed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    service.cancel_indexing(selection.collection)
    gated.gate.set()
    assert service.job(selection.collection).wait(20)
    assert service.job_status(selection.collection).state == "cancelled"
    for bad, message in (("", "type the path"), (str(tmp_path / "nope"), "no folder at")):
        with pytest.raises(ConfigError, match=message):
            service.start_indexing(selection, bad)
    with pytest.raises(ConfigError, match="inside the collection"):
        service.start_indexing(selection, selection.collection)
    outside = make_image(tmp_path.parent / f"{tmp_path.name}-outside" / "x.png").parent
    (folder / "link").symlink_to(outside)
    for sneaky in (outside, folder / "link", folder / ".." / ".." / outside.name):
        with pytest.raises(ConfigError, match="may only index folders under"):
            service.start_indexing(selection, str(sneaky))
    service.close()


def test_a_collection_s_own_folders_can_be_indexed_again(
    tmp_path: Path, album: Path, selection: Selection
) -> None:
    """Its folders were chosen by whoever built it (here the library, outside the roots the
    server allows), so the server may look at them again for new or moved photos."""
    allowed = tmp_path / "allowed"
    settings = Settings(indexes_dir=str(tmp_path / "indexes"), allowed_roots=(str(allowed),))
    service = Service(settings, lambda key, runtime: ColorEmbedder())
    service.start_indexing(selection, str(album))
    assert service.job(selection.collection).wait(20)
    final = service.job_status(selection.collection)
    assert final.state == "done" and final.summary["indexed"] == 0
    assert final.summary["unchanged"] == len(list(album.rglob("*.*")))
    with pytest.raises(ConfigError, match="may only index folders under"):
        service.start_indexing(selection, str(album.parent))
    service.close()


def test_allowed_roots_default_to_home_and_the_indexes_folder(tmp_path: Path) -> None:
    settings = Settings.from_env({"IMGFINDER_INDEXES": str(tmp_path / "indexes")})
    home = Path(os.path.realpath(Path.home()))
    assert settings.indexable_roots() == [home, Path(os.path.realpath(tmp_path / "indexes"))]
    chosen = Settings.from_env({"IMGFINDER_ALLOWED_ROOTS": f"/srv/photos{os.pathsep}/mnt/nas"})
    assert chosen.indexable_roots() == [Path("/srv/photos"), Path("/mnt/nas")]


def test_settings_and_factory_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"IMGFINDER_COLLECTION": "./indexes/demo", "IMGFINDER_EMBEDDER_FACTORY": FACTORY}
    settings = Settings.from_env(env)
    assert settings.collection == "./indexes/demo" and settings.embedder_factory == FACTORY
    moved = Settings.from_env({"IMGFINDER_DATA_DIR": "/data"})
    assert moved.indexes_dir == str(Path("/data") / "indexes")
    assert load_factory(FACTORY) is color_embedder
    for spec in ("nocolon", "no_such_module_xyz:f", "test_webapp:nope"):
        with pytest.raises(ConfigError):
            load_factory(spec)
    with pytest.raises(ConfigError, match="collection name"):
        Service(Settings(embedder_factory=FACTORY)).create_collection("../up")


def test_text_helpers() -> None:
    assert escape_markdown("*a* [b](c) :red[x] $y$") == (r"\*a\* \[b\]\(c\) \:red\[x\] \$y\$")
    assert format_seconds(None) == "—" and format_seconds(65) == "1:05"
    assert format_seconds(3723) == "1:02:03"
    assert format_ms(0.0042) == "4.2 ms" and format_ms(0.1234) == "123 ms"
    assert shorten_middle("IMG_20230412_181203.jpg", 12) == "IMG_20…3.jpg"
    assert (
        len(shorten_middle("x" * 50, 12)) == 12 and shorten_middle("short.jpg", 12) == "short.jpg"
    )
    assert format_bytes(812) == "812 B" and format_bytes(5_600) == "5.6 KB"
    assert format_bytes(4_200_000) == "4.2 MB" and format_bytes(42_000_000) == "42 MB"


def test_a_viewer_gets_each_result_s_facts_and_pictures(
    service: Service, selection: Selection, album: Path, tmp_path: Path
) -> None:
    from PIL import Image

    photo = album / "red_0.png"
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS 5D"  # Make, Model
    exif[0x0132] = "2019:07:14 10:30:00"  # DateTime
    Image.open(photo).convert("RGB").save(photo.with_suffix(".jpg"), exif=exif)
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copyfile(album / "red_1.png", copies / "red_1 copy.png")
    model = SearchModel(selection.collection, ColorEmbedder())
    model.index([album, copies])
    model.close()
    outcome = service.find(selection, Query.for_text("red"), 3, None)
    shot = next(hit for hit in outcome.hits if hit.path.endswith(".jpg"))
    found = service.details(selection.collection, shot)
    assert (found.camera, found.taken, found.width) == ("Canon EOS 5D", "2019-07-14T10:30:00", 64)
    assert found.size == (album / "red_0.jpg").stat().st_size and found.duration is None
    plain = next(hit for hit in outcome.hits if hit.path.endswith("red_1.png"))
    plain_details = service.details(selection.collection, plain)
    assert plain_details.taken.startswith("20")  # by its mtime
    assert plain_details.copies == ("red_1 copy.png",)  # the same picture, found elsewhere
    assert found.copies == ()
    pictures = service.pictures(selection.collection, outcome.hits)
    assert set(pictures) == {hit.item_id for hit in outcome.hits}
    first = pictures[shot.item_id]
    assert first.uri.startswith("data:image/jpeg;base64,")
    assert (first.width, first.height) == (64, 48)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_are_query_images(fmt: str) -> None:
    """HEIC (iPhones) and AVIF uploads are read like any other; a HEIC renamed .jpg too."""
    from imgfinder.media.images import register_heif

    assert register_heif()
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), PALETTE["green"]).save(buffer, format=fmt)
    checked = check_upload(buffer.getvalue(), target_size=32)
    assert checked.format == fmt and (checked.width, checked.height) == (80, 60)
    assert checked.image.getpixel((5, 5))[1] > 150  # still green after lossy coding
    with pytest.raises(UploadError, match="damaged"):
        check_upload(buffer.getvalue()[:40])


def test_an_estimate_counts_what_a_model_has_still_to_index(
    service: Service, selection: Selection
) -> None:
    done = service.estimate(selection)
    assert (done.files, done.total) == (0, 8)
    assert done.images_per_s == dict(get_model("demo").images_per_s)["fp32"]
    other = replace(selection, model="clip-vit-b-32", runtime="onnx-int8")
    todo = service.estimate(other)  # a model that cannot load here has embedded nothing
    assert (todo.files, todo.total) == (8, 8)
    assert todo.images_per_s == dict(get_model("clip-vit-b-32").images_per_s)["int8"]
    assert todo.seconds == pytest.approx(8 / todo.images_per_s)
