"""Incremental indexing: scan, hash what is new, decode ahead in threads, embed in batches.

Each batch is committed on its own (vectors fsynced first), so a run killed at any moment
resumes where it stopped; files whose size and mtime are unchanged cost one stat.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """A progress report: `phase` is "scan", "hash", "embed" or "video"."""

    phase: str
    done: int
    total: int
    current: str = ""


@dataclass
class IndexReport:
    """What one run did. Every scanned entry ends in exactly one count: `scanned` equals
    indexed + unchanged + renamed + copies + skipped + left (left: not reached, when cancelled)."""

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
        }


def _reason_family(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


ProgressFn = Callable[[Progress], None]


@dataclass
class _Pending:
    file: ScannedFile
    hash: str


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
        collection.register_embedder(
            model_name, self.key, embedder.dim, getattr(embedder, "runtime", None)
        )
        self.store = collection.vectors(self.key, embedder.dim)

    def run(self, roots: Sequence[str | Path]) -> IndexReport:
        started = time.perf_counter()
        root_paths = [Path(os.path.abspath(Path(r).expanduser())) for r in roots]
        self.progress(Progress("scan", 0, 0))
        scanned = scan(root_paths)
        self.report.skipped.extend(scanned.skipped)
        self.report.scanned = len(scanned.files) + len(scanned.skipped)
        for skipped in scanned.skipped:
            log.info("skipped %s: %s", skipped.path, skipped.reason)

        root_ids = self.catalog.ensure_roots(str(r) for r in root_paths)
        known = {}
        for root in root_ids:
            known.update(self.catalog.files_under(root))

        changed = self._unchanged_filter(scanned.files, known)
        pending, copies = self._hash_and_link(changed, root_ids)
        images = [p for p in pending if p.file.kind == "image"]
        videos = [p for p in pending if p.file.kind == "video"]
        self._embed_images(images, root_ids)
        for number, item in enumerate(videos):
            if self.cancel.is_set():
                break
            self.progress(Progress("video", number, len(videos), str(item.file.path)))
            self._embed_video(item, root_ids)
        if not self.cancel.is_set():
            self._link_copies(copies, root_ids)
        if self.cancel.is_set():
            self.report.cancelled = True
            self.report.copies = len(self._new_links)  # a rename is only sure once all is seen
        else:
            seen = {str(f.path) for f in scanned.files}
            gone = self._remove_missing(known, seen, [s.path for s in scanned.skipped])
            self._count_renames(gone)
        report = self.report
        accounted = report.indexed + report.unchanged + len(self._new_links) + len(report.skipped)
        report.left = report.scanned - accounted
        report.seconds = time.perf_counter() - started
        return report

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
        self, files: Iterable[ScannedFile], known: dict[str, object]
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

    def _hash_and_link(
        self, files: list[ScannedFile], root_ids: dict[str, int]
    ) -> tuple[list[_Pending], list[_Pending]]:
        """Hash new or touched files; link those whose content is already embedded.

        Returns the files to embed and, separately, copies of those files found in this run,
        which are linked once their first copy is embedded.
        """
        pending: list[_Pending] = []
        copies: list[_Pending] = []
        for done, (file, result) in enumerate(
            decode_ahead(files, lambda f: content_hash(f.path), workers=self.workers)
        ):
            if done % 64 == 0:
                self.progress(Progress("hash", done, len(files), str(file.path)))
            if isinstance(result, BaseException):
                self._skip(file.path, f"unreadable: {result}")
                continue
            content_id = self.catalog.embedded_content(result, self.key)
            if content_id is not None:
                self._link_file(file, result, content_id, root_ids)
                continue
            if result in self._first_of:
                copies.append(_Pending(file, result))
                continue
            self._first_of[result] = str(file.path)
            pending.append(_Pending(file, result))
        return pending, copies

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

    def _prepare(self, item: _Pending) -> tuple[np.ndarray, str | None]:
        """The model's input for an image, and when it was taken by its EXIF."""
        image = open_image(item.file.path, target_size=self.embedder.image_size)
        return self.embedder.prepare_image(image), taken_at(image)

    def _embed_images(self, items: list[_Pending], root_ids: dict[str, int]) -> None:
        batch: list[tuple[_Pending, tuple[np.ndarray, str | None]]] = []
        done = 0
        self.progress(Progress("embed", 0, len(items)))
        in_flight = max(2 * self.batch_size, 8)
        for item, result in decode_ahead(
            items, self._prepare, workers=self.workers, max_in_flight=in_flight
        ):
            if self.cancel.is_set():
                break
            done += 1
            if isinstance(result, BaseException):
                reason = str(result) if isinstance(result, ImgFinderError) else repr(result)
                self._skip(item.file.path, reason)
                continue
            batch.append((item, result))
            if len(batch) >= self.batch_size:
                self._commit_images(batch, root_ids)
                batch = []
                self.progress(Progress("embed", done, len(items), str(item.file.path)))
        if batch and not self.cancel.is_set():
            self._commit_images(batch, root_ids)
        self.progress(Progress("embed", done, len(items)))

    def _commit_images(
        self,
        batch: list[tuple[_Pending, tuple[np.ndarray, str | None]]],
        root_ids: dict[str, int],
    ) -> None:
        vectors = self.embedder.embed_prepared(np.stack([prepared for _, (prepared, _) in batch]))
        rows = self.store.append(vectors)
        files = [_new_file(item.file, item.hash, root_ids) for item, _ in batch]
        taken = [when for _, (_, when) in batch]
        self.catalog.add_images(files, rows.tolist(), self.key, taken)
        self.report.indexed += len(batch)

    def _embed_video(self, item: _Pending, root_ids: dict[str, int]) -> None:
        from imgfinder.media.frames import embed_video_frames

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
        if self.cancel.is_set():
            return
        if not frames.times:
            self._skip(item.file.path, "no frames: the video has no decodable frames")
            return
        rows = self.store.append(frames.vectors)
        self.catalog.add_video(
            _new_file(item.file, item.hash, root_ids),
            (frames.width, frames.height, frames.duration),
            frames.times,
            rows.tolist(),
            self.key,
        )
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
        orphans = self.catalog.remove_files(gone)
        for orphan_hash, kind in orphans:  # frame thumbnails of videos that are gone
            if kind == "video":
                shutil.rmtree(self.collection.thumbs_dir() / orphan_hash, ignore_errors=True)
        return [known[path] for path in gone]


def _new_file(file: ScannedFile, digest: str, root_ids: dict[str, int]) -> NewFile:
    return NewFile(str(file.path), root_ids[str(file.root)], file.size, file.mtime_ns, digest)
