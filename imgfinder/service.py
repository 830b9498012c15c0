"""The one UI-free facade every shell calls: the page, the CLI and the HTTP API.

It keeps collections, embedders and vector indexes loaded once per process (Streamlit serves
sessions from parallel threads, the API from a thread pool), runs indexing in background
threads while searches go on, and hands the shells plain data; what they say is theirs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from imgfinder.classes import DEFAULT_PROMPT, Labels
from imgfinder.config import COLLECTION_NAME, EMBEDDER_FACTORY_ENV, NAME_RULE, Settings
from imgfinder.embedders.base import Embedder
from imgfinder.embedders.framing import CROP, check_framing, framed, framing_of_key
from imgfinder.embedders.onnx_runtime import parity_summary
from imgfinder.embedders.registry import (
    RUNTIMES,
    ModelInfo,
    create_embedder,
    default_model_key,
    list_models,
    missing_message,
    pull,
)
from imgfinder.embedders.runtimes import PACKAGES
from imgfinder.errors import BusyError, ConfigError, ImgFinderError, MediaError, NotFoundError
from imgfinder.explain import MAP_SIDE, METHODS, RelevanceMap, relevance_map
from imgfinder.filters import Filter, as_filter
from imgfinder.indexers.registry import (
    AUTO,
    AUTO_DESCRIPTION,
    DEFAULT_PARAMS,
    DESCRIPTIONS,
    INDEXERS,
    describe_indexer,
)
from imgfinder.indexing import IndexReport
from imgfinder.jobs import IndexJob, JobStatus, PullJob, PullStatus
from imgfinder.media.details import photo_details
from imgfinder.media.frames import VideoSampling
from imgfinder.media.images import decode_ahead, open_image
from imgfinder.media.served import is_under, open_indexed
from imgfinder.media.thumbs import (
    PREVIEW_SIZE,
    Inline,
    frame_thumbnail,
    image_thumbnail,
    inline,
)
from imgfinder.media.uploads import CheckedUpload, check_upload
from imgfinder.queries import NOT_WEIGHT, WITH_WEIGHT, check_text, check_weight, mix
from imgfinder.relevance import DEFAULT_CONFIDENCE, SCALES, Form
from imgfinder.repair import RepairReport
from imgfinder.repair import repair as repair_collection
from imgfinder.search import Hit, SearchModel
from imgfinder.store.catalog import Catalog
from imgfinder.store.collection import MANIFEST, Collection, list_collections, no_collection
from imgfinder.store.health import Problem
from imgfinder.store.health import check as check_collection
from imgfinder.textfmt import display_path
from imgfinder.watch import FolderWatch, WatchStatus

log = logging.getLogger(__name__)

#: where the threshold slider starts when no model is selected (each model has its own)
FALLBACK_THRESHOLD = 0.2
#: queries offered one click away on a collection that names none of its own
DEFAULT_EXAMPLES = ("собака на пляже", "a red car at night")
_QUERY_CACHE_SIZE = 128
_PRESENCE_TTL = 5.0
#: seconds without a file-system event before a watched folder is re-indexed (a copy of many
#: photos is one run)
WATCH_QUIET = 3.0

EmbedderFactory = Callable[[str, str], Embedder]


@dataclass(frozen=True)
class Selection:
    """Everything that decides which SearchModel answers: the sidebar's choices."""

    collection: str
    model: str
    runtime: str = "auto"
    indexer: str = "exact"
    params: tuple[tuple[str, Any], ...] = ()
    #: "crop", "pad", or "auto": the way the collection was indexed by this model
    framing: str = "auto"


@dataclass(frozen=True)
class Query:
    """A text query, an uploaded image, or "more like" a stored item; with other terms mixed
    in ("like this photo, but at night"; "red, not circle")."""

    kind: str
    text: str = ""
    data: bytes = field(default=b"", repr=False)
    item_id: int = -1
    #: (term, weight) pairs added to this query's vector; a negative weight means "not"
    terms: tuple[tuple[Query, float], ...] = ()
    #: an image query averaged over mirrored and closer views of itself
    augment: bool = False

    def plus(self, term: Query, weight: float = WITH_WEIGHT) -> Query:
        """This query, pulled toward `term` by `weight`."""
        return replace(self, terms=(*self.terms, (replace(term, terms=()), check_weight(weight))))

    def minus(self, term: Query, weight: float = NOT_WEIGHT) -> Query:
        """This query, pushed away from `term` by `weight`."""
        return self.plus(term, -check_weight(weight))

    def without(self, texts: Sequence[str], weight: float = NOT_WEIGHT) -> Query:
        """This query pushed away from each of `texts` (blank ones ignored), `weight` shared
        evenly between them: "red, not circle, square" pushes as hard as "red, not circle",
        so the not-terms never outweigh what was asked for."""
        terms = [text.strip() for text in texts if text.strip()]
        query = self
        for text in terms:
            query = query.minus(Query.for_text(text), check_weight(weight) / len(terms))
        return query

    @classmethod
    def for_text(cls, text: str) -> Query:
        return cls("text", text=text.strip())

    @classmethod
    def for_image(cls, data: bytes, augment: bool = False) -> Query:
        return cls("image", data=data, augment=augment)

    @classmethod
    def like(cls, item_id: int) -> Query:
        return cls("similar", item_id=int(item_id))

    @classmethod
    def for_image_file(cls, path: str | os.PathLike[str], augment: bool = False) -> Query:
        """An image on this machine (the CLI's --image): any format the library reads; read
        afresh each time, never cached."""
        return cls("file", text=os.fspath(path), augment=augment)

    @property
    def modality(self) -> str:
        """Which unrelated queries a query of this kind is measured against."""
        return "text" if self.kind == "text" else "image"

    @property
    def form(self) -> Form:
        """Which unrelated queries its confidence is measured against: ones mixed like it."""
        return ((self.modality, 1.0), *((term.modality, weight) for term, weight in self.terms))

    def cache_key(self) -> tuple[str, str, bool]:
        """What identifies one encoded text or image (its terms are encoded one by one)."""
        if self.kind == "image":
            return self.kind, hashlib.sha256(self.data).hexdigest(), self.augment
        return self.kind, self.text, self.augment


@dataclass(frozen=True)
class ModelCheck:
    """A model loaded and run here: its embedder key, dimension, and how a red-circle text
    scored against a red image (a sanity figure, not a benchmark)."""

    key: str
    embedder_key: str
    dim: int
    similarity: float
    parity: str = ""


@dataclass(frozen=True)
class Details:
    """What a viewer shows beside a result: the file's size and date from the catalog, a
    video's length, the other files holding the same picture, and a photo's pixels, camera,
    lens and exposure from its EXIF."""

    size: int | None = None
    taken: str | None = None
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    camera: str | None = None
    lens: str | None = None
    exposure: str | None = None
    copies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Estimate:
    """How much of a collection a model has still to index, and how long that takes here by
    the model's measured speed (None when it was not measured)."""

    files: int
    total: int
    images_per_s: float | None

    @property
    def seconds(self) -> float | None:
        return self.files / self.images_per_s if self.images_per_s else None


@dataclass(frozen=True)
class Moment:
    """One matching stretch of a video."""

    item_id: int
    score: float
    t_start: float
    t_end: float
    t_best: float


@dataclass(frozen=True)
class Result:
    """One card: an image, or a video with every moment of it that matched."""

    hit: Hit
    name: str
    moments: tuple[Moment, ...] = ()
    #: a video's length in seconds, for drawing its moments on a timeline (None when unknown)
    duration: float | None = None

    @property
    def best_item(self) -> int:
        """The item "more like this" starts from: the image, or the video's best moment."""
        if not self.moments:
            return self.hit.item_id
        return max(self.moments, key=lambda moment: moment.score).item_id


#: why a search found nothing: the collection is empty, has nothing of the kind asked for,
#: nothing passes the folder or date filter, the query matched nothing at all, nothing scored
#: above the cosine threshold, or nothing beat the minimum confidence (`Outcome.best_score` and
#: `best_confidence` tell how near the best came)
EMPTY_REASONS = (
    "nothing_indexed",
    "no_such_kind",
    "filtered_out",
    "nothing_similar",
    "below_threshold",
    "no_confident_match",
)


@dataclass
class Outcome:
    """What one search produced, how long each step took, and why it is empty if it is."""

    hits: list[Hit] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    encode_s: float = 0.0
    search_s: float = 0.0
    cached_query: bool = False
    #: one of EMPTY_REASONS when there are no hits; each shell words it
    empty: str = ""
    best_score: float | None = None
    best_confidence: float | None = None
    error: str = ""
    #: the runtime that answered, and its measured agreement with its reference (ONNX fp32
    #: with PyTorch, int8 with fp32); empty when not measured
    runtime: str = ""
    parity: str = ""
    #: the index that answered: the backend asked for, or the one `auto` chose
    indexer: str = ""


def load_factory(spec: str | None, model_dir: str | None = None) -> EmbedderFactory:
    """The registry's `create_embedder`, or the "module:function" named by `spec`."""
    if not spec:
        directory = Path(model_dir) if model_dir else None

        def from_registry(key: str, runtime: str) -> Embedder:
            return create_embedder(key, model_dir=directory, runtime=runtime)

        return from_registry
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ConfigError(f"{EMBEDDER_FACTORY_ENV} must look like module:function, not {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the embedder factory {spec!r}: {exc}") from exc


class Service:
    """Thread-safe: any number of sessions may search while collections are being indexed."""

    def __init__(self, settings: Settings, factory: EmbedderFactory | None = None) -> None:
        self.settings = settings
        self.indexes_dir = Path(settings.indexes_dir)
        #: an injected factory decides for itself which models it can build
        self._injected = factory is not None or settings.embedder_factory is not None
        self._factory = factory or load_factory(settings.embedder_factory, settings.model_dir)
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._embedders: dict[tuple[str, str], Embedder] = {}
        self._models: dict[Selection, SearchModel] = {}
        self._jobs: dict[str, IndexJob] = {}
        #: collection -> (its watch, the embedder key and roots it was started for)
        self._watches: dict[str, tuple[FolderWatch, tuple[str, list[str]]]] = {}
        self._watch_lock = threading.Lock()
        self._pulls: dict[str, PullJob] = {}
        self._queries: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._hashes: dict[tuple[str, int], str | None] = {}
        #: (collection, what) -> (generation, value) of summaries the page reads every rerun
        self._summaries: dict[tuple[str, str], tuple[int, Any]] = {}
        self._model_dir = Path(settings.model_dir) if settings.model_dir else None
        self._model_infos: list[ModelInfo] = []
        self._models_checked = -float("inf")

    # -- choices for the sidebar ------------------------------------------------------------

    def collections(self) -> list[Path]:
        """The default collection first (wherever it lives), then those in the indexes folder."""
        default = self.default_collection()
        if default is None:
            return list_collections(self.indexes_dir)
        others = [p for p in list_collections(self.indexes_dir) if p.resolve() != default.resolve()]
        return [default, *others]

    def default_collection(self) -> Path | None:
        if not self.settings.collection:
            return None
        return self.settings.collection_path(self.settings.collection)

    def named(self, name: str, *, paths: bool = False) -> Path:
        """The folder of an existing collection, by its name (the default one's too), or by
        its path when `paths` (the CLI, whose user owns the machine; never HTTP)."""
        default = self.default_collection()
        path = default if default is not None and default.name == name else None
        path = path or self.settings.collection_path(name, paths=paths)
        if not (path / MANIFEST).is_file():
            raise no_collection(path)
        return path

    def info(self, collection: str | Path) -> dict[str, Any]:
        """What a collection holds: counts, roots, the model it was built with and each
        embedder's vectors (model, dim, runtime)."""
        target = self.collection(collection)
        return {
            "name": target.name,
            "format_version": target.manifest.get("format_version"),
            "model": target.manifest.get("model"),
            "embedders": target.manifest.get("embedders", {}),
            "roots": self.roots(collection),
            **target.catalog.counts(),
        }

    def roots(self, collection: str | Path) -> list[str]:
        """The folders indexed into the collection, as text that can be shown."""
        return [display_path(root) for root in self.collection(collection).catalog.roots()]

    def delete_collection(self, collection: str | Path) -> None:
        """Remove a collection's folder (never the media it indexed); refused while indexing."""
        target = self.collection(collection)
        self._drop(target, lambda: shutil.rmtree(target.dir))

    def rename_collection(self, collection: str | Path, name: str) -> Path:
        """Give a collection in the indexes folder a new name; refused while it is indexed."""
        target = self.collection(collection)
        if not COLLECTION_NAME.match(name) or name in (".", ".."):
            raise ConfigError(f"a collection name uses {NAME_RULE}")
        new = self.indexes_dir / name
        if new.exists():
            raise ConfigError(f"there is already a collection {name!r}")
        self._drop(target, lambda: target.dir.rename(new))
        return new

    def _drop(self, target: Collection, then: Callable[[], object]) -> None:
        """Close a collection everywhere in this process and `then` move or remove its
        folder, holding its writer lock so that no index run is under way meanwhile."""
        key = str(target.dir)
        lock = target.writer()
        with self._lock:
            running = self._jobs.get(key)
            if (running is not None and running.status().running) or not lock.try_acquire():
                raise BusyError(f"{target.name} is being indexed; cancel that first")
            try:
                for selection in [s for s in self._models if s.collection == key]:
                    del self._models[selection]
                self._jobs.pop(key, None)
                target.close()
                del self._collections[key]
                then()
            finally:
                lock.release()

    def create_collection(self, name: str) -> Path:
        """A new, empty collection folder under the indexes folder."""
        if not COLLECTION_NAME.match(name) or name in (".", ".."):
            raise ConfigError(f"a collection name uses {NAME_RULE}")
        path = self.indexes_dir / name
        self.collection(path)
        return path

    def models(self) -> list[ModelInfo]:
        """The registry's ModelInfo list, each with `present` telling if it can load here.

        Presence costs a few stats per model, so it is re-checked every few seconds, not on
        every widget change; a model pulled meanwhile shows up without a restart.
        """
        now = time.monotonic()
        with self._lock:
            if now - self._models_checked > _PRESENCE_TTL:
                self._model_infos = list_models(self._model_dir)
                self._models_checked = now
            return self._model_infos

    def start_pull(self, key: str) -> PullStatus:
        """Download a model's files in the background (`pull_status` follows it)."""
        if self.model_info(key) is None:
            raise NotFoundError(f"there is no model {key!r} in the registry")
        with self._lock:
            running = self._pulls.get(key)
            if running is not None and running.status().running:
                return running.status()
            job = PullJob(key, self._model_dir, on_done=self._recheck_models)
            self._pulls[key] = job
        job.start()
        return job.status()

    def pull(self, key: str, progress: Callable[[int, int, str], None] | None = None) -> ModelInfo:
        """Download a model's files in the foreground (the CLI), telling `progress` each."""
        info = pull(key, model_dir=self._model_dir, progress=progress)
        self._recheck_models()
        return info

    def _recheck_models(self) -> None:
        """A finished download changes presence: the next `models()` looks again."""
        with self._lock:
            self._models_checked = -float("inf")

    def pull_status(self, key: str) -> PullStatus | None:
        with self._lock:
            job = self._pulls.get(key)
        return job.status() if job is not None else None

    def model_info(self, key: str) -> ModelInfo | None:
        return next((info for info in self.models() if info.key == key), None)

    def usable(self, info: ModelInfo) -> bool:
        """Whether a model can be loaded here, as far as can be told without loading it."""
        return bool(info.present) or self._injected

    def missing_message(self, key: str) -> str | None:
        """What a download would fetch, when the model's files are not here; else None."""
        info = self.model_info(key)
        if info is None:
            return f"there is no model {key!r} in the registry"
        return None if self.usable(info) else missing_message(info, self._model_dir)

    def estimate(self, selection: Selection) -> Estimate:
        """What indexing the collection with the selected model (and runtime) would do: the
        files it has not embedded yet (all of them for a model not downloaded) and the time."""
        info = self.model_info(selection.model)
        key = None
        if info is not None and self.usable(info):
            try:
                key = self.model(selection).embedder.key
            except ImgFinderError as exc:  # the search says why; count every file as to do
                log.info("no estimate for %s: %s", selection.model, exc)
        left, total = self._per_generation(  # the page asks on every rerun
            selection.collection, f"unembedded:{key}", lambda catalog: catalog.unembedded(key)
        )
        return Estimate(left, total, info.speed(selection.runtime) if info else None)

    def default_model(self, collection: str | Path | None = None) -> str:
        """The model a collection was built with when the registry knows it, else the demo."""
        built_with = self.collection(collection).manifest.get("model") if collection else None
        keys = {info.key for info in self.models()}
        return built_with if built_with in keys else default_model_key()

    @staticmethod
    def default_threshold(info: ModelInfo | None, scale: str = "cosine") -> float:
        """Where the threshold starts for a model: its own cosine, or the one confidence."""
        if scale == "confidence":
            return DEFAULT_CONFIDENCE
        return FALLBACK_THRESHOLD if info is None else info.threshold

    @staticmethod
    def runtimes() -> list[str]:
        """Runtimes whose package is installed here ("auto" always)."""
        return [
            name
            for name in RUNTIMES
            if name not in PACKAGES or importlib.util.find_spec(PACKAGES[name]) is not None
        ]

    @staticmethod
    def explain_methods() -> list[str]:
        """The relevance-map methods this install can run: gradients need torch."""
        torch = importlib.util.find_spec("torch") is not None
        return [method for method in METHODS if method != "gradcam" or torch]

    @staticmethod
    def indexers() -> dict[str, tuple[str, dict[str, Any]]]:
        """Indexer name -> (description, default parameters), and `auto`."""
        backends = {name: (DESCRIPTIONS[name], DEFAULT_PARAMS[name]) for name in INDEXERS}
        return {**backends, AUTO: (AUTO_DESCRIPTION, {})}

    # -- loaded once per process --------------------------------------------------------------

    def collection(self, path: str | Path) -> Collection:
        """One open Collection per folder, shared by every model and job that uses it."""
        key = str(Path(path).absolute())
        with self._lock:
            if key not in self._collections:
                self._collections[key] = Collection(key)
            return self._collections[key]

    def embedder(self, key: str, runtime: str, framing: str = CROP) -> Embedder:
        """Each model is loaded once (whatever its framing); loads are serialised so two
        sessions never race one."""
        with self._load_lock:
            if (key, runtime) not in self._embedders:
                self._embedders[(key, runtime)] = self._factory(key, runtime)
            return framed(self._embedders[(key, runtime)], framing)

    def model(self, selection: Selection) -> SearchModel:
        """The SearchModel for a sidebar selection; models and collections are shared."""
        with self._lock:
            found = self._models.get(selection)
        if found is not None:
            return found
        collection = self.collection(selection.collection)
        runtime = collection.runtime_for(selection.model, selection.runtime)
        embedder = self.embedder(selection.model, runtime, self._framing(collection, selection))
        params = dict(selection.params)
        where = {"location", "path", "url"} & set(params)
        if selection.indexer == "qdrant" and self.settings.qdrant_url and not where:
            params["url"] = self.settings.qdrant_url  # the server of a compose file
        if selection.indexer == "qdrant" and params.get("url") and "collection" not in params:
            params["collection"] = qdrant_collection(collection.name, embedder.key)
        with self._lock:
            if selection not in self._models:
                model = SearchModel(
                    collection,
                    embedder,
                    indexer=selection.indexer,
                    indexer_params=params,
                    model_name=selection.model,
                )
                self._models[selection] = model
            return self._models[selection]

    @staticmethod
    def _framing(collection: Collection, selection: Selection) -> str:
        """The selection's framing; "auto" is the one this model last indexed it with."""
        if selection.framing != "auto":
            return check_framing(selection.framing)
        latest = collection.latest_key(selection.model)
        return framing_of_key(latest) if latest else CROP

    def examples(self, collection: str | Path) -> list[str]:
        """Example queries for the empty search page: the collection's own, else generic ones."""
        own = self.collection(collection).manifest.get("examples")
        return [str(q) for q in own] if own else list(DEFAULT_EXAMPLES)

    def counts(self, collection: str | Path) -> dict[str, int]:
        return self.collection(collection).catalog.counts()

    def within(
        self,
        collection: str | Path,
        kind: str | None = None,
        folder: str | None = None,
        since: object = None,
        until: object = None,
        label: str | None = None,
    ) -> Filter:
        """A search filter, its folder absolute or relative to one of the collection's indexed
        folders (the first that has it); `label` is one of the collection's classes."""
        if folder and not os.path.isabs(os.path.expanduser(folder)):
            roots = self.collection(collection).catalog.roots()
            under = [os.path.join(root, folder) for root in roots]
            folder = next(
                (path for path in under if os.path.isdir(path)), under[0] if under else folder
            )
        return Filter(kind, folder, since, until, label)  # type: ignore[arg-type]

    def labels(self, collection: str | Path) -> Labels | None:
        """The labels the collection sorts its items into, if any."""
        return self.collection(collection).labels()

    def set_labels(
        self, collection: str | Path, names: Sequence[str], prompt: str = DEFAULT_PROMPT
    ) -> Labels | None:
        """Sort the collection's items into `names` (none: no classes); each item is given
        its class at its next search or indexing run."""
        labels = Labels(tuple(names), prompt) if names else None
        self.collection(collection).set_labels(labels)
        return labels

    def class_counts(self, selection: Selection) -> dict[str, int]:
        """How many stored items each of the collection's labels has, by the selection's
        model, in label order ({} without labels): the page's facets."""
        if self.labels(selection.collection) is None:
            return {}  # and no model is loaded for nothing
        return {name: len(ids) for name, ids in self.model(selection).classes().items()}

    def folders(self, collection: str | Path) -> list[str]:
        """Every folder, from the indexed ones down, that holds indexed files (itself or
        below), in name order: what a search can be limited to. Kept per generation: the
        page asks on every rerun, and reading every path of 10^5 files takes a tenth of a
        second."""
        return self._per_generation(collection, "folders", self._folders)

    def taken_span(self, collection: str | Path) -> tuple[date, date] | None:
        """The first and last day anything in the collection was taken (kept per
        generation, like `folders`)."""
        return self._per_generation(collection, "span", self._taken_span)

    def _per_generation(
        self, collection: str | Path, what: str, read: Callable[[Catalog], Any]
    ) -> Any:
        """`read(catalog)`, again only once the collection's generation has moved."""
        catalog = self.collection(collection).catalog
        key = (str(Path(collection).absolute()), what)
        generation = catalog.generation()
        with self._lock:
            held = self._summaries.get(key)
        if held is None or held[0] != generation:
            held = (generation, read(catalog))
            with self._lock:
                self._summaries[key] = held
        return held[1]

    @staticmethod
    def _folders(catalog: Catalog) -> list[str]:
        roots = set(catalog.roots())
        found: set[str] = set()
        for path in catalog.all_paths():
            folder = os.path.dirname(path)
            while folder not in found:
                found.add(folder)
                parent = os.path.dirname(folder)
                if folder in roots or parent == folder:
                    break
                folder = parent
        return sorted(found)

    def folder_label(self, collection: str | Path, folder: str) -> str:
        """A folder as "indexed folder's name/path below it", always printable."""
        root = _holding_root(folder, self.collection(collection).catalog.roots())
        if root is None:
            return display_path(folder)
        relative = os.path.relpath(folder, root)
        name = os.path.basename(root) or root
        return display_path(name if relative == "." else os.path.join(name, relative))

    @staticmethod
    def _taken_span(catalog: Catalog) -> tuple[date, date] | None:
        span = catalog.taken_span()
        if span is None:
            return None
        return date.fromisoformat(span[0][:10]), date.fromisoformat(span[1][:10])

    # -- search ---------------------------------------------------------------------------

    def search(
        self,
        selection: Selection,
        query: Query,
        k: int,
        threshold: float | None,
        only: str | Filter | None = None,
        *,
        scale: str = "cosine",
    ) -> Outcome:
        """`find`, with a library error as `Outcome.error` (one sentence) instead of raised."""
        try:
            return self.find(selection, query, k, threshold, only, scale=scale)
        except ImgFinderError as exc:
            return Outcome(error=_sentence(str(exc)))

    def find(
        self,
        selection: Selection,
        query: Query,
        k: int,
        threshold: float | None,
        only: str | Filter | None = None,
        *,
        scale: str = "cosine",
    ) -> Outcome:
        """Run one query through the library; raises its typed errors.

        `only` (a `Filter`, or just a kind: "image" or "video") limits the results by kind,
        folder and date; `threshold` is a cosine similarity or, with `scale="confidence"`, a
        minimum confidence.
        """
        only = as_filter(only)
        if scale not in SCALES:
            raise ConfigError(f"the scale is one of {', '.join(SCALES)}, not {scale!r}")
        cosine, confidence = (threshold, None) if scale == "cosine" else (None, threshold)
        outcome = Outcome()
        model = self.model(selection)
        started = time.perf_counter()
        vector, outcome.cached_query = self._query_vector(model, query)
        encoded = time.perf_counter()
        hits = self._hits(model, query, vector, k, cosine, only, confidence)
        outcome.encode_s = encoded - started
        outcome.search_s = time.perf_counter() - encoded
        outcome.hits = hits
        outcome.results = self._group(model, hits)
        outcome.runtime = str(getattr(model.embedder, "runtime", ""))
        outcome.indexer = describe_indexer(model.indexer_name, model.indexer_params)
        if parity := getattr(model.embedder, "parity", None):
            overlap = getattr(model.embedder, "top10_overlap", None)
            outcome.parity = parity_summary(outcome.runtime, parity, overlap)
        if not hits:
            outcome.empty = self._why_empty(model, threshold, only, scale)
            best = self._best(model, query, vector, only)
            if best is not None and outcome.empty in ("below_threshold", "no_confident_match"):
                outcome.best_score, outcome.best_confidence = best.score, best.confidence
        return outcome

    @staticmethod
    def _hits(
        model: SearchModel,
        query: Query,
        vector: np.ndarray,
        k: int,
        threshold: float | None,
        only: Filter | None,
        min_confidence: float | None = None,
    ) -> list[Hit]:
        """The library's search for a query vector; "more like" an item never finds the item."""
        extra = 1 if query.kind == "similar" else 0
        hits = model.search_vector(
            vector,
            k + extra,
            threshold,
            only,
            min_confidence=min_confidence,
            modality=query.form,
        )
        return [hit for hit in hits if hit.item_id != query.item_id][:k]

    def _query_vector(self, model: SearchModel, query: Query) -> tuple[np.ndarray, bool]:
        """The query's embedding with its terms mixed in, by the library's own checks; a
        repeated text or image (a slider moved) is not encoded again."""
        vector, cached = self._term_vector(model, query)
        if not query.terms:
            return vector, cached
        terms = []
        for term, weight in query.terms:
            term_vector, term_cached = self._term_vector(model, term)
            terms.append((term_vector, weight))
            cached = cached and term_cached
        return mix(vector, terms), cached

    def _term_vector(self, model: SearchModel, query: Query) -> tuple[np.ndarray, bool]:
        model.check_embedded()
        if query.kind == "similar":
            return model.item_vector(query.item_id), False
        if query.kind == "file":
            return model.encode_image(Path(query.text), augment=query.augment), False
        key = (model.embedder.key, *query.cache_key())
        with self._lock:
            if key in self._queries:
                self._queries.move_to_end(key)
                return self._queries[key], True
        if query.kind == "text":
            vector = model.encode_text(query.text)
        else:
            upload = self.check_upload(query.data, model.embedder.image_size)
            vector = model.encode_image(upload.image, augment=query.augment)
        with self._lock:
            self._queries[key] = vector
            while len(self._queries) > _QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        return vector, False

    @staticmethod
    def check_upload(data: bytes, target_size: int | None = None) -> CheckedUpload:
        """Validate an upload by content (size, magic bytes, pixel budget, clean decode)."""
        return check_upload(data, target_size=target_size)

    @staticmethod
    def _why_empty(
        model: SearchModel, threshold: float | None, only: Filter | None, scale: str
    ) -> str:
        if len(model.vector_index()) == 0:
            return "nothing_indexed"
        passing = model.passing(only)
        if only is not None and passing is not None and len(passing) == 0:
            if only == Filter(kind=only.kind):
                return "no_such_kind"
            return "filtered_out"
        if threshold is None:
            return "nothing_similar"
        return "no_confident_match" if scale == "confidence" else "below_threshold"

    @staticmethod
    def _best(
        model: SearchModel, query: Query, vector: np.ndarray, only: Filter | None
    ) -> Hit | None:
        """The closest hit with no cutoff, for saying how near the nearest came."""
        hits = Service._hits(model, query, vector, 1, None, only)
        return hits[0] if hits else None

    def _group(self, model: SearchModel, hits: list[Hit]) -> list[Result]:
        """One card per image and per video; a video's card carries all its moments."""
        catalog = model.collection.catalog
        roots = catalog.roots()
        cards: dict[str, Result] = {}
        for hit in hits:
            key = f"video:{hit.path}" if hit.kind == "video" else f"item:{hit.item_id}"
            moment: tuple[Moment, ...] = ()
            if hit.kind == "video":
                start = hit.t_start or 0.0
                moment = (
                    Moment(hit.item_id, hit.score, start, hit.t_end or start, hit.t_best or start),
                )
            if key in cards:
                card = cards[key]
                cards[key] = replace(card, moments=card.moments + moment)
            else:
                name = display_path(_display_name(hit.path, roots))
                facts = catalog.facts(hit.path) if hit.kind == "video" else None
                cards[key] = Result(hit, name, moment, facts.duration if facts else None)
        return [
            replace(card, moments=tuple(sorted(card.moments, key=lambda m: m.t_start)))
            for card in cards.values()
        ]

    # -- media for the page ---------------------------------------------------------------

    def thumbnail(self, collection: str | Path, hit: Hit, t: float | None = None) -> Path | None:
        """A small cached JPEG for a card (a video's frame at `t`, default its best)."""
        target = self.collection(collection)
        try:
            if hit.kind == "video":
                content = self._content_hash(target, hit.item_id)
                moment = t if t is not None else hit.t_best or 0.0
                return frame_thumbnail(target.thumbs_dir(), content, moment) if content else None
            with self._open_indexed(target, hit.path) as source:
                return image_thumbnail(target.thumbs_dir(), source, hit.path)
        except (ImgFinderError, OSError) as exc:
            log.info("no thumbnail for %s: %s", hit.path, exc)
            return None

    def thumbnails(self, collection: str | Path, hits: list[Hit]) -> dict[int, Path | None]:
        """Thumbnails for a page of results, two at a time: decoding releases the GIL, so a
        first visit to a page costs about half as long."""
        made = decode_ahead(hits, lambda hit: self.thumbnail(collection, hit), workers=2)
        return {hit.item_id: thumb for hit, thumb in made if not isinstance(thumb, Exception)}

    def pictures(self, collection: str | Path, hits: list[Hit]) -> dict[int, Inline]:
        """The thumbnails of a page of results as data URIs with their sizes, for a page
        that lays them out itself."""
        pictures: dict[int, Inline] = {}
        for item_id, path in self.thumbnails(collection, hits).items():
            if path is None:
                continue
            try:
                pictures[item_id] = inline(path)
            except (OSError, UnidentifiedImageError) as exc:  # that tile shows no preview
                log.info("no thumbnail at %s: %s", path, exc)
        return pictures

    def details(self, collection: str | Path, hit: Hit) -> Details:
        """A result's file facts; a photo's EXIF is read from the indexed file itself (its
        header only), and what cannot be read is left out."""
        target = self.collection(collection)
        facts = target.catalog.facts(hit.path)
        found = Details() if facts is None else Details(facts.size, facts.taken, facts.duration)
        copies = tuple(self.display_names(collection, target.catalog.copies_of(hit.path)))
        found = replace(found, copies=copies)
        if hit.kind != "image":
            return found
        try:
            with self._open_indexed(target, hit.path) as source:
                photo = photo_details(source)
        except (ImgFinderError, OSError) as exc:
            log.info("no details for %s: %s", hit.path, exc)
            return found
        return replace(
            found,
            taken=photo.taken or found.taken,
            width=photo.width,
            height=photo.height,
            camera=photo.camera,
            lens=photo.lens,
            exposure=photo.exposure,
        )

    def preview(self, collection: str | Path, path: str) -> Path | None:
        """A larger cached JPEG for the enlarged view; never the original file."""
        target = self.collection(collection)
        try:
            with self._open_indexed(target, path) as source:
                return image_thumbnail(target.thumbs_dir(), source, path, PREVIEW_SIZE)
        except (ImgFinderError, OSError) as exc:
            log.info("no preview for %s: %s", path, exc)
            return None

    def read_original(self, collection: str | Path, path: str) -> bytes:
        """Bytes of an original, read when the user asks to open it (not before), only while
        it is still the indexed file inside one of the collection's roots."""
        with self._open_indexed(self.collection(collection), path) as source:
            return source.read()

    def item(self, collection: str | Path, item_id: int) -> Hit:
        """A stored item as a Hit (score 1: it is itself), for its thumbnail or original."""
        found = self.collection(collection).catalog.items([item_id]).get(item_id)
        if found is None or found.path is None:
            raise NotFoundError(f"there is no item {item_id} in this collection")
        t = found.t
        return Hit(found.id, found.path, 1.0, found.kind, t, t, t)

    # -- relevance maps ---------------------------------------------------------------------

    def explain(
        self,
        selection: Selection,
        query: Query,
        item_id: int,
        method: str = "masks",
        budget: float | None = None,
    ) -> RelevanceMap:
        """Where in a stored item (an image, or a video's frame) its match with `query` lies;
        `budget` (seconds) caps the masking method's time with a slow model."""
        model = self.model(selection)
        hit = self.item(selection.collection, item_id)
        vector, _ = self._query_vector(model, query)
        if hit.kind == "video":
            frame = self.thumbnail(selection.collection, hit)
            if frame is None:
                raise NotFoundError(f"the frame of item {item_id} cannot be read")
            image = open_image(frame)
        else:
            with self._open_indexed(model.collection, hit.path) as source:
                image = open_image(source, target_size=MAP_SIDE)
        explainer = self._explainer(model.embedder, selection.model, method)
        return relevance_map(explainer, image, vector, method=method, budget=budget)

    def explain_file(
        self,
        key: str,
        runtime: str,
        query: Query,
        image: str | os.PathLike[str],
        method: str,
        budget: float | None = None,
    ) -> RelevanceMap:
        """A relevance map for any image file and a text or image-file query, with no collection
        (the CLI's `explain`); `budget` as in `explain`."""
        embedder = self.embedder(key, runtime)
        vectors = []
        for term in (replace(query, terms=()), *(term for term, _ in query.terms)):
            if term.kind == "text":
                vectors.append(embedder.embed_texts([check_text(embedder, term.text)])[0])
            elif term.kind == "file":
                vectors.append(embedder.embed_images([_read_image(term.text, MAP_SIDE)])[0])
            else:
                raise ConfigError("explain takes a text or an image file as its query")
        weights = [weight for _, weight in query.terms]
        vector = mix(vectors[0], list(zip(vectors[1:], weights, strict=True)))
        explainer = self._explainer(embedder, key, method)
        picture = _read_image(image, MAP_SIDE)
        return relevance_map(explainer, picture, vector, method=method, budget=budget)

    def _explainer(self, embedder: Embedder, key: str, method: str) -> Embedder:
        """The embedder a method runs on: the gradient one needs the model's PyTorch runtime."""
        if method == "gradcam" and getattr(embedder, "runtime", "") != "torch":
            return self.embedder(key, "torch")
        return embedder

    def display_name(self, collection: str | Path, path: str) -> str:
        """A path relative to the collection root that holds it, always printable."""
        return self.display_names(collection, [path])[0]

    def display_names(self, collection: str | Path, paths: Sequence[str]) -> list[str]:
        """`display_name` of each of `paths`, the collection's roots read once."""
        roots = self.collection(collection).catalog.roots()
        return [display_path(_display_name(path, roots)) for path in paths]

    @staticmethod
    def _open_indexed(collection: Collection, path: str) -> BinaryIO:
        catalog = collection.catalog
        return open_indexed(catalog.file_record(path), catalog.roots())

    def _content_hash(self, collection: Collection, item_id: int) -> str | None:
        key = (str(collection.dir), item_id)
        with self._lock:
            if key in self._hashes:
                return self._hashes[key]
        item = collection.catalog.items([item_id]).get(item_id)
        digest = item.content_hash if item else None
        with self._lock:
            self._hashes[key] = digest
        return digest

    # -- upkeep -------------------------------------------------------------------------------

    def index(
        self,
        selection: Selection,
        paths: Sequence[str | Path],
        *,
        video: VideoSampling | None = None,
        **options: Any,
    ) -> IndexReport:
        """Index `paths` in the foreground (the CLI's run, which draws its own progress);
        `options` go to `SearchModel.index` (progress, batch_size, workers, wait, on_wait)."""
        return self.model(selection).index(paths, video=video, **options)

    @staticmethod
    def check(collection: str | Path) -> list[Problem]:
        """What is damaged or missing in a collection, read fresh from disk."""
        target = Collection(collection, create=False)
        try:
            return check_collection(target)
        finally:
            target.close()

    @staticmethod
    def repair(collection: str | Path) -> RepairReport:
        """Redo what `check` finds missing or damaged, keeping what is sound."""
        target = Collection(collection, create=False)
        try:
            return repair_collection(target)
        finally:
            target.close()

    def verify_model(self, key: str, runtime: str = "auto") -> ModelCheck:
        """Load a model and embed one text and one image, to prove it works here."""
        embedder = self.embedder(key, runtime)
        text = embedder.embed_texts(["a red circle"])
        image = embedder.embed_images([Image.new("RGB", (64, 64), (200, 30, 30))])
        parity = getattr(embedder, "parity", None) or {}
        used = str(getattr(embedder, "runtime", runtime))
        return ModelCheck(
            key=key,
            embedder_key=embedder.key,
            dim=embedder.dim,
            similarity=float(text[0] @ image[0]),
            parity=parity_summary(used, parity, getattr(embedder, "top10_overlap", None))
            if parity
            else "",
        )

    # -- background indexing ----------------------------------------------------------------

    def start_indexing(self, selection: Selection, folder: str) -> JobStatus:
        """Index `folder` into the selected collection in the background."""
        text = folder.strip()
        if not text:
            raise ConfigError("type the path of a folder to add")
        path = Path(text).expanduser().absolute()
        if not path.exists():
            raise ConfigError(f"there is no folder at {path}")
        allowed = self.settings.indexable_roots()
        target = self.collection(selection.collection)
        # the collection's own folders were chosen by whoever built it: indexing them again
        # (new photos, moved ones) reads nothing the server does not already show
        real = os.path.realpath(path)
        if not any(is_under(real, root) for root in [*allowed, *target.catalog.roots()]):
            raise ConfigError(
                f"this server may only index folders under {', '.join(map(str, allowed))} "
                f"or the collection's own; IMGFINDER_ALLOWED_ROOTS sets which"
            )
        if is_under(path, target.dir):
            raise ConfigError("that folder is inside the collection itself")
        model = self.model(selection)
        key = str(model.collection.dir)
        with self._lock:
            running = self._jobs.get(key)
            if running is not None and running.status().running:
                raise ConfigError("this collection is already being indexed; wait or cancel")
            job = IndexJob(model, path)
            self._jobs[key] = job
        job.start()
        return job.status()

    def job(self, collection: str | Path) -> IndexJob | None:
        with self._lock:
            return self._jobs.get(str(self.collection(collection).dir))

    def job_status(self, collection: str | Path) -> JobStatus | None:
        job = self.job(collection)
        return job.status() if job is not None else None

    def cancel_indexing(self, collection: str | Path) -> None:
        job = self.job(collection)
        if job is not None:
            job.cancel()

    def dismiss_job(self, collection: str | Path) -> None:
        """Forget a finished run's summary."""
        with self._lock:
            job = self._jobs.get(str(self.collection(collection).dir))
            if job is not None and not job.status().running:
                del self._jobs[job.collection]

    # -- watched folders --------------------------------------------------------------------

    def watching(self, selection: Selection, quiet: float = WATCH_QUIET) -> WatchStatus | None:
        """The watch over the collection's indexed folders, or None when it is not watched (or
        its model cannot load here). A collection that asks for one gets it here, so a
        restarted server resumes watching; a folder indexed since the watch began, or another
        model chosen, starts it afresh. One session at a time: every open page asks."""
        target = self.collection(selection.collection)
        key = str(target.dir)
        with self._watch_lock:
            if not target.watched():
                self._stop_watch(key)
                return None
            try:
                model = self.model(selection)
            except ImgFinderError as exc:
                log.info("not watching %s: %s", key, exc)
                return None
            roots = sorted(target.catalog.roots())
            running = self._watches.get(key)
            if running is not None and running[1] == (model.embedder.key, roots):
                return running[0].status()
            self._stop_watch(key)

            def reindex(changed: list[Path]) -> object:
                return model.index(changed, cancel=watch.stopping)

            watch = FolderWatch([Path(root) for root in roots], reindex, quiet=quiet)
            self._watches[key] = (watch, (model.embedder.key, roots))
            watch.start()
            return watch.status()

    def set_watching(
        self, selection: Selection, on: bool, quiet: float = WATCH_QUIET
    ) -> WatchStatus | None:
        """Start or stop watching the collection's folders: a new, changed, moved or deleted
        file re-indexes its folder in the background once things go quiet for `quiet` s."""
        self.collection(selection.collection).set_watched(on)
        return self.watching(selection, quiet)

    def _stop_watch(self, key: str) -> None:
        """Stop a watch; a re-index under way is cancelled (it resumes next time)."""
        running = self._watches.pop(key, None)
        if running is not None:
            running[0].stop()

    def close(self) -> None:
        """Cancel runs, wait for them, close catalogs (tests and shutdown)."""
        with self._watch_lock:
            for key in list(self._watches):
                self._stop_watch(key)
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
            job.wait(30)
        with self._lock:
            for collection in self._collections.values():
                collection.close()
            self._collections.clear()
            self._models.clear()


def qdrant_collection(name: str, embedder_key: str) -> str:
    """The Qdrant collection that holds one imgfinder collection's vectors by one embedder on
    a shared server: two collections, or two models of one, never write into each other."""
    digest = hashlib.sha1(embedder_key.encode("utf-8")).hexdigest()[:12]
    return f"imgfinder-{name}-{digest}"


def _holding_root(path: str, roots: list[str]) -> str | None:
    """The deepest of `roots` that `path` is under (or is), if any."""
    holders = [root for root in roots if is_under(path, root)]
    return max(holders, key=len) if holders else None


def _display_name(path: str, roots: list[str]) -> str:
    """A path relative to the root that holds it (the deepest), for a short card label."""
    root = _holding_root(path, roots)
    relative = "." if root is None else os.path.relpath(path, root)
    return Path(path).name if relative == "." else relative


def _read_image(path: str | os.PathLike[str], size: int) -> Image.Image:
    """An image file decoded for a map, its name in the error when it cannot be."""
    try:
        return open_image(Path(path), target_size=size)
    except MediaError as exc:
        raise MediaError(f"{os.fspath(path)}: {exc}") from exc


def _sentence(message: str) -> str:
    """A library message as one sentence: capitalised, with a full stop."""
    message = message.strip() or "something went wrong"
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."
