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

from imgfinder.catalog import FileRow
from imgfinder.collection import Collection
from imgfinder.embedders.base import Embedder
from imgfinder.errors import ImgFinderError
from imgfinder.media.frames import VideoSampling
from imgfinder.media.images import decode_ahead, open_image
from imgfinder.media.scan import ScannedFile, Skipped, content_hash, scan

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
    """What one run did; `added_items` / `removed_items` feed the indexer."""

    scanned: int = 0
    indexed: int = 0
    unchanged: int = 0
    renamed: int = 0
    #: new paths of content already indexed that no vanished path explains (duplicates)
    copies: int = 0
    removed: int = 0
    frames: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    skipped: list[Skipped] = field(default_factory=list)
    added_items: list[int] = field(default_factory=list)
    removed_items: list[int] = field(default_factory=list)

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
    """One indexing run of `roots` into `collection` with `embedder`."""

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
        self.report.scanned = len(scanned.files)
        for skipped in scanned.skipped:
            log.info("skipped %s: %s", skipped.path, skipped.reason)

        with self.catalog.transaction() as db:
            root_ids = {str(r): self.catalog.root_id(db, str(r)) for r in root_paths}
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
        for copy in copies:
            content_id = self.catalog.content_by_hash(copy.hash)
            if content_id is not None and self.catalog.is_embedded(content_id, self.key):
                self._link_file(copy.file, content_id, root_ids)
        if self.cancel.is_set():
            self.report.cancelled = True
            self.report.copies = len(self._new_links)  # a rename is only sure once all is seen
        else:
            seen = {str(f.path) for f in scanned.files}
            gone = self._remove_missing(known, seen, [s.path for s in scanned.skipped])
            self._count_renames(gone)
        self.report.seconds = time.perf_counter() - started
        return self.report

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
        claimed: set[str] = set()
        for done, (file, result) in enumerate(
            decode_ahead(files, lambda f: content_hash(f.path), workers=self.workers)
        ):
            if done % 64 == 0:
                self.progress(Progress("hash", done, len(files), str(file.path)))
            if isinstance(result, BaseException):
                self._skip(file.path, f"unreadable: {result}")
                continue
            content_id = self.catalog.content_by_hash(result)
            if content_id is not None and self.catalog.is_embedded(content_id, self.key):
                self._link_file(file, content_id, root_ids)
                continue
            if result in claimed:
                copies.append(_Pending(file, result))
                continue
            claimed.add(result)
            pending.append(_Pending(file, result))
        return pending, copies

    def _link_file(self, file: ScannedFile, content_id: int, root_ids: dict[str, int]) -> None:
        with self.catalog.transaction() as db:
            previous = db.execute(
                "SELECT content_id FROM files WHERE path=?", (str(file.path),)
            ).fetchone()
            self._upsert_file(db, file, content_id, root_ids)
        if previous is None:
            self._new_links.append(content_id)
        else:
            self.report.unchanged += 1

    @staticmethod
    def _upsert_file(db, file: ScannedFile, content_id: int, root_ids: dict[str, int]) -> None:
        db.execute(
            "INSERT INTO files(path, root_id, content_id, size, mtime_ns) VALUES (?,?,?,?,?) "
            "ON CONFLICT(path) DO UPDATE SET content_id=excluded.content_id, "
            "size=excluded.size, mtime_ns=excluded.mtime_ns",
            (str(file.path), root_ids[str(file.root)], content_id, file.size, file.mtime_ns),
        )

    def _skip(self, path: Path | str, reason: str) -> None:
        log.warning("skipped %s: %s", path, reason)
        self.report.skipped.append(Skipped(str(path), reason))

    def _prepare(self, item: _Pending) -> np.ndarray:
        image = open_image(item.file.path, target_size=self.embedder.image_size)
        return self.embedder.prepare_image(image)

    def _embed_images(self, items: list[_Pending], root_ids: dict[str, int]) -> None:
        batch: list[tuple[_Pending, np.ndarray]] = []
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
        self, batch: list[tuple[_Pending, np.ndarray]], root_ids: dict[str, int]
    ) -> None:
        vectors = self.embedder.embed_prepared(np.stack([prepared for _, prepared in batch]))
        rows = self.store.append(vectors)
        with self.catalog.transaction() as db:
            for (item, _), row in zip(batch, rows, strict=True):
                content_id = self._content_id(db, item.hash, "image")
                existing = db.execute(
                    "SELECT id FROM items WHERE content_id=? LIMIT 1", (content_id,)
                ).fetchone()
                if existing is None:
                    item_id = db.execute(
                        "INSERT INTO items(content_id, t) VALUES (?, NULL)", (content_id,)
                    ).lastrowid
                else:
                    item_id = existing[0]
                self._store_vector(db, item_id, content_id, int(row))
                self._upsert_file(db, item.file, content_id, root_ids)
                self.report.indexed += 1
            self.catalog.bump_generation(db)

    def _store_vector(self, db, item_id: int, content_id: int, row: int) -> None:
        db.execute(
            "INSERT OR REPLACE INTO vectors(item_id, embedder_key, row) VALUES (?,?,?)",
            (item_id, self.key, row),
        )
        db.execute(
            "INSERT OR IGNORE INTO embedded(content_id, embedder_key) VALUES (?, ?)",
            (content_id, self.key),
        )
        self.report.added_items.append(int(item_id))

    @staticmethod
    def _content_id(db, content_hash: str, kind: str) -> int:
        row = db.execute("SELECT id FROM contents WHERE hash=?", (content_hash,)).fetchone()
        if row is not None:
            return int(row[0])
        return int(
            db.execute(
                "INSERT INTO contents(hash, kind) VALUES (?, ?)", (content_hash, kind)
            ).lastrowid
        )

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
        with self.catalog.transaction() as db:
            content_id = self._content_id(db, item.hash, "video")
            db.execute(
                "UPDATE contents SET width=?, height=?, duration=? WHERE id=?",
                (frames.width, frames.height, frames.duration, content_id),
            )
            old = [
                r[0] for r in db.execute("SELECT id FROM items WHERE content_id=?", (content_id,))
            ]
            self.report.removed_items.extend(old)
            db.execute("DELETE FROM items WHERE content_id=?", (content_id,))
            for t, row in zip(frames.times, rows, strict=True):
                item_id = db.execute(
                    "INSERT INTO items(content_id, t) VALUES (?, ?)", (content_id, float(t))
                ).lastrowid
                self._store_vector(db, item_id, content_id, int(row))
            self._upsert_file(db, item.file, content_id, root_ids)
            self.catalog.bump_generation(db)
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
        with self.catalog.transaction() as db:
            for path in gone:
                db.execute("DELETE FROM files WHERE path=?", (path,))
            orphans = {
                content_id: (content_hash, kind)
                for content_id, content_hash, kind in db.execute(
                    "SELECT c.id, c.hash, c.kind FROM contents c WHERE NOT EXISTS "
                    "(SELECT 1 FROM files f WHERE f.content_id = c.id)"
                )
            }
            for content_id in orphans:
                items = [
                    r[0]
                    for r in db.execute("SELECT id FROM items WHERE content_id=?", (content_id,))
                ]
                self.report.removed_items.extend(items)
                db.execute("DELETE FROM contents WHERE id=?", (content_id,))
            if gone or orphans:
                self.catalog.bump_generation(db)
        for orphan_hash, kind in orphans.values():  # frame thumbnails of videos that are gone
            if kind == "video":
                shutil.rmtree(self.collection.thumbs_dir() / orphan_hash, ignore_errors=True)
        return [known[path] for path in gone]


def _item_ids(db, content_id: int) -> list[int]:
    return [int(r[0]) for r in db.execute("SELECT id FROM items WHERE content_id=?", (content_id,))]
