"""FolderWatch with real watchdog and real files: bursts make one call, noise makes none."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgfinder.watch import FolderWatch

QUIET = 0.3
FACTORY = "test_webapp:color_embedder"
#: Long enough that a call the watch was going to make has been made.
SETTLE = QUIET + 0.2


class Calls:
    """An `on_change` that records its calls; `fail` makes the next calls raise."""

    def __init__(self) -> None:
        self.calls: list[list[Path]] = []
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, roots: list[Path]) -> None:
        with self._lock:
            self.calls.append(roots)
        if self.fail:
            raise RuntimeError("index broke")

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.calls)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


def write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a photo")
    return path


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


@pytest.fixture
def watching(root: Path, calls: Calls) -> Iterator[FolderWatch]:
    with FolderWatch([root], calls, quiet=QUIET) as watch:
        yield watch


def test_a_burst_of_photos_makes_one_call(root: Path, calls: Calls, watching: FolderWatch) -> None:
    for number in range(20):
        write(root / f"img_{number:02}.jpg")
    wait_for(lambda: calls.count == 1)
    time.sleep(SETTLE)
    assert calls.calls == [[root]]
    status = watching.status()
    assert (status.runs, status.pending, status.last_error) == (1, 0, "")
    assert status.last_run is not None
    assert status.folders == (str(root),)


#: Names `scan` would not index: not media, hidden, lock files, downloads in progress, and
#: anything in hidden or NAS thumbnail folders.
NOT_INDEXED = [
    "notes.txt",
    ".hidden.jpg",
    "~lock.jpg",
    "img.jpg.part",
    "img.jpg.crdownload",
    "img.tmp",
    ".thumbnails/img.jpg",
    "@eaDir/img.jpg",
    "upload.tmp/img.jpg",
]


def test_files_that_are_not_indexed_make_no_call(
    root: Path, calls: Calls, watching: FolderWatch
) -> None:
    for name in NOT_INDEXED:
        write(root / name)
    time.sleep(SETTLE)
    assert calls.count == 0
    assert watching.status().pending == 0


def test_reading_a_photo_makes_no_call(root: Path, calls: Calls) -> None:
    photo = write(root / "img.jpg")
    with FolderWatch([root], calls, quiet=QUIET):
        photo.read_bytes()
        time.sleep(SETTLE)
    assert calls.count == 0


@pytest.mark.parametrize(
    "change",
    [
        lambda photo: photo.unlink(),
        lambda photo: photo.rename(photo.with_name("renamed.jpg")),
        lambda photo: photo.rename(photo.with_suffix(".txt")),
        lambda photo: photo.rename(photo.parent / "sub" / photo.name),
    ],
    ids=["delete", "rename", "rename-to-txt", "move-to-subfolder"],
)
def test_deleting_or_renaming_a_photo_makes_a_call(
    root: Path, calls: Calls, change: Callable[[Path], object]
) -> None:
    photo = write(root / "img.jpg")
    (root / "sub").mkdir()
    with FolderWatch([root], calls, quiet=QUIET):
        change(photo)
        wait_for(lambda: calls.count == 1)
    assert calls.calls == [[root]]


def test_a_photo_moved_to_the_trash_makes_a_call(tmp_path: Path, root: Path, calls: Calls) -> None:
    # A move out of the tree is reported as a delete, after watchdog waited 0.5 s for its pair.
    photo = write(root / "img.jpg")
    trash = tmp_path / "Trash"
    trash.mkdir()
    with FolderWatch([root], calls, quiet=QUIET):
        photo.rename(trash / photo.name)
        wait_for(lambda: calls.count == 1)
    assert calls.calls == [[root]]


def test_a_download_renamed_to_jpg_makes_a_call(
    root: Path, calls: Calls, watching: FolderWatch
) -> None:
    partial = write(root / "img.jpg.crdownload")
    partial.rename(root / "img.jpg")
    wait_for(lambda: calls.count == 1)


def test_a_folder_moved_in_makes_a_call(tmp_path: Path, root: Path, calls: Calls) -> None:
    album = tmp_path / "album"
    for number in range(5):
        write(album / f"img_{number}.jpg")
    with FolderWatch([root], calls, quiet=QUIET):
        album.rename(root / "album")
        wait_for(lambda: calls.count == 1)
        write(root / "album" / "later.jpg")
        wait_for(lambda: calls.count == 2)
    assert calls.calls == [[root], [root]]


def test_only_the_root_that_changed_is_reported(tmp_path: Path, calls: Calls) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with FolderWatch([first, second], calls, quiet=QUIET):
        write(second / "deep" / "img.png")
        wait_for(lambda: calls.count == 1)
        write(first / "clip.MP4")
        write(second / "img.webp")
        wait_for(lambda: calls.count == 2)
    assert calls.calls == [[second], [first, second]]


def test_a_failing_call_is_logged_and_watching_goes_on(
    root: Path, calls: Calls, watching: FolderWatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls.fail = True
    with caplog.at_level(logging.ERROR, logger="imgfinder.watch"):
        write(root / "a.jpg")
        wait_for(lambda: watching.status().runs == 1)
    assert "index broke" in caplog.text
    assert watching.status().last_error == "RuntimeError: index broke"
    calls.fail = False
    write(root / "b.jpg")
    wait_for(lambda: watching.status().runs == 2)
    assert calls.count == 2
    assert watching.status().last_error == ""


def test_changes_during_a_call_make_another_call(root: Path) -> None:
    entered, release = threading.Event(), threading.Event()
    seen: list[list[Path]] = []
    active = threading.Semaphore(1)

    def slow(roots: list[Path]) -> None:
        assert active.acquire(blocking=False), "two calls at once"
        seen.append(roots)
        entered.set()
        release.wait(5)
        active.release()

    with FolderWatch([root], slow, quiet=QUIET) as watch:
        write(root / "a.jpg")
        assert entered.wait(5)
        write(root / "b.jpg")
        wait_for(lambda: watch.status().pending == 1)
        release.set()
        wait_for(lambda: watch.status().runs == 2)
    assert seen == [[root], [root]]


def test_a_missing_folder_is_skipped_and_the_other_works(
    tmp_path: Path, root: Path, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "gone"
    photo = write(tmp_path / "a-file.jpg")
    with (
        caplog.at_level(logging.WARNING, logger="imgfinder.watch"),
        FolderWatch([missing, photo, root], calls, quiet=QUIET) as watch,
    ):
        status = watch.status()
        assert status.folders == (str(root),)
        assert status.skipped == ((str(missing), "not found"), (str(photo), "not a folder"))
        write(root / "img.jpg")
        wait_for(lambda: calls.count == 1)
    assert calls.calls == [[root]]
    assert f"not watching {missing}: not found" in caplog.text


def test_stop_is_idempotent_and_ends_the_calls(root: Path, calls: Calls) -> None:
    before = set(threading.enumerate())
    watch = FolderWatch([root], calls, quiet=QUIET)
    watch.start()
    write(root / "img.jpg")
    watch.stop()
    watch.stop()
    write(root / "later.jpg")
    time.sleep(SETTLE)
    assert calls.count == 0
    assert set(threading.enumerate()) <= before, "stop() left threads running"
    with pytest.raises(RuntimeError, match="starts once"):
        watch.start()


def test_a_watched_collection_indexes_new_and_deleted_photos_and_resumes(tmp_path: Path) -> None:
    """Through the service: the watch indexes what is copied in and forgets what is deleted,
    is kept in the manifest so a new server resumes it, and stops when switched off."""
    from conftest import ColorEmbedder, make_image

    from imgfinder.config import Settings
    from imgfinder.search import SearchModel
    from imgfinder.service import Selection, Service

    album = tmp_path / "album"
    make_image(album / "red_0.png", "red")
    collection = tmp_path / "indexes" / "photos"
    model = SearchModel(collection, ColorEmbedder())
    model.index([album])
    model.close()
    settings = Settings(indexes_dir=str(tmp_path / "indexes"), embedder_factory=FACTORY)
    selection = Selection(str(collection), "demo")
    service = Service(settings)
    try:
        assert service.watching(selection) is None
        status = service.set_watching(selection, True, quiet=QUIET)
        assert status is not None and status.folders == (str(album),)
        make_image(album / "blue_0.png", "blue")
        wait_for(lambda: service.counts(collection)["images"] == 2, timeout=15)
        (album / "red_0.png").unlink()
        wait_for(lambda: service.counts(collection)["images"] == 1, timeout=15)
        wait_for(lambda: service.watching(selection).runs >= 2)  # the run ends after its commit
    finally:
        service.close()
    again = Service(settings)
    try:
        resumed = again.watching(selection, quiet=QUIET)
        assert resumed is not None and resumed.runs == 0  # a new server watches again
        make_image(album / "green_0.png", "green")
        wait_for(lambda: again.counts(collection)["images"] == 2, timeout=15)
        assert again.set_watching(selection, False) is None
        make_image(album / "white_0.png", "white")
        time.sleep(SETTLE + 0.5)
        assert again.counts(collection)["images"] == 2  # switched off: nothing more is indexed
    finally:
        again.close()


def test_stopping_lets_a_call_under_way_end_early(tmp_path: Path) -> None:
    """`stopping` is set as `stop` begins, so a re-index that watches it (the service passes it
    as the run's cancel) ends at once instead of holding up whoever switched the watch off."""
    started = threading.Event()
    watch: FolderWatch

    def slow(roots: list[Path]) -> None:
        started.set()
        watch.stopping.wait(30)  # a long run that gives way when asked

    watch = FolderWatch([tmp_path], slow, quiet=QUIET)
    watch.start()
    write(tmp_path / "a.jpg")
    assert started.wait(5)
    begun = time.monotonic()
    watch.stop()
    assert time.monotonic() - begun < 2


def test_pages_asking_at_once_share_one_watch(tmp_path: Path) -> None:
    """Every open page asks for the watch's status every few seconds; after a restart they
    may ask at the same moment, and must get one watch, not a crash or a leaked observer."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import ColorEmbedder, make_image

    from imgfinder.config import Settings
    from imgfinder.search import SearchModel
    from imgfinder.service import Selection, Service

    album = tmp_path / "album"
    make_image(album / "red_0.png", "red")
    collection = tmp_path / "indexes" / "photos"
    model = SearchModel(collection, ColorEmbedder())
    model.index([album])
    model.collection.set_watched(True)
    model.close()
    selection = Selection(str(collection), "demo")
    service = Service(Settings(indexes_dir=str(tmp_path / "indexes"), embedder_factory=FACTORY))
    try:
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(lambda _: service.watching(selection, QUIET), range(16)))
        assert all(status is not None and status.folders == (str(album),) for status in found)
        assert len(service._watches) == 1
        watchers = [t for t in threading.enumerate() if t.name == "imgfinder-watch"]
        assert len(watchers) == 1
    finally:
        service.close()
    assert not [t for t in threading.enumerate() if t.name == "imgfinder-watch"]
