"""SearchModel: one embedder, one collection, one indexer; returns Hits sorted by cosine."""

from __future__ import annotations

import io
import json
import logging
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgfinder.atomic import atomic_write, atomic_write_text
from imgfinder.classes import ClassFile, Labels, nearest_label
from imgfinder.config import resolve_collection
from imgfinder.embedders.augment import embed_augmented
from imgfinder.embedders.base import Embedder
from imgfinder.errors import (
    CatalogError,
    ConfigError,
    ImgFinderError,
    MediaError,
    ModelError,
    NotFoundError,
)
from imgfinder.filters import Filter, as_filter
from imgfinder.indexers.base import Indexer, innermost
from imgfinder.indexers.common import exact_search
from imgfinder.indexers.qdrant import QdrantIndexer, payload
from imgfinder.indexers.registry import (
    ANY_BACKEND,
    AUTO,
    CHOICES,
    choose_indexer,
    create_indexer,
)
from imgfinder.indexers.reranked import RerankedIndexer
from imgfinder.indexing import Indexer as IndexRun
from imgfinder.indexing import IndexReport, Progress
from imgfinder.media.frames import VideoSampling
from imgfinder.media.images import open_image
from imgfinder.queries import check_text
from imgfinder.relevance import (
    MODALITIES,
    NULL_TEXTS,
    Calibration,
    Form,
    check_min_confidence,
    form_name,
    mixed_null,
    null_images,
)
from imgfinder.store.catalog import Snapshot
from imgfinder.store.collection import STAMP, Collection

log = logging.getLogger(__name__)

#: frames of one video closer than this many sampling intervals merge into one moment
MOMENT_GAP = 1.5
#: a frame joins a moment when it scores within this fraction of the moment's best frame
MOMENT_MARGIN = 0.1
#: filters read from the catalog, kept per generation: a page's reruns ask for the same one
_FILTER_CACHE = 8
#: stored vectors read at a time while an index is built or brought up to date
_BUILD_CHUNK = 65536


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
    #: the share of unrelated queries whose best match this hit beats (`imgfinder.relevance`)
    confidence: float | None = None
    #: when it was taken by its EXIF, else its file's modification time (local ISO text)
    taken: str | None = None

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
        if indexer not in CHOICES:
            raise ConfigError(f"unknown indexer '{indexer}'; choose one of: {', '.join(CHOICES)}")
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
        #: what was asked for: a backend, or `auto` (chosen by size when the index is built)
        self.indexer_asked = indexer
        self.indexer_name = indexer
        self.indexer_params = dict(indexer_params or {})
        self._recall: tuple[int, float] | None = None
        self.video = video or VideoSampling()
        self._index: Indexer | None = None
        #: the catalog's rows that `_index` holds, and the generation they are
        self._held = Snapshot.empty()
        self._generation = -1
        #: the generation of the saved index on disk when it holds exactly what memory holds
        self._saved_as: int | None = None
        self._lock = threading.RLock()
        self._calibration: Calibration | None = None
        self._passing: dict[tuple[int, Filter, Labels | None], np.ndarray] = {}
        #: (generation, labels) and the stored items of each label then
        self._classes: tuple[tuple[int, Labels], dict[str, np.ndarray]] | None = None

    # -- indexing ---------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[str | Path],
        progress: Callable[[Progress], None] | None = None,
        *,
        batch_size: int = 32,
        workers: int = 2,
        cancel: threading.Event | None = None,
        wait: bool = True,
        on_wait: Callable[[], None] | None = None,
        video: VideoSampling | None = None,
    ) -> IndexReport:
        """Index new and changed files under `paths`; forget files that vanished. `video`
        overrides this model's frame sampling for this run.

        The collection's writer lock is held for the whole run: a second writer waits (calling
        `on_wait` once) or, with `wait=False`, raises BusyError at once.
        """
        lock = self.collection.writer()
        lock.acquire(wait=wait, on_wait=on_wait)
        try:
            self.collection.sweep_temp_files()
            run = IndexRun(
                self.collection,
                self.embedder,
                self.model_name,
                batch_size=batch_size,
                workers=workers,
                progress=progress,
                cancel=cancel,
                video=video or self.video,
            )
            report = run.run(paths)
            with self._lock:
                if self._refresh():
                    self._save_index(self._generation)
            try:
                self.classes()  # new items get their class while the run still holds the lock
            except ImgFinderError as exc:  # what was indexed stays; the next search retries
                log.warning("the new items of %s have no class yet: %s", self.collection.dir, exc)
        finally:
            lock.release()
        return report

    # -- the vector index -------------------------------------------------------------------

    def vector_index(self) -> Indexer:
        """The indexer for the newest committed generation: loaded or built from stored vectors
        (never re-embedded) on first use, brought up to date when another process (or thread)
        has committed since; the check is one small SQLite read."""
        with self._lock:
            stale = self._index is None or self.collection.catalog.generation() != self._generation
            if stale and self._refresh():
                self._save_if_writer_free()
            assert self._index is not None
            return self._index

    def _index_dir(self) -> Path:
        return self.collection.index_dir(self.embedder.key, self.indexer_name, self.indexer_params)

    def _refresh(self) -> bool:
        """Catch up with the catalog: a saved index of exactly this generation is loaded, else
        the difference from what is held is applied (or everything is built, the first time).
        True when the saved index on disk is not of this generation (worth saving)."""
        snapshot = self.collection.catalog.snapshot(self.embedder.key)
        store = self.collection.vectors(self.embedder.key, self.embedder.dim)
        last = int(snapshot.row_numbers.max()) if len(snapshot.ids) else -1
        if last >= len(store):
            raise CatalogError(
                f"the vector file {store.path} holds {len(store)} rows but the catalog refers "
                f"to row {last}: it is damaged; run imgfinder repair"
            )
        if self._index is None:
            if self.indexer_asked == AUTO:
                name, chosen = choose_indexer(len(snapshot.ids))
                kept = {k: v for k, v in self.indexer_params.items() if k in ANY_BACKEND}
                self.indexer_name, self.indexer_params = name, {**chosen, **kept}
            loaded = self._load_saved(snapshot.generation)
            if loaded is not None:
                self._lend(loaded, snapshot.ids)  # a failure here leaves nothing held
                self._index, self._held = loaded, snapshot
                self._generation = self._saved_as = snapshot.generation
                return False
            built = create_indexer(self.indexer_name, self.embedder.dim, **self.indexer_params)
            self._lend(built, snapshot.ids[:0])
            self._drop_strays(built, snapshot.ids)
            self._index, self._held, self._saved_as = built, Snapshot.empty(), None
        gone, added = snapshot.changes_from(self._held)
        if len(gone):
            self._index.remove(gone)
        rows = snapshot.row_numbers[np.searchsorted(snapshot.ids, added)]
        for start in range(0, len(added), _BUILD_CHUNK):  # bounded memory at any size
            vectors = store.read(rows[start : start + _BUILD_CHUNK])
            self._index.add(added[start : start + _BUILD_CHUNK], vectors)
        backend = innermost(self._index)
        if isinstance(backend, QdrantIndexer) and len(self._held.ids):
            moved = self.collection.catalog.changed_items(self.embedder.key, self._generation)
            moved = np.setdiff1d(np.intersect1d(moved, snapshot.ids), added)
            if len(moved):  # files moved or dates changed, vectors the same
                backend.refresh_payload(moved)
        if len(gone) or len(added):
            self._saved_as = None  # what is on disk no longer holds what memory holds
        self._held, self._generation = snapshot, snapshot.generation
        return self._saved_as != snapshot.generation

    def _drop_strays(self, index: Indexer, ids: np.ndarray) -> None:
        """Remove the points a persistent backend held before this build that the catalog
        does not (a Qdrant server or folder filled by a process whose items are gone since,
        or by a run that stopped before saving): each would take a slot of every search's
        top k. Items another process committed since `ids` were read are kept: the catalog
        is asked again after the server has been listed."""
        backend = innermost(index)
        if not isinstance(backend, QdrantIndexer) or not len(backend):
            return
        stray = np.setdiff1d(backend.stored_ids(), ids)
        if len(stray):
            known = self.collection.catalog.items(stray.tolist())
            stray = stray[~np.isin(stray, np.fromiter(known, dtype=np.int64))]
        if len(stray):
            log.info("removing %d points the catalog does not hold", len(stray))
            index.remove(stray)

    def _lend(self, index: Indexer, held: np.ndarray) -> None:
        """A re-ranking index scores its candidates with the collection's stored vectors; a
        Qdrant one keeps where each item is as its payload, written for those of the `held`
        items that have none (a snapshot of points keeps no payload)."""
        if isinstance(index, RerankedIndexer):
            index.read_vectors_from(self._stored_vectors)
        backend = innermost(index)
        if isinstance(backend, QdrantIndexer):
            backend.read_payload_from(self._payloads)
            missing = np.intersect1d(backend.without_payload(), held) if len(held) else held
            if len(missing):
                backend.refresh_payload(missing)

    def _payloads(self, ids: np.ndarray) -> list[dict[str, Any]]:
        """The Qdrant payload of each item: where its files are, its kind and dates."""
        placements = self.collection.catalog.placements(ids.tolist())
        bodies = []
        for item in ids.tolist():
            found = placements.get(item)
            if found is None:  # gone since the snapshot: the next refresh removes it
                bodies.append({"item": item})
                continue
            bodies.append(
                payload(item, found.kind, found.content_id, found.t, found.taken, found.files)
            )
        return bodies

    def _stored_vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows of the vector file for `ids` (the caller holds the lock, so the index
        and `_held` are of one generation); NaN rows for ids the catalog does not hold, which a
        shared Qdrant server can keep after another process rebuilt from scratch."""
        held = self._held
        rows = np.full((len(ids), self.embedder.dim), np.nan, dtype=np.float32)
        if not len(held.ids):
            return rows
        at = np.minimum(np.searchsorted(held.ids, ids), len(held.ids) - 1)
        known = held.ids[at] == ids
        if not known.all():
            log.debug("%d candidates are not in the catalog", int((~known).sum()))
        if known.any():
            store = self.collection.vectors(self.embedder.key, self.embedder.dim)
            rows[known] = store.read(held.row_numbers[at[known]])
        return rows

    def _load_saved(self, generation: int) -> Indexer | None:
        """The saved index, if it was built from exactly `generation` with this embedder."""
        directory = self._index_dir()
        if self._saved_generation() != generation:
            return None
        try:
            loaded = Indexer.load(directory)
        except Exception as exc:  # a damaged saved index is rebuilt, never fatal
            log.warning("rebuilding index %s: %s", directory, exc)
            return None
        # a writer saving meanwhile removes the stamp first and stamps a newer generation
        # last: the same stamp after the load means the files loaded were that generation's
        return loaded if self._saved_generation() == generation else None

    def _saved_generation(self) -> int | None:
        """The generation the saved index on disk was built from (None: none, or not ours)."""
        try:
            stamp = json.loads((self._index_dir() / STAMP).read_text())
            if stamp.get("embedder_key") == self.embedder.key:
                return int(stamp["generation"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return None

    def _stamp(self, generation: int) -> dict[str, Any]:
        return {"generation": generation, "embedder_key": self.embedder.key}

    def _save_if_writer_free(self) -> None:
        """Save for the next process, but only while no writer can commit meanwhile and only if
        the catalog is still at the generation the index holds; otherwise keep it in memory."""
        lock = self.collection.writer()
        if not lock.try_acquire():
            return
        try:
            if self.collection.catalog.generation() == self._generation:
                self._save_index(self._generation)
        finally:
            lock.release()

    def _save_index(self, generation: int) -> None:
        """Stamp the saved index with `generation`, writing the index itself only when what is
        on disk is not what memory holds (a rename moves the generation, not the vectors). The
        old stamp goes first, so a save cut short leaves no stamp and is rebuilt. A full disk
        keeps the index in memory only."""
        if self._index is None:
            return
        directory = self._index_dir()
        on_disk = self._saved_generation()
        known = self._saved_as is not None and on_disk == self._saved_as
        try:
            if not (known and on_disk == generation):
                (directory / STAMP).unlink(missing_ok=True)
                if not known:
                    self._index.save(directory)
                atomic_write_text(directory / STAMP, json.dumps(self._stamp(generation)))
            self._saved_as = generation
        except (OSError, ImgFinderError) as exc:
            log.warning("kept the index in memory only; cannot save it to %s: %s", directory, exc)

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
        self,
        query: str,
        k: int = 20,
        threshold: float | None = None,
        only: str | Filter | None = None,
        *,
        min_confidence: float | None = None,
    ) -> list[Hit]:
        """Images and video moments matching a text query, best first."""
        vector = self.encode_text(query)
        return self.search_vector(vector, k, threshold, only, min_confidence=min_confidence)

    def search_image(
        self,
        image: str | Path | bytes | Image.Image,
        k: int = 20,
        threshold: float | None = None,
        only: str | Filter | None = None,
        *,
        min_confidence: float | None = None,
    ) -> list[Hit]:
        """Images and moments that look like `image` (a path, encoded bytes or PIL image)."""
        vector = self.encode_image(image)
        return self.search_vector(
            vector, k, threshold, only, min_confidence=min_confidence, modality="image"
        )

    def encode_text(self, query: str) -> np.ndarray:
        """The query vector of a text, after checking the collection speaks this model."""
        text = check_text(self.embedder, query)
        self.check_embedded()
        return self.embedder.embed_texts([text])[0]

    def encode_image(
        self, image: str | Path | bytes | Image.Image, *, augment: bool = False
    ) -> np.ndarray:
        """The query vector of an image (a path, encoded bytes or PIL image); `augment`
        averages it over mirrored and closer views (see embedders/augment.py)."""
        self.check_embedded()
        if isinstance(image, bytes):
            image = open_image(io.BytesIO(image), target_size=self.embedder.image_size)
        elif isinstance(image, (str, Path)):
            try:
                image = open_image(Path(image), target_size=self.embedder.image_size)
            except MediaError as exc:
                raise MediaError(f"{image}: {exc}") from exc
        if augment:
            return embed_augmented(self.embedder, image)
        return self.embedder.embed_images([image])[0]

    def item_vector(self, item_id: int) -> np.ndarray:
        """The stored vector of an item (an image or a video frame)."""
        self.check_embedded()
        with self._lock:
            self.vector_index()
            row = self._held.row(int(item_id))
        if row is None:
            raise NotFoundError(f"no item {item_id} in collection '{self.collection.name}'")
        store = self.collection.vectors(self.embedder.key, self.embedder.dim)
        return store.read(np.asarray([row]))[0]

    def similar(
        self,
        item_id: int,
        k: int = 20,
        threshold: float | None = None,
        only: str | Filter | None = None,
        *,
        min_confidence: float | None = None,
    ) -> list[Hit]:
        """More like a stored item (an image or a video frame), excluding the item itself."""
        vector = self.item_vector(item_id)
        hits = self.search_vector(
            vector, k + 1, threshold, only, min_confidence=min_confidence, modality="image"
        )
        return [h for h in hits if h.item_id != int(item_id)][:k]

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 20,
        threshold: float | None = None,
        only: str | Filter | None = None,
        *,
        min_confidence: float | None = None,
        modality: str | Form = "text",
    ) -> list[Hit]:
        """The shared tail of every search: top-k, threshold, video frames merged into moments,
        and only what passes `only` (a `Filter`, or just a kind: "image" or "video"), filtered
        inside the search. Each hit carries its confidence against unrelated queries of
        `modality` ("text", or "image" for image and similar-item queries, or a combined
        query's `Form`); `min_confidence` drops hits below it."""
        if k < 1:
            raise ConfigError("k must be at least 1")
        if threshold is not None and not -1.0 <= threshold <= 1.0:  # NaN fails this too
            raise ConfigError(
                f"the threshold is a cosine similarity between -1 and 1, not {threshold}"
            )
        only = as_filter(only)
        name = form_name(modality)
        query = np.asarray(vector, dtype=np.float32)[None, :]
        calibration = self.calibration(modality)
        if min_confidence is not None and calibration is not None:
            floor = calibration.threshold(query[0], check_min_confidence(min_confidence), name)
            if floor > 1.0:
                return []
            threshold = floor if threshold is None else max(threshold, floor)
        hits = self._top(query, k, threshold, only)
        if calibration is None or not hits:
            return hits
        scores = np.asarray([hit.score for hit in hits])
        confidences = calibration.confidence(query[0], scores, name)
        return [
            replace(hit, confidence=round(float(c), 4))
            for hit, c in zip(hits, confidences, strict=True)
        ]

    def _top(
        self, query: np.ndarray, k: int, threshold: float | None, only: Filter | None
    ) -> list[Hit]:
        # frames of one video compete for the same slots: ask for more than k, and for more
        # again until k hits are found or nothing is left to ask for
        fetch = k * 4 + 16
        while True:
            with self._lock:  # indexing may be updating the same index
                index = self.vector_index()
                allowed = self._passing_held(only)
                total = len(index) if allowed is None else len(allowed)
                fetch = min(total, fetch)
                if fetch == 0:
                    return []
                if allowed is not None:
                    assert only is not None  # a filter that narrows nothing lets all through
                    scores, ids = index.search_where(query, fetch, only, allowed)
                else:
                    scores, ids = index.search(query, fetch)
            pairs = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            exhausted = len(pairs) < fetch or fetch == total
            if threshold is not None:
                exhausted = exhausted or pairs[-1][0] < threshold
                pairs = [(s, i) for s, i in pairs if s >= threshold]
            items = self.collection.catalog.items(i for _, i in pairs)
            hits = _merge_moments(pairs, items, self.video.every * MOMENT_GAP)
            if len(hits) >= k or exhausted:
                return hits[:k]
            fetch *= 4

    def passing(self, only: Filter | None) -> np.ndarray | None:
        """The ids of the stored items that pass `only` (None when it filters nothing), read
        from the catalog once per generation and filter."""
        with self._lock:
            if only is not None and only.narrows:  # nothing to bring up to date otherwise
                self.vector_index()
            return self._passing_held(only)

    def _passing_held(self, only: Filter | None) -> np.ndarray | None:
        """`passing` for the generation the index holds (the caller brought it up to date)."""
        if only is None or not only.narrows:
            return None
        with self._lock:
            labels = self.collection.labels() if only.label is not None else None
            key = (self._generation, only, labels)
            if key not in self._passing:
                self._passing[key] = self._matching(only)
                while len(self._passing) > _FILTER_CACHE:
                    self._passing.pop(next(iter(self._passing)))
            return self._passing[key]

    def _matching(self, only: Filter) -> np.ndarray:
        """The ids passing `only`: the catalog answers all but the class, which the classes do."""
        catalog = self.collection.catalog
        if only.label is None:
            return catalog.matching_items(self.embedder.key, only)
        rest = replace(only, label=None)
        found = catalog.matching_items(self.embedder.key, rest) if rest.narrows else None
        classes = self.classes()
        if only.label not in classes:
            known = ", ".join(classes) or "none (set them with imgfinder labels set)"
            raise ConfigError(f"this collection has no class {only.label!r}; its classes: {known}")
        picked = classes[only.label]
        return picked if found is None else np.intersect1d(picked, found, assume_unique=True)

    def classes(self) -> dict[str, np.ndarray]:
        """Each of the collection's labels and the ids of the stored items nearest it ({}
        without labels); items not classified yet are, and kept on disk, once per generation."""
        labels = self.collection.labels()
        if labels is None:
            return {}
        with self._lock:
            self.vector_index()
            held, generation = self._held, self._generation
            if self._classes is not None and self._classes[0] == (generation, labels):
                return self._classes[1]
            kept = ClassFile(self.collection.classes_file(self.embedder.key, labels), labels)
            missing = kept.missing(held.ids)
            if len(missing):
                label_vectors = self.embedder.embed_texts(labels.texts())
                store = self.collection.vectors(self.embedder.key, self.embedder.dim)
                rows = held.row_numbers[np.searchsorted(held.ids, missing)]
                found = [
                    nearest_label(store.read(rows[start : start + _BUILD_CHUNK]), label_vectors)
                    for start in range(0, len(rows), _BUILD_CHUNK)
                ]
                try:
                    kept.add(missing, np.concatenate(found))
                except OSError as exc:  # a read-only collection still gets its classes
                    log.warning("cannot keep the classes in %s: %s", kept.path, exc)
            members = kept.members(held.ids)
            self._classes = ((generation, labels), members)
            return members

    def calibration(self, modality: str | Form = "text") -> Calibration | None:
        """What unrelated queries of `modality` (or of a combined query's form) find in this
        collection (None while it is empty): measured on first use and again when the
        collection has grown or shrunk by a tenth, kept on disk so that the next process need
        not embed them again (a combined form's is measured from those, in memory)."""
        name = form_name(modality)
        with self._lock:
            index = self.vector_index()
            if not len(index):
                return None
            if self._calibration is None:
                self._calibration = _calibration_from(self._saved_calibration())
            held = self._calibration
            if held is None or held.stale(len(index)):
                held = Calibration(self._centroid(), {}, len(index))
            if name not in held.null:
                # a combined form is measured from its terms' unrelated queries: those are
                # measured (and kept on disk) first, so a new form never embeds them again
                bases = [name] if name in MODALITIES else sorted({m for m, _ in modality})
                for base in (m for m in bases if m not in held.null):
                    vectors = self._null_vectors(base)
                    held = held.with_null(base, vectors, index.search(vectors, 1)[0][:, 0])
                    self._save_calibration(held, base, vectors)
                if name not in MODALITIES:
                    pools = {m: self._null_vectors(m) for m in bases}
                    vectors = mixed_null(modality, pools)  # type: ignore[arg-type]
                    held = held.with_null(name, vectors, index.search(vectors, 1)[0][:, 0])
            self._calibration = held
            return held

    def _centroid(self) -> np.ndarray:
        """The mean stored vector, read in chunks so that memory stays bounded."""
        store = self.collection.vectors(self.embedder.key, self.embedder.dim)
        rows = self._held.row_numbers
        total = np.zeros(self.embedder.dim, dtype=np.float64)
        for start in range(0, len(rows), 65536):
            total += store.read(rows[start : start + 65536]).sum(axis=0, dtype=np.float64)
        return total / max(1, len(rows))

    def _null_vectors(self, modality: str) -> np.ndarray:
        saved = self._saved_calibration().get(f"null_{modality}_vectors")
        if saved is not None and saved.shape[1:] == (self.embedder.dim,):
            return saved
        if modality == "text":
            return self.embedder.embed_texts(list(NULL_TEXTS))
        return self.embedder.embed_images(null_images())

    def _saved_calibration(self) -> dict[str, np.ndarray]:
        return _read_npz(self.collection.calibration_file(self.embedder.key))

    def _save_calibration(self, held: Calibration, modality: str, vectors: np.ndarray) -> None:
        """Keep the measured distributions and the embedded unrelated queries on disk; the
        file is a cache, so failing to write it only costs the next process some time."""
        path = self.collection.calibration_file(self.embedder.key)
        arrays = {k: v for k, v in self._saved_calibration().items() if k.endswith("_vectors")}
        arrays[f"null_{modality}_vectors"] = vectors
        arrays |= {f"null_{m}": null for m, null in held.null.items() if m in MODALITIES}
        arrays |= {"centroid": held.centroid, "items": np.asarray(held.items)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda out: np.savez(out, **arrays))
        except OSError as exc:
            log.warning("kept the calibration in memory only; cannot save %s: %s", path, exc)

    def stored(self, kind: str | None = None) -> tuple[list[int], list[str], np.ndarray]:
        """(item ids, paths, float32 vectors) of every stored item (of one kind), as embedded:
        what evaluations compare against, without touching the catalog or the vector file."""
        with self._lock:
            self.vector_index()
            held = self._held
        items = self.collection.catalog.items(held.ids.tolist())
        keep = [i for i in held.ids.tolist() if i in items and kind in (None, items[i].kind)]
        store = self.collection.vectors(self.embedder.key, self.embedder.dim)
        vectors = store.read(held.row_numbers[np.searchsorted(held.ids, keep)])
        return keep, [items[i].path or "" for i in keep], vectors

    def recall(self, sample: int = 50) -> float:
        """recall@10 of this index against exact search, measured with `sample` stored items
        as queries (their own row left out) once per generation; 1.0 for the exact index."""
        with self._lock:
            index = self.vector_index()
            held, generation = self._held, self._generation
            exact = self.indexer_name == "exact" and not self.indexer_params.get("pca")
            if exact or not len(held.ids):
                return 1.0
            if self._recall is not None and self._recall[0] == generation:
                return self._recall[1]
            store = self.collection.vectors(self.embedder.key, self.embedder.dim)
            picked = np.random.default_rng(0).choice(
                len(held.ids), min(sample, len(held.ids)), replace=False
            )
            queries = store.read(held.row_numbers[picked])
            found = index.search(queries, 11)[1]
        truth = exact_search(store.mapped(), held.ids, queries, 11, held.row_numbers)[1]
        recall = float(
            np.mean(
                [
                    len((set(f) & set(t)) - {held.ids[p]}) / max(1, len(set(t) - {held.ids[p]}))
                    for f, t, p in zip(found, truth, picked, strict=True)
                ]
            )
        )
        self._recall = (generation, recall)
        return recall

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
            "indexer_asked": self.indexer_asked,
            "recall_at_10": round(self.recall(), 3),
            "roots": catalog.roots(),
            **catalog.counts(),
            "embedder_keys": catalog.embedder_keys(),
        }

    def close(self) -> None:
        self.collection.close()


def _calibration_from(saved: dict[str, np.ndarray]) -> Calibration | None:
    if "centroid" not in saved or "items" not in saved:
        return None
    null = {m: saved[f"null_{m}"] for m in MODALITIES if f"null_{m}" in saved}
    return Calibration(saved["centroid"], null, int(saved["items"]))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a saved calibration; nothing when it is missing or damaged."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {name: saved[name] for name in saved.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if path.exists():
            log.warning("measuring the calibration again; cannot read %s: %s", path, exc)
        return {}


def _merge_moments(pairs: list[tuple[float, int]], items: dict, gap: float) -> list[Hit]:
    """Images pass through; frames of one video merge into moments around their peaks.

    A moment grows from its best frame to neighbouring frames (no further apart than `gap`
    seconds) that score nearly as well, so a red circle on screen from 3 s to 5 s becomes one
    moment [3, 5] and the grey frames around it do not stretch it.
    """
    hits: list[Hit] = []
    by_video: dict[int, list[tuple[float, float, int, str, str | None]]] = {}
    for score, item_id in pairs:
        item = items.get(item_id)
        if item is None or item.path is None:
            continue
        if item.kind == "video" and item.t is not None:
            frame = (item.t, score, item_id, item.path, item.taken)
            by_video.setdefault(item.content_id, []).append(frame)
        else:
            hits.append(Hit(item_id, item.path, score, item.kind, taken=item.taken))
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


def _moment(group: list[tuple[float, float, int, str, str | None]]) -> Hit:
    best = max(group, key=lambda f: f[1])
    return Hit(
        item_id=best[2],
        path=best[3],
        score=best[1],
        kind="video",
        t_start=group[0][0],
        t_end=group[-1][0],
        t_best=best[0],
        taken=best[4],
    )
