"""SearchModel: one embedder, one collection, one indexer; returns Hits sorted by cosine."""

from __future__ import annotations

import io
import json
import logging
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgfinder.atomic import atomic_write_text
from imgfinder.collection import Collection, resolve_collection
from imgfinder.embedders.base import Embedder
from imgfinder.errors import ConfigError, MediaError, ModelError
from imgfinder.indexers.base import Indexer
from imgfinder.indexers.registry import INDEXERS, create_indexer
from imgfinder.indexing import Indexer as IndexRun
from imgfinder.indexing import IndexReport, Progress
from imgfinder.media.frames import VideoSampling
from imgfinder.media.images import open_image

log = logging.getLogger(__name__)

STAMP = "stamp.json"
#: frames of one video closer than this many sampling intervals merge into one moment
MOMENT_GAP = 1.5
#: a frame joins a moment when it scores within this fraction of the moment's best frame
MOMENT_MARGIN = 0.1
#: what a search can be limited to
KINDS = ("image", "video")


@dataclass(frozen=True)
class Hit:
    """One result: an image, or a moment [t_start, t_end] of a video."""

    item_id: int
    path: str
    score: float
    kind: str
    t_start: float | None = None
    t_end: float | None = None
    t_best: float | None = None

    @property
    def video_path(self) -> str | None:
        return self.path if self.kind == "video" else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SearchModel:
    """Ties an embedder to a collection and an indexer.

    `model` is a registry key (e.g. "demo") or an Embedder instance; when None, the model the
    collection was built with is used, and "demo" for a new collection.
    """

    def __init__(
        self,
        collection: str | Path | Collection,
        model: str | Embedder | None = None,
        *,
        indexer: str = "exact",
        indexer_params: dict[str, Any] | None = None,
        model_dir: Path | None = None,
        runtime: str = "auto",
        video: VideoSampling | None = None,
        create: bool = True,
        model_name: str | None = None,
    ) -> None:
        if indexer not in INDEXERS:
            raise ConfigError(f"unknown indexer '{indexer}'; choose one of: {', '.join(INDEXERS)}")
        if isinstance(collection, Collection):
            self.collection = collection
        else:
            self.collection = Collection(resolve_collection(collection), create=create)
        if isinstance(model, Embedder):
            self.embedder = model
            self.model_name = model_name or type(model).__name__
        else:
            from imgfinder.embedders.registry import create_embedder, default_model_key

            self.model_name = model or self.collection.manifest.get("model") or default_model_key()
            runtime = self.collection.runtime_for(self.model_name, runtime)
            self.embedder = create_embedder(self.model_name, model_dir=model_dir, runtime=runtime)
        self.indexer_name = indexer
        self.indexer_params = dict(indexer_params or {})
        self.video = video or VideoSampling()
        self._index: Indexer | None = None
        self._lock = threading.RLock()

    # -- indexing ---------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[str | Path],
        progress: Callable[[Progress], None] | None = None,
        *,
        batch_size: int = 32,
        workers: int = 2,
        cancel: threading.Event | None = None,
    ) -> IndexReport:
        """Index new and changed files under `paths`; forget files that vanished."""
        run = IndexRun(
            self.collection,
            self.embedder,
            self.model_name,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            cancel=cancel,
            video=self.video,
        )
        report = run.run(paths)
        with self._lock:
            if self._index is not None:
                self._index.remove(np.asarray(report.removed_items, dtype=np.int64))
                self._add_items(self._index, report.added_items)
                self._save_index(self._index)
        return report

    # -- the vector index -------------------------------------------------------------------

    def vector_index(self) -> Indexer:
        """The indexer, loaded or rebuilt from stored vectors (never re-embedded) on first use."""
        with self._lock:
            if self._index is None:
                self._index = self._open_index()
            return self._index

    def _index_dir(self) -> Path:
        return self.collection.index_dir(self.embedder.key, self.indexer_name, self.indexer_params)

    def _open_index(self) -> Indexer:
        directory = self._index_dir()
        stamp = self._stamp()
        try:
            saved = json.loads((directory / STAMP).read_text())
            if saved == stamp:
                return Indexer.load(directory)
        except (OSError, ValueError, KeyError):
            pass
        except Exception as exc:  # a damaged saved index is rebuilt, never fatal
            log.warning("rebuilding index %s: %s", directory, exc)
        index = create_indexer(self.indexer_name, self.embedder.dim, **self.indexer_params)
        rows = self.collection.catalog.vector_rows(self.embedder.key)
        if rows:
            item_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            store = self.collection.vectors(self.embedder.key, self.embedder.dim)
            vectors = store.read(np.fromiter((r[1] for r in rows), dtype=np.int64))
            index.add(item_ids, vectors)
        self._save_index(index)
        return index

    def _add_items(self, index: Indexer, item_ids: Sequence[int]) -> None:
        if not item_ids:
            return
        wanted = set(int(i) for i in item_ids)
        rows = [r for r in self.collection.catalog.vector_rows(self.embedder.key) if r[0] in wanted]
        if rows:
            store = self.collection.vectors(self.embedder.key, self.embedder.dim)
            vectors = store.read(np.asarray([r[1] for r in rows], dtype=np.int64))
            index.add(np.asarray([r[0] for r in rows], dtype=np.int64), vectors)

    def _stamp(self) -> dict[str, Any]:
        return {
            "generation": self.collection.catalog.generation(),
            "embedder_key": self.embedder.key,
        }

    def _save_index(self, index: Indexer) -> None:
        directory = self._index_dir()
        index.save(directory)
        atomic_write_text(directory / STAMP, json.dumps(self._stamp()))

    # -- search -----------------------------------------------------------------------------

    def check_embedded(self) -> None:
        """Refuse to search vectors made by another model (they would be meaningless)."""
        keys = self.collection.catalog.embedder_keys()
        if keys and self.embedder.key not in keys:
            indexed = self.collection.runtime_of(self.model_name)
            if indexed and indexed != getattr(self.embedder, "runtime", indexed):
                raise ModelError(
                    f"collection '{self.collection.name}' was indexed by {self.model_name} on "
                    f"the {indexed} runtime; search it with runtime auto (or {indexed}), or "
                    f"index it again on this one"
                )
            raise ModelError(
                f"collection '{self.collection.name}' was indexed with "
                f"{', '.join(keys)}, not {self.embedder.key}; re-index it with this model "
                f"or pick the model it was built with"
            )

    def search_text(
        self, query: str, k: int = 20, threshold: float | None = None, kind: str | None = None
    ) -> list[Hit]:
        """Images and video moments matching a text query, best first."""
        return self.search_vector(self.encode_text(query), k, threshold, kind)

    def search_image(
        self,
        image: str | Path | bytes | Image.Image,
        k: int = 20,
        threshold: float | None = None,
        kind: str | None = None,
    ) -> list[Hit]:
        """Images and moments that look like `image` (a path, encoded bytes or PIL image)."""
        return self.search_vector(self.encode_image(image), k, threshold, kind)

    def encode_text(self, query: str) -> np.ndarray:
        """The query vector of a text, after checking the collection speaks this model."""
        if not query or not query.strip():
            raise ConfigError("the query is empty")
        if not any(unicodedata.category(char)[0] in "LNS" for char in query):
            raise ConfigError("the query has no words: punctuation alone describes nothing")
        self.check_embedded()
        return self.embedder.embed_texts([query.strip()])[0]

    def encode_image(self, image: str | Path | bytes | Image.Image) -> np.ndarray:
        """The query vector of an image (a path, encoded bytes or PIL image)."""
        self.check_embedded()
        if isinstance(image, bytes):
            image = open_image(io.BytesIO(image), target_size=self.embedder.image_size)
        elif isinstance(image, (str, Path)):
            try:
                image = open_image(Path(image), target_size=self.embedder.image_size)
            except MediaError as exc:
                raise MediaError(f"{image}: {exc}") from exc
        return self.embedder.embed_images([image])[0]

    def similar(
        self, item_id: int, k: int = 20, threshold: float | None = None, kind: str | None = None
    ) -> list[Hit]:
        """More like a stored item (an image or a video frame), excluding the item itself."""
        self.check_embedded()
        rows = dict(self.collection.catalog.vector_rows(self.embedder.key))
        if int(item_id) not in rows:
            raise ConfigError(f"no item {item_id} in collection '{self.collection.name}'")
        store = self.collection.vectors(self.embedder.key, self.embedder.dim)
        vector = store.read(np.asarray([rows[int(item_id)]]))[0]
        hits = self.search_vector(vector, k + 1, threshold, kind)
        return [h for h in hits if h.item_id != int(item_id)][:k]

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 20,
        threshold: float | None = None,
        kind: str | None = None,
    ) -> list[Hit]:
        """The shared tail of every search: top-k, threshold, video frames merged into moments,
        and only images or only videos when `kind` is "image" or "video"."""
        if k < 1:
            raise ConfigError("k must be at least 1")
        if kind not in (None, *KINDS):
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        query = np.asarray(vector, dtype=np.float32)[None, :]
        # frames of one video compete for the same slots, and a filter drops some: ask for more
        # than k, and for more again until k hits are found or nothing is left to ask for
        fetch = k * 4 + 16
        while True:
            with self._lock:  # indexing may be updating the same index
                index = self.vector_index()
                fetch = min(len(index), fetch)
                if fetch == 0:
                    return []
                scores, ids = index.search(query, fetch)
            pairs = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            exhausted = len(pairs) < fetch or fetch == len(index)
            if threshold is not None:
                exhausted = exhausted or pairs[-1][0] < threshold
                pairs = [(s, i) for s, i in pairs if s >= threshold]
            items = self.collection.catalog.items(i for _, i in pairs)
            if kind is not None:
                pairs = [(s, i) for s, i in pairs if i in items and items[i].kind == kind]
            hits = _merge_moments(pairs, items, self.video.every * MOMENT_GAP)
            if len(hits) >= k or exhausted:
                return hits[:k]
            fetch *= 4

    # -- info -------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        catalog = self.collection.catalog
        return {
            "collection": str(self.collection.dir),
            "model": self.model_name,
            "embedder_key": self.embedder.key,
            "dim": self.embedder.dim,
            "indexer": self.indexer_name,
            "indexer_params": self.indexer_params,
            "roots": catalog.roots(),
            **catalog.counts(),
            "embedder_keys": catalog.embedder_keys(),
        }

    def close(self) -> None:
        self.collection.close()


def _merge_moments(pairs: list[tuple[float, int]], items: dict, gap: float) -> list[Hit]:
    """Images pass through; frames of one video merge into moments around their peaks.

    A moment grows from its best frame to neighbouring frames (no further apart than `gap`
    seconds) that score nearly as well, so a red circle on screen from 3 s to 5 s becomes one
    moment [3, 5] and the grey frames around it do not stretch it.
    """
    hits: list[Hit] = []
    by_video: dict[int, list[tuple[float, float, int, str]]] = {}
    for score, item_id in pairs:
        item = items.get(item_id)
        if item is None or item.path is None:
            continue
        if item.kind == "video" and item.t is not None:
            by_video.setdefault(item.content_id, []).append((item.t, score, item_id, item.path))
        else:
            hits.append(Hit(item_id, item.path, score, item.kind))
    for frames in by_video.values():
        frames.sort()
        free = [True] * len(frames)
        for seed in sorted(range(len(frames)), key=lambda i: -frames[i][1]):
            if not free[seed]:
                continue
            cutoff = frames[seed][1] - MOMENT_MARGIN * max(abs(frames[seed][1]), 0.05)
            first = last = seed
            while _joins(frames, free, first - 1, first, gap, cutoff):
                first -= 1
            while _joins(frames, free, last + 1, last, gap, cutoff):
                last += 1
            for index in range(first, last + 1):
                free[index] = False
            hits.append(_moment(frames[first : last + 1]))
    hits.sort(key=lambda h: -h.score)
    return hits


def _joins(
    frames: list, free: list[bool], index: int, edge: int, gap: float, cutoff: float
) -> bool:
    return (
        0 <= index < len(frames)
        and free[index]
        and abs(frames[index][0] - frames[edge][0]) <= gap
        and frames[index][1] >= cutoff
    )


def _moment(group: list[tuple[float, float, int, str]]) -> Hit:
    best = max(group, key=lambda f: f[1])
    return Hit(
        item_id=best[2],
        path=best[3],
        score=best[1],
        kind="video",
        t_start=group[0][0],
        t_end=group[-1][0],
        t_best=best[0],
    )
