"""Incremental indexing: scan, then one stream from hashing through decoding to embedding.

Files whose size and mtime are unchanged cost one stat. The others are hashed by worker
threads; content already embedded is linked to its new path, and new images are decoded
(reduced to about the model's input size) by more worker threads, ahead of the model, which
embeds them in batches while the next ones are hashed and decoded. The model loads in a thread
of its own once there is something new, while the first images decode. Each batch is committed
on its own (vectors fsynced first), so a run killed at any moment resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgfinder.embedders.base import Embedder
from imgfinder.errors import ImgFinderError, StorageError
from imgfinder.media.frames import VideoSampling
from imgfinder.media.images import decode_ahead, open_image, taken_at
from imgfinder.media.scan import ScannedFile, Skipped, content_hash, scan
from imgfinder.store.catalog import FileRow, NewFile
from imgfinder.store.collection import Collection
from imgfinder.store.vectors import VectorStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """A progress report: `phase` is "scan", "embed" (the new and changed files, hashed and then
    linked or embedded) or "video"."""

    phase: str
    done: int
    total: int
    current: str = ""


@dataclass
class IndexReport:
    """What one run did. Every scanned entry ends in exactly one count: `scanned` equals
    indexed + unchanged + renamed + copies + skipped + left (left: not reached, when cancelled).

    Where the time went: `hash_seconds` and `decode_seconds` are CPU seconds of the worker
    threads (summed over them, so together they can exceed `seconds`); the other phases are
    wall seconds of the run itself, which drives the model: waiting for it to load, waiting for
    decoded images, embedding them, storing vectors and catalog rows, and videos (decoded and
    embedded frame by frame).
    """

    scanned: int = 0
    indexed: int = 0
    unchanged: int = 0
    renamed: int = 0
    #: new paths of content already indexed that no vanished path explains (duplicates)
    copies: int = 0
    removed: int = 0
    frames: int = 0
    left: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    skipped: list[Skipped] = field(default_factory=list)
    #: files whose content was hashed, images decoded (or tried) and images embedded
    hashed: int = 0
    decoded: int = 0
    embedded: int = 0
    hash_seconds: float = 0.0
    decode_seconds: float = 0.0
    model_seconds: float = 0.0
    wait_seconds: float = 0.0
    embed_seconds: float = 0.0
    store_seconds: float = 0.0
    video_seconds: float = 0.0
    #: CPU seconds of the whole process (every thread) during the run
    cpu_seconds: float = 0.0
    #: the process's peak resident memory by the end of the run (since it started: the run's
    #: own peak when the process does nothing else, as for the command line)
    peak_rss_mb: float = 0.0

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(_reason_family(s.reason) for s in self.skipped).most_common())

    def summary(self) -> dict[str, object]:
        return {
            "scanned": self.scanned,
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "renamed": self.renamed,
            "copies": self.copies,
            "removed": self.removed,
            "frames": self.frames,
            "skipped": len(self.skipped),
            "left": self.left,
            "skipped_by_reason": self.skipped_by_reason(),
            "cancelled": self.cancelled,
            "seconds": round(self.seconds, 3),
            "items_per_s": round(_per(self.indexed, self.seconds), 2),
            "hash_ms_per_file": round(1000 * _per(self.hash_seconds, self.hashed), 2),
            "decode_ms_per_image": round(1000 * _per(self.decode_seconds, self.decoded), 2),
            "embed_ms_per_image": round(1000 * _per(self.embed_seconds, self.embedded), 2),
            "store_ms_per_image": round(1000 * _per(self.store_seconds, self.embedded), 2),
            "hash_seconds": round(self.hash_seconds, 3),
            "decode_seconds": round(self.decode_seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
            "wait_seconds": round(self.wait_seconds, 3),
            "embed_seconds": round(self.embed_seconds, 3),
            "store_seconds": round(self.store_seconds, 3),
            "video_seconds": round(self.video_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


def _reason_family(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def _per(amount: float, count: float) -> float:
    return amount / count if count else 0.0


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: Linux's VmHWM, which (unlike getrusage's
    figure) a process does not inherit from the one that started it; else getrusage's; else 0."""
    with suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes there, KiB here


ProgressFn = Callable[[Progress], None]


@dataclass
class _Pending:
    file: ScannedFile
    hash: str


_Prepared = tuple[np.ndarray, str | None]


class _CpuClock:
    """CPU seconds and counts of work done by worker threads, summed over them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self.seconds[phase] += spent
                self.counts[phase] += 1


class _ModelLoad:
    """Loads a lazy embedder in a thread of its own (its model, an ONNX export when there is
    none yet, and the image tower's session), so that the first images decode meanwhile.
    `wait` raises what loading raised."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, name="imgfinder-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            self._embedder.load("image")
        except BaseException as exc:  # handed to the run, which raises it
            self._error = exc

    def wait(self) -> float:
        """Seconds spent waiting for the model to be ready."""
        started = time.perf_counter()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return time.perf_counter() - started

    def join(self) -> None:
        """Wait for the loading thread, raising nothing: for a run that ends early."""
        self._thread.join()


class Indexer:
    """One indexing run of `roots` into `collection` with `embedder`; the caller holds the
    collection's writer lock for the whole run."""

    def __init__(
        self,
        collection: Collection,
        embedder: Embedder,
        model_name: str,
        *,
        batch_size: int = 32,
        workers: int = 2,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        video: VideoSampling | None = None,
    ) -> None:
        self.collection = collection
        self.catalog = collection.catalog
        self.embedder = embedder
        self.model_name = model_name
        self.key = embedder.key
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress or (lambda _p: None)
        self.cancel = cancel or threading.Event()
        self.video = video or VideoSampling()
        #: content ids of new paths linked to content already embedded (renames or copies)
        self._new_links: list[int] = []
        #: content hash -> the first path found with it in this run
        self._first_of: dict[str, str] = {}
        self.report = IndexReport()
        self._cpu = _CpuClock()
        self._loading: _ModelLoad | None = None
        self._store: VectorStore | None = None
        #: new and changed files whose fate is settled (linked, skipped, embedded or queued)
        self._settled = 0

    def run(self, roots: Sequence[str | Path]) -> IndexReport:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            self._run(roots)
            self._vectors()  # the collection records the embedder even when nothing was new
        finally:
            if self._loading is not None:
                self._loading.join()
            report = self.report
            report.hash_seconds = self._cpu.seconds["hash"]
            report.decode_seconds = self._cpu.seconds["decode"]
            report.hashed = self._cpu.counts["hash"]
            report.decoded = self._cpu.counts["decode"]
            report.seconds = time.perf_counter() - started
            report.cpu_seconds = time.process_time() - cpu_started
            report.peak_rss_mb = _peak_rss_mb()
        return report

    def _run(self, roots: Sequence[str | Path]) -> None:
        root_paths = [Path(os.path.abspath(Path(r).expanduser())) for r in roots]
        self.progress(Progress("scan", 0, 0))
        scanned = scan(root_paths)
        self.report.skipped.extend(scanned.skipped)
        self.report.scanned = len(scanned.files) + len(scanned.skipped)  # scan logged its skips

        root_ids = self.catalog.ensure_roots(str(r) for r in root_paths)
        known = {}
        for root in root_ids:
            known.update(self.catalog.files_under(root))

        changed = self._unchanged_filter(scanned.files, known)
        videos: list[_Pending] = []
        copies: list[_Pending] = []
        self._index_files(changed, root_ids, videos, copies)
        for number, item in enumerate(videos):
            if self.cancel.is_set():
                break
            self.progress(Progress("video", number, len(videos), str(item.file.path)))
            self._embed_video(item, root_ids)
        if not self.cancel.is_set():
            self._link_copies(copies, root_ids)
        report = self.report
        if self.cancel.is_set():
            report.cancelled = True
            report.copies = len(self._new_links)  # a rename is only sure once all is seen
        else:
            seen = {str(f.path) for f in scanned.files}
            gone = self._remove_missing(known, seen, [s.path for s in scanned.skipped])
            self._count_renames(gone)
        accounted = report.indexed + report.unchanged + len(self._new_links) + len(report.skipped)
        report.left = report.scanned - accounted

    def _vectors(self) -> VectorStore:
        """The vector store, once the model is ready (its dimension is part of the store's
        shape); on first use the collection records the embedder."""
        if self._store is None:
            if self._loading is not None:
                self.report.model_seconds += self._loading.wait()
            started = time.perf_counter()
            dim = self.embedder.dim
            runtime = getattr(self.embedder, "runtime", None)
            self.collection.register_embedder(self.model_name, self.key, dim, runtime)
            self._store = self.collection.vectors(self.key, dim)
            self.report.store_seconds += time.perf_counter() - started
        return self._store

    def _link_copies(self, copies: list[_Pending], root_ids: dict[str, int]) -> None:
        """Copies found in this run share their first copy's fate: linked once it is embedded,
        skipped (and counted) with the reason when it could not be."""
        for copy in copies:
            content_id = self.catalog.embedded_content(copy.hash, self.key)
            if content_id is not None:
                self._link_file(copy.file, copy.hash, content_id, root_ids)
            else:
                first = self._first_of.get(copy.hash, "another file")
                self._skip(copy.file.path, f"same content as {first}, which was skipped")

    def _unchanged_filter(
        self, files: Iterable[ScannedFile], known: dict[str, FileRow]
    ) -> list[ScannedFile]:
        todo = []
        for file in files:
            row = known.get(str(file.path))
            if (
                row is not None
                and row.size == file.size
                and row.mtime_ns == file.mtime_ns
                and self.catalog.is_embedded(row.content_id, self.key)
            ):
                self.report.unchanged += 1
            else:
                todo.append(file)
        return todo

    def _hash(self, file: ScannedFile) -> str:
        with self._cpu("hash"):
            return content_hash(file.path)

    def _new_images(
        self,
        files: list[ScannedFile],
        root_ids: dict[str, int],
        videos: list[_Pending],
        copies: list[_Pending],
    ) -> Iterator[_Pending]:
        """Hash `files` in worker threads and yield the images whose content is new; content
        already embedded is linked at once, new videos and copies of new content found in this
        run are collected (copies are linked once their first copy is embedded)."""
        hashed = decode_ahead(
            files,
            self._hash,
            workers=self.workers,
            max_in_flight=self._in_flight(),
            on_wait=self._waited,
        )
        with closing(hashed):
            for number, (file, result) in enumerate(hashed):
                if self.cancel.is_set():
                    return
                if number % 64 == 0:
                    self.progress(Progress("embed", self._settled, len(files), str(file.path)))
                if isinstance(result, BaseException):
                    self._skip(file.path, f"unreadable: {result}")
                    self._settled += 1
                    continue
                content_id = self.catalog.embedded_content(result, self.key)
                if content_id is not None:
                    started = time.perf_counter()
                    self._link_file(file, result, content_id, root_ids)
                    self.report.store_seconds += time.perf_counter() - started
                    self._settled += 1
                    continue
                pending = _Pending(file, result)
                if result in self._first_of:
                    copies.append(pending)
                    self._settled += 1
                    continue
                self._first_of[result] = str(file.path)
                if self._loading is None:  # something to embed: the model is needed now
                    self._loading = _ModelLoad(self.embedder)
                if file.kind == "image":
                    yield pending
                else:
                    videos.append(pending)
                    self._settled += 1

    def _in_flight(self) -> int:
        """Files hashed, or images decoded, ahead of the model: two batches, so that a whole
        batch is ready when the model finishes the one before."""
        return max(2 * self.batch_size, 8)

    def _waited(self, seconds: float) -> None:
        self.report.wait_seconds += seconds

    def _link_file(
        self, file: ScannedFile, digest: str, content_id: int, root_ids: dict[str, int]
    ) -> None:
        if self.catalog.link_file(_new_file(file, digest, root_ids), content_id):
            self._new_links.append(content_id)
        else:
            self.report.unchanged += 1

    def _skip(self, path: Path | str, reason: str) -> None:
        log.warning("skipped %s: %s", path, reason)
        self.report.skipped.append(Skipped(str(path), reason))

    def _prepare(self, item: _Pending) -> _Prepared:
        """The model's input for an image, and when it was taken by its EXIF."""
        with self._cpu("decode"):
            image = open_image(item.file.path, target_size=self.embedder.image_size)
            return self.embedder.prepare_image(image), taken_at(image)

    def _index_files(
        self,
        files: list[ScannedFile],
        root_ids: dict[str, int],
        videos: list[_Pending],
        copies: list[_Pending],
    ) -> None:
        """Hash, link, decode and embed `files` in one stream; `videos` and `copies` receive
        the files left for later."""
        batch: list[tuple[_Pending, _Prepared]] = []
        self.progress(Progress("embed", 0, len(files)))
        decoded = decode_ahead(
            self._new_images(files, root_ids, videos, copies),
            self._prepare,
            workers=self.workers,
            max_in_flight=self._in_flight(),
            on_wait=self._waited,
        )
        with closing(decoded):
            for item, result in decoded:
                if self.cancel.is_set():
                    break
                if isinstance(result, BaseException):
                    reason = str(result) if isinstance(result, ImgFinderError) else repr(result)
                    self._skip(item.file.path, reason)
                    self._settled += 1
                    continue
                batch.append((item, result))
                if len(batch) >= self.batch_size:
                    self._commit_images(batch, root_ids)
                    batch = []
                    self.progress(Progress("embed", self._settled, len(files), str(item.file.path)))
        if batch and not self.cancel.is_set():
            self._commit_images(batch, root_ids)
        self.progress(Progress("embed", self._settled, len(files)))

    def _commit_images(
        self, batch: list[tuple[_Pending, _Prepared]], root_ids: dict[str, int]
    ) -> None:
        store = self._vectors()
        started = time.perf_counter()
        vectors = self.embedder.embed_prepared(np.stack([prepared for _, (prepared, _) in batch]))
        embedded = time.perf_counter()
        rows = store.append(vectors)
        files = [_new_file(item.file, item.hash, root_ids) for item, _ in batch]
        taken = [when for _, (_, when) in batch]
        self.catalog.add_images(files, rows.tolist(), self.key, taken)
        self.report.embed_seconds += embedded - started
        self.report.store_seconds += time.perf_counter() - embedded
        self.report.indexed += len(batch)
        self.report.embedded += len(batch)
        self._settled += len(batch)

    def _embed_video(self, item: _Pending, root_ids: dict[str, int]) -> None:
        from imgfinder.media.frames import embed_video_frames

        store = self._vectors()
        started = time.perf_counter()
        try:
            frames = embed_video_frames(
                item.file.path,
                self.embedder,
                sampling=self.video,
                batch_size=self.batch_size,
                thumbs_dir=self.collection.thumbs_dir() / item.hash,
                cancel=self.cancel,
            )
        except StorageError:
            raise
        except ImgFinderError as exc:
            self._skip(item.file.path, str(exc))
            return
        except Exception as exc:  # a decoder's surprise must not end the whole run
            log.debug("video %s failed", item.file.path, exc_info=True)
            self._skip(item.file.path, f"unreadable video: {type(exc).__name__}: {exc}")
            return
        finally:
            self.report.video_seconds += time.perf_counter() - started
        if self.cancel.is_set():
            return
        if not frames.times:
            self._skip(item.file.path, "no frames: the video has no decodable frames")
            return
        started = time.perf_counter()
        rows = store.append(frames.vectors)
        self.catalog.add_video(
            _new_file(item.file, item.hash, root_ids),
            (frames.width, frames.height, frames.duration),
            frames.times,
            rows.tolist(),
            self.key,
        )
        self.report.store_seconds += time.perf_counter() - started
        self.report.indexed += 1
        self.report.frames += len(frames.times)

    def _count_renames(self, gone: list[FileRow]) -> None:
        """A new path whose content lost a path this run is a rename, not a removal and an
        addition; new paths of content that lost none are copies."""
        vanished = Counter(row.content_id for row in gone)
        for content_id in self._new_links:
            if vanished[content_id] > 0:
                vanished[content_id] -= 1
                self.report.renamed += 1
            else:
                self.report.copies += 1
        self.report.removed = len(gone) - self.report.renamed

    def _remove_missing(
        self, known: dict[str, FileRow], seen: set[str], skipped: list[str]
    ) -> list[FileRow]:
        """Forget files that vanished; drop contents no file points at any more.

        A skipped path may be a whole folder (unreadable) or a root that is not mounted: files
        under it are kept, since they were not seen to be gone.
        """
        kept = tuple(skipped) + tuple(path.rstrip(os.sep) + os.sep for path in skipped)
        gone = [path for path in known if path not in seen and not path.startswith(kept)]
        started = time.perf_counter()
        orphans = self.catalog.remove_files(gone)
        self.report.store_seconds += time.perf_counter() - started
        for orphan_hash, kind in orphans:  # frame thumbnails of videos that are gone
            if kind == "video":
                shutil.rmtree(self.collection.thumbs_dir() / orphan_hash, ignore_errors=True)
        return [known[path] for path in gone]


def _new_file(file: ScannedFile, digest: str, root_ids: dict[str, int]) -> NewFile:
    return NewFile(str(file.path), root_ids[str(file.root)], file.size, file.mtime_ns, digest)
