"""A full disk is one sentence, leaves the previous state intact, and search still answers.

Where the machine allows it (root, mount), a real 1 MB tmpfs fills up; the injected ENOSPC
test runs everywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ColorEmbedder, make_image

from imgfinder.errors import StorageError
from imgfinder.search import SearchModel
from imgfinder.store.collection import Collection
from imgfinder.store.health import check
from imgfinder.store.vectors import VectorStore


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB file system, or a skip naming why there is none."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({made.stderr.strip()}); injected ENOSPC runs"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; deleting it frees the space again."""
    filler = disk / "filler"
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def albums(base: Path) -> tuple[Path, Path]:
    first, second = base / "first", base / "second"
    for number in range(6):
        make_image(first / f"red_{number}.png", "red", seed=number)
    for number in range(40):
        make_image(second / f"c_{number}.png", ("green", "blue")[number % 2], seed=number)
    return first, second


def state(model: SearchModel) -> dict[str, bytes]:
    """Path -> exact float16 vector bytes of every live image."""
    snapshot = model.collection.catalog.snapshot(model.embedder.key)
    store = model.collection.vectors(model.embedder.key, model.embedder.dim)
    items = model.collection.catalog.items(snapshot.rows)
    vectors = store.read(list(snapshot.rows.values())).astype("float16")
    return {items[i].path: v.tobytes() for i, v in zip(snapshot.rows, vectors, strict=True)}


def test_real_full_disk_keeps_the_collection_and_search(small_disk: Path, tmp_path: Path) -> None:
    first, second = albums(tmp_path / "media")
    model = SearchModel(small_disk / "c", ColorEmbedder())
    model.index([first])
    before = state(model)
    model.close()
    filler = fill(small_disk)

    model = SearchModel(small_disk / "c", ColorEmbedder())
    with pytest.raises(StorageError) as failed:
        model.index([first, second])
    assert "\n" not in str(failed.value)
    collection = Collection(small_disk / "c", create=False)
    assert check(collection) == []
    reader = SearchModel(collection, ColorEmbedder())
    assert {h.path for h in reader.search_text("red", k=6)} == set(before)  # answers when full
    assert set(before) <= set(state(reader))

    filler.unlink()
    model = SearchModel(small_disk / "c", ColorEmbedder())
    model.index([first, second])
    clean = SearchModel(tmp_path / "clean", ColorEmbedder())
    clean.index([first, second])
    assert state(model) == state(clean)


def test_full_disk_on_the_command_line_is_one_sentence(small_disk: Path, tmp_path: Path) -> None:
    _, second = albums(tmp_path / "media")
    fill(small_disk)
    run = subprocess.run(
        [sys.executable, "-m", "imgfinder", "index", str(second), "-c", str(small_disk / "c")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_injected_enospc_at_the_vector_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = albums(tmp_path / "media")
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    model.index([first])
    before = state(model)
    real = VectorStore._append
    calls = {"n": 0}

    def full_after_one(self, handle, data):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, handle, data)

    monkeypatch.setattr(VectorStore, "_append", full_after_one)
    with pytest.raises(StorageError, match="No space left"):
        model.index([first, second], batch_size=8)
    monkeypatch.undo()
    after = state(SearchModel(tmp_path / "c", ColorEmbedder()))
    assert set(before) <= set(after) and len(after) == len(before) + 8  # one batch landed
    assert check(Collection(tmp_path / "c", create=False)) == []
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    model.index([first, second])
    clean = SearchModel(tmp_path / f"clean-{uuid.uuid4().hex}", ColorEmbedder())
    clean.index([first, second])
    assert state(model) == state(clean)
