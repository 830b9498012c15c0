"""Writers and readers at once, as separate processes: two writers take turns through the
collection's writer lock and end where one-after-the-other ends; a second writer with --no-wait
stops at once; readers never wait for a writer; no saved index claims a generation it was not
built from; and a long-lived model catches up with another process's commits."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from crashkit import (
    BATCH,
    BUSY,
    ROOT,
    WAITING,
    Fingerprint,
    Media,
    collection_fingerprint,
    index_command,
    make_media,
    make_rounds,
    run_index,
    saved_index_problems,
    sequential_run,
    shared_rows,
    stale_trial,
    stop,
    two_writers,
    wait_for_text,
    watch,
)

from imgfinder.search import SearchModel
from imgfinder.store.lock import WriterLock

pytest.importorskip("av")

SEED = 7
#: no single wait in these tests may take longer than this
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return make_media(tmp_path_factory.mktemp("media"), images=24, copies=4, videos=2, late=0)


@pytest.fixture(scope="module")
def sequential(media: Media, tmp_path_factory: pytest.TempPathFactory) -> Fingerprint:
    return sequential_run(media, tmp_path_factory.mktemp("sequential") / "collection")


@pytest.mark.parametrize("held", [False, True], ids=["started-together", "racing-for-the-lock"])
def test_two_writers_share_no_vector_row_and_end_like_one_after_the_other(
    media: Media, sequential: Fingerprint, tmp_path: Path, held: bool
) -> None:
    """Different folders (a, b) and an overlapping one (shared, with copies of both) at once.
    `held`: both wait behind a lock this test holds, then race for it the moment it is free."""
    result = two_writers(media, tmp_path / "collection", held=held, timeout=TIMEOUT)

    assert result.returncodes == (0, 0), result.stderr
    if held:
        assert all(result.waited), result.stderr
    assert shared_rows(tmp_path / "collection") == 0
    assert result.fingerprint is not None
    assert result.fingerprint == sequential, result.fingerprint.differences(sequential)
    # the later writer reused what the first embedded: no content was embedded twice
    assert result.fingerprint.spare_rows == 0


def test_no_wait_stops_at_once_and_a_waiting_writer_goes_on_once_the_lock_is_free(
    media: Media, tmp_path: Path
) -> None:
    collection = tmp_path / "collection"
    run_index([media.a], collection, timeout=TIMEOUT)
    before = collection_fingerprint(collection)
    log = tmp_path / "waiting.log"
    lock = WriterLock(collection)  # another handle than the runs': flock tells them apart
    assert lock.try_acquire()
    try:
        refused = subprocess.run(
            index_command([media.b], collection, "--no-wait"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert refused.returncode == 1, refused.stderr
        assert BUSY in refused.stderr
        assert collection_fingerprint(collection) == before

        with open(log, "wb") as handle:
            waiting = subprocess.Popen(
                index_command([media.b], collection),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=handle,
            )
        try:
            assert wait_for_text(log, WAITING, waiting, TIMEOUT), log.read_text()
            time.sleep(0.3)
            assert waiting.poll() is None, "the second writer did not wait for the lock"
            assert collection_fingerprint(collection) == before
        except BaseException:
            stop(waiting)
            raise
    finally:
        lock.release()
    assert waiting.wait(timeout=TIMEOUT) == 0, log.read_text()
    after = collection_fingerprint(collection)
    assert not after.problems
    assert {str(path) for path in media.images if path.parent == media.b} <= after.paths


def test_readers_answer_while_a_writer_holds_the_lock(media: Media, tmp_path: Path) -> None:
    """A reader searches in a loop while a writer process commits batch after batch; the
    writer is also paused (SIGSTOP) with the lock held, and the reader must still answer with
    exactly what is committed: a reader that waited for the lock would time out here."""
    collection = tmp_path / "collection"
    run_index([media.a], collection, timeout=TIMEOUT)
    reader = SearchModel(collection, "demo", create=False)
    key = reader.embedder.key

    def look() -> tuple[int, int]:
        """One search, and the number of items in the index it searched."""
        hits = reader.search_text("a red circle", k=5)
        return len(hits), len(reader.vector_index())

    start = watch(collection)
    sizes: list[int] = []
    paused = 0
    pool = ThreadPoolExecutor(1)
    writer = subprocess.Popen(
        index_command([media.a, media.b, media.shared], collection),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while writer.poll() is None and time.monotonic() < deadline:
            hits, size = pool.submit(look).result(timeout=TIMEOUT)
            assert hits == 5
            sizes.append(size)
            if paused < 3 and watch(collection).generation > start.generation + paused:
                os.kill(writer.pid, signal.SIGSTOP)
                try:
                    probe = WriterLock(collection)
                    free = probe.try_acquire()
                    probe.release()
                    if free:  # the run is over, the process is only exiting
                        break
                    hits, size = pool.submit(look).result(timeout=TIMEOUT)
                    assert size == len(reader.collection.catalog.snapshot(key).rows)
                    sizes.append(size)
                    paused += 1
                finally:
                    os.kill(writer.pid, signal.SIGCONT)
        assert writer.wait(timeout=TIMEOUT) == 0, writer.stderr.read() if writer.stderr else ""
    finally:
        stop(writer)
        pool.shutdown()
    assert paused >= 1, "no look finished while the writer held the lock"
    assert sizes == sorted(sizes), "a reader went back to an older state"
    _, size = look()
    assert size == len(reader.collection.catalog.snapshot(key).rows) > sizes[0]
    reader.close()


def test_a_long_lived_model_sees_another_process_commits_on_its_next_query(
    media: Media, tmp_path: Path
) -> None:
    collection = tmp_path / "collection"
    run_index([media.a], collection, timeout=TIMEOUT)
    model = SearchModel(collection, "demo", create=False)
    newcomer = next(path for path in media.images if path.parent == media.b)
    assert model.search_image(newcomer, k=1)[0].path != str(newcomer)

    run_index([media.b], collection, timeout=TIMEOUT)

    best = model.search_image(newcomer, k=1)[0]
    assert best.path == str(newcomer) and best.score > 0.99
    assert len(model.vector_index()) == len(
        model.collection.catalog.snapshot(model.embedder.key).rows
    )
    model.close()


def test_a_reader_that_built_its_index_before_a_commit_does_not_save_it_as_newer(
    media: Media, tmp_path: Path
) -> None:
    """The race made certain: another process commits after a reader built its index and just
    before the reader tries to save it, once the lock is free again."""
    collection = tmp_path / "collection"
    run_index([media.a], collection, timeout=TIMEOUT)
    shutil.rmtree(collection / "index")  # the reader builds its index rather than loading it
    reader = SearchModel(collection, "demo", create=False)
    take_lock = reader.collection.writer

    def commit_first() -> WriterLock:
        """The lock the reader asks for to save, handed over only after a commit."""
        run_index([media.b], collection, timeout=TIMEOUT)
        return take_lock()

    reader.collection.writer = commit_first
    built = len(reader.vector_index())
    reader.collection.writer = take_lock

    live = reader.collection.catalog.snapshot(reader.embedder.key).rows
    assert built < len(live), "the commit did not come between the build and the save"
    assert saved_index_problems(reader.collection) == []
    fresh = SearchModel(collection, reader.embedder, create=False, model_name="demo")
    newcomer = next(path for path in media.images if path.parent == media.b)
    best = fresh.search_image(newcomer, k=1)[0]
    assert best.path == str(newcomer) and best.score > 0.99
    fresh.close()
    reader.close()


def test_no_saved_index_is_stamped_with_a_generation_it_was_not_built_from(
    media: Media, tmp_path: Path
) -> None:
    """A writer process commits four runs with short pauses between them, while a reader
    process opens fresh models (each builds, or loads a saved index, and saves when the lock
    is free) and this process keeps querying a long-lived model."""
    base = tmp_path / "base"
    run_index([media.a], base, timeout=TIMEOUT)
    folders = make_rounds(tmp_path / "rounds", rounds=4, images=2 * BATCH, seed=SEED)

    result = stale_trial(base, tmp_path / "collection", folders, seed=SEED, timeout=TIMEOUT)

    assert not result.errors, result.errors
    assert result.reader["looks"] > 0
    assert result.stale_looks == 0, "a fresh model's index did not match its generation"
    assert result.stale_saves == 0, "a saved index is stamped with a generation it lacks items of"
    assert not result.missing, "a fresh model does not find these new images"
    held, live = result.lasting
    assert held == live, "the long-lived model did not catch up with the writer's commits"
