"""Every scanned file ends in exactly one count; odd names are indexed, shown and served."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ColorEmbedder, make_image

from imgfinder.search import SearchModel
from imgfinder.service import Query, Selection, Service, Settings


def adds_up(summary: dict) -> bool:
    parts = ("indexed", "unchanged", "renamed", "copies", "skipped", "left")
    return summary["scanned"] == sum(summary[part] for part in parts)


def test_counts_add_up_to_the_files_scanned(tmp_path: Path) -> None:
    root = tmp_path / "album"
    for number in range(5):
        make_image(root / f"red_{number}.png", "red", seed=number)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    shutil.copy(root / "broken.jpg", root / "broken copy.jpg")  # same bytes, same fate
    shutil.copy(root / "red_0.png", root / "red copy.png")
    (root / "empty.png").write_bytes(b"")
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    first = model.index([root]).summary()
    assert first["scanned"] == 9 and adds_up(first), first
    assert first["skipped"] == 3 and first["copies"] == 1 and first["indexed"] == 5
    skipped = {Path(s.path).name: s.reason for s in model.index([root]).skipped}
    first, copy = skipped["broken copy.jpg"], skipped["broken.jpg"]  # name order: " " < "."
    assert first.startswith("not an image") and copy.startswith("same content as")
    (root / "red_1.png").rename(root / "renamed.png")
    again = model.index([root]).summary()
    assert adds_up(again) and again["renamed"] == 1, again


def test_a_cancelled_run_counts_what_it_left(tmp_path: Path) -> None:
    root = tmp_path / "album"
    for number in range(40):
        make_image(root / f"img_{number}.png", "blue", seed=number)
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    cancel = threading.Event()

    def stop_after_first_batch(event) -> None:
        if event.phase == "embed" and event.done >= 8:
            cancel.set()

    summary = model.index(
        [root], progress=stop_after_first_batch, cancel=cancel, batch_size=8
    ).summary()
    assert summary["cancelled"] and summary["left"] > 0 and adds_up(summary), summary


def make_named(folder: Path, name: bytes, color: str) -> str:
    """An image whose file name is `name` exactly (any bytes but / and NUL)."""
    path = os.fsdecode(os.fsencode(folder) + b"/" + name)
    make_image(Path(path), color)
    return path


def test_names_that_are_not_utf8_are_indexed_shown_and_served(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    try:
        odd = make_named(root, "Москва.png".encode("cp1251"), "red")
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    make_image(root / "green.png", "green")
    model = SearchModel(tmp_path / "indexes" / "c", ColorEmbedder())
    summary = model.index([root]).summary()
    assert summary["indexed"] == 2 and summary["skipped"] == 0, summary
    (hit,) = model.search_text("red", k=1)
    assert os.fsencode(hit.path) == os.fsencode(odd)  # the exact bytes, round trip
    model.close()

    service = Service(Settings(indexes_dir=str(tmp_path / "indexes")), lambda *_: ColorEmbedder())
    selection = Selection(str(tmp_path / "indexes" / "c"), "demo")
    (card, *_) = service.search(selection, Query.for_text("red"), 1, None).results
    assert card.name == "\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd.png"  # shown, never a crash
    card.name.encode("utf-8")
    assert service.read_original(selection.collection, card.hit.path) == Path(odd).read_bytes()
    assert service.thumbnail(selection.collection, card.hit) is not None
    service.close()
    os.rename(os.fsencode(odd), os.fsencode(root / "renamed.png"))
    assert SearchModel(tmp_path / "indexes" / "c", ColorEmbedder()).index([root]).renamed == 1


def vector_bytes(collection: Path) -> int:
    return sum(f.stat().st_size for f in collection.glob("vectors/*.f16"))


def test_ctrl_c_says_how_to_resume_and_clears_the_progress(tmp_path: Path) -> None:
    root = tmp_path / "album"
    for number in range(300):
        make_image(root / f"img_{number}.png", "red", seed=number, size=(256, 192))
    collection = tmp_path / "c"
    leader, follower = pty.openpty()
    run = subprocess.Popen(
        [sys.executable, "-m", "imgfinder", "index", str(root), "-c", str(collection)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
    interrupted, sizes = False, {0}
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                output += os.read(leader, 65536)
            except OSError:
                break
        sizes.add(vector_bytes(collection))
        # two sizes past zero: a second batch was written, so the first one was committed
        if not interrupted and b"embedding" in output and len(sizes) > 2:
            run.send_signal(signal.SIGINT)
            interrupted = True
        if run.poll() is not None and not ready:
            break
    os.close(leader)
    assert run.wait(10) == 130, output.decode(errors="replace")[-500:]
    text = output.decode(errors="replace")
    tail = text[text.rindex("\x1b[?25h") :]  # what is on screen after the display stopped
    assert "interrupted; run the same command again to resume" in tail
    assert "embedding" not in tail and "━" not in tail
    resumed = subprocess.run(
        [sys.executable, "-m", "imgfinder", "index", str(root), "-c", str(collection), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert '"unchanged": 0' not in resumed.stdout  # the first run's commits were kept
