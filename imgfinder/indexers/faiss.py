"""FAISS indexer: any `index_factory` string, inner-product metric, our int64 ids.

How ids and removal work depends on what the factory string builds:

- IVF indexes store ids themselves and support `remove_ids`.
- Other indexes that support `remove_ids` (Flat, PQ, SQ, ...) are wrapped in `IndexIDMap2`.
- Indexes that cannot remove (HNSW and its variants) use tombstones: a removed or replaced row
  stays in the graph but is filtered out during search by an `IDSelectorBitmap` over live rows.
  When dead rows outnumber live ones, the graph is rebuilt from its own stored vectors
  (`reconstruct`), so memory and search cost stay within 2x of a fresh index.

Indexes that need training (IVF, PQ, SQ, PCA, ...) train lazily: until `train_size` vectors
exist they are kept in an exact store and searched by brute force (exact scores); the add that
reaches `train_size` trains on everything held so far and moves it into the index. Training on
fewer vectors would place centroids badly for good, so we wait. `train_size=0` picks 39 x the
largest k-means size of the index (FAISS's own guidance, e.g. 39 936 for IVF1024), at least 1000.

Scores are inner products of unit vectors, i.e. cosine similarities; they are exact for Flat
and HNSW storage and approximate for SQ/PQ codes. The HNSW defaults (efConstruction=100,
efSearch=64) gave recall@10 1.0 at ~6x exact batch speed on 10^5 clustered 512-d vectors
(bench/results/indexers.md); efConstruction=40, FAISS's own default, gave 0.98.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np

from imgfinder.atomic import atomic_write_file
from imgfinder.errors import ConfigError, IndexerError
from imgfinder.indexers.base import Indexer, empty_result
from imgfinder.indexers.common import (
    IdVectors,
    as_allowed,
    as_ids,
    as_vectors,
    check_k,
    exact_search,
    finish,
    import_extra,
    load_npz,
    positive_int,
    prefers_scan,
    save_npz,
    unit_queries,
)

STATE_FILE = "faiss-state.npz"
_STATE_KEYS = (
    "index_file",
    "ntotal",
    "tombstones",
    "labels",
    "live",
    "pending_ids",
    "pending_vectors",
)
#: FAISS warns below 39 training points per centroid
_POINTS_PER_CENTROID = 39
_MIN_TRAIN = 1000


class FaissIndexer(Indexer):
    """A FAISS index built from a factory string, with ids, removal and lazy training."""

    name = "faiss"

    def __init__(
        self,
        dim: int,
        *,
        factory: str = "Flat",
        efSearch: int = 64,
        efConstruction: int = 100,
        nprobe: int = 16,
        train_size: int = 0,
    ) -> None:
        if not isinstance(factory, str) or not factory.strip():
            raise ConfigError(f"parameter factory must be a FAISS factory string, got {factory!r}")
        train_size = 0 if train_size in (0, "0") else positive_int("train_size", train_size)
        super().__init__(
            positive_int("dim", dim),
            factory=factory.strip(),
            efSearch=positive_int("efSearch", efSearch),
            efConstruction=positive_int("efConstruction", efConstruction),
            nprobe=positive_int("nprobe", nprobe),
            train_size=train_size,
        )
        self._faiss: Any = import_extra("faiss", "faiss-cpu", "faiss")
        self._index, self._tombstones = self._build_index()
        #: the file a loaded index is mapped from, until it changes and is read into memory
        self._mapped: Path | None = None
        self._pending = IdVectors(self.dim)
        self._reset_rows()
        self._min_train = self._training_size()
        self._tune()

    # -- the contract ---------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = as_vectors(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        self._own_index()
        if self._index.is_trained:
            self._insert(ids, vectors)
            return
        self._pending.add(ids, vectors)
        if len(self._pending) >= self._min_train:
            self._train()

    def remove(self, ids: np.ndarray) -> None:
        ids = as_ids(ids)
        if len(ids) == 0:
            return
        self._own_index()
        if not self._index.is_trained:
            self._pending.remove(ids)
        elif not self._tombstones:
            if self._index.ntotal:
                self._index.remove_ids(self._faiss.IDSelectorBatch(ids))
        else:
            rows = [self._row.pop(i) for i in ids.tolist() if i in self._row]
            if rows:
                self._live[rows] = False
                self._selector = None
                self._compact_if_mostly_dead()

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        queries = unit_queries(queries, self.dim)
        allowed = as_allowed(allowed)
        if not self._index.is_trained:
            return self._pending.search(queries, k, allowed)
        size = len(self)
        if size == 0 or len(queries) == 0 or (allowed is not None and len(allowed) == 0):
            return empty_result(len(queries), k)
        top = min(k, size)
        if allowed is None:
            params = self._live_filter()[1] if self._tombstones else None
            return self._search_rows(queries, top, params, k)
        if not self._tombstones:
            passing = allowed
            selector = self._faiss.IDSelectorBatch(allowed)
        else:
            passing = self._live_rows_of(allowed)
            if not len(passing):
                return empty_result(len(queries), k)
            if prefers_scan(len(passing), size):
                vectors = self._index.reconstruct_batch(passing)
                return exact_search(vectors, self._labels[passing], queries, k)
            selector = self._row_selector(passing)
        # fewer rows pass the filter where the search looks: look further in proportion (more
        # IVF lists, a wider HNSW walk), and further again for queries still short of k
        needed = min(top, len(passing))
        widen = size / len(passing)
        while True:
            scores, ids = self._search_rows(queries, top, self._params(selector, widen), k)
            if (ids >= 0).sum(axis=1).min() >= needed or widen >= size:
                return scores, ids
            widen = min(float(size), 4 * widen)

    def _search_rows(
        self, queries: np.ndarray, top: int, params: Any, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's answer as our ids: labels where the index keeps ids, else rows mapped back
        (dead rows dropped, should a wrapper ignore the selector)."""
        scores, found = self._index.search(queries, top, params=params)
        if not self._tombstones:
            return finish(scores, found, k)
        ntotal = self._index.ntotal
        valid = (found >= 0) & (found < ntotal)
        safe = np.where(valid, found, 0)
        valid &= self._live[safe]
        return finish(scores, np.where(valid, self._labels[safe], -1), k)

    def __len__(self) -> int:
        if not self._index.is_trained:
            return len(self._pending)
        return len(self._row) if self._tombstones else int(self._index.ntotal)

    def _save_data(self, directory: Path) -> None:
        # A fresh file name per save: the state file names the index file it belongs to, so an
        # interrupted save can never pair a new index with old labels.
        index_name = f"faiss-{secrets.token_hex(8)}.index"
        faiss = self._faiss
        atomic_write_file(directory / index_name, lambda tmp: faiss.write_index(self._index, tmp))
        ntotal = int(self._index.ntotal)
        save_npz(
            directory / STATE_FILE,
            index_file=np.array(index_name),
            ntotal=np.array(ntotal, dtype=np.int64),
            tombstones=np.array(self._tombstones),
            labels=self._labels[:ntotal] if self._tombstones else np.zeros(0, np.int64),
            live=self._live[:ntotal] if self._tombstones else np.zeros(0, bool),
            pending_ids=self._pending.ids,
            pending_vectors=self._pending.vectors,
        )
        for stale in directory.glob("faiss-*.index"):
            if stale.name != index_name:
                stale.unlink(missing_ok=True)

    def _load_data(self, directory: Path) -> None:
        state = load_npz(directory / STATE_FILE, _STATE_KEYS)
        index_name = str(state["index_file"])
        if not index_name.startswith("faiss-") or Path(index_name).name != index_name:
            raise IndexerError(f"{directory / STATE_FILE} names a bad index file {index_name!r}")
        mapped = self._faiss.IO_FLAG_MMAP_IFC  # opening reads the graph, not the codes
        try:
            index = self._faiss.read_index(str(directory / index_name), mapped)
        except RuntimeError as exc:
            raise IndexerError(f"cannot read FAISS index in {directory}: {exc}") from exc
        self._mapped = directory / index_name
        ntotal = int(state["ntotal"])
        if index.d != self.dim or index.ntotal != ntotal:
            raise IndexerError(f"FAISS index in {directory} does not match its saved state")
        self._index, self._tombstones = index, bool(state["tombstones"])
        self._reset_rows()
        if self._tombstones:
            labels, live = state["labels"], state["live"]
            if labels.shape != (ntotal,) or live.shape != (ntotal,):
                raise IndexerError(f"FAISS labels in {directory} do not match the index")
            self._labels, self._live = labels.astype(np.int64), live.astype(bool)
            rows = np.flatnonzero(self._live)
            self._row = dict(zip(self._labels[rows].tolist(), rows.tolist(), strict=True))
        self._pending.load(state["pending_ids"], state["pending_vectors"])
        self._min_train = self._training_size()
        self._tune()

    def _own_index(self) -> None:
        """Read a mapped index into memory before it changes: FAISS cannot grow or shrink a
        mapped one (it aborts the process). From its file while that is there, else from the
        mapping itself (a newer save by another process may have replaced the file)."""
        if self._mapped is None:
            return
        faiss = self._faiss
        try:
            self._index = faiss.read_index(str(self._mapped))
        except RuntimeError:
            self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
        self._mapped = None
        self._tune()

    def set_search_params(self, **params: Any) -> None:
        """Change query-time knobs (efSearch, nprobe) without rebuilding, e.g. to tune recall."""
        unknown = sorted(set(params) - {"efSearch", "nprobe"})
        if unknown:
            raise ConfigError(f"not a FAISS query-time parameter: {', '.join(unknown)}")
        for name, value in params.items():
            self.params[name] = positive_int(name, value)
        self._selector = None
        self._tune()

    # -- building and tuning ----------------------------------------------------------------

    def _build_index(self) -> tuple[Any, bool]:
        """Make the index and decide how it keeps ids: natively, via IDMap2, or tombstones."""
        faiss, factory = self._faiss, self.params["factory"]
        try:
            index = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else "invalid"
            raise ConfigError(f"FAISS cannot build factory {factory!r}: {message}") from None
        has_ids = isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)) or (
            faiss.try_extract_index_ivf(index) is not None
        )
        if self._can_remove(index):
            if has_ids:
                return index, False
            wrapped = "IDMap2," + factory
            return faiss.index_factory(self.dim, wrapped, faiss.METRIC_INNER_PRODUCT), False
        if has_ids:
            raise ConfigError(
                f"factory {factory!r} maps ids but cannot remove them; drop the IDMap prefix, "
                "imgfinder maps ids itself"
            )
        return index, True

    def _can_remove(self, index: Any) -> bool:
        try:
            index.remove_ids(self._faiss.IDSelectorRange(0, 0))
        except RuntimeError:
            return False
        return True

    def _core(self) -> Any:
        """The index under any IDMap / PreTransform / Refine wrappers."""
        faiss = self._faiss
        index = faiss.downcast_index(self._index)
        while True:
            if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2, faiss.IndexPreTransform)):
                index = faiss.downcast_index(index.index)
            elif isinstance(index, faiss.IndexRefine):
                index = faiss.downcast_index(index.base_index)
            else:
                return index

    def _tune(self) -> None:
        """Apply efSearch / efConstruction / nprobe wherever the index has HNSW or IVF parts.

        Also turns off FAISS's polysemous PQ training, which the factory enables: it only helps
        Hamming-filtered search, which we never use, and it makes PQ training ~10x slower.
        """
        faiss, params = self._faiss, self.params
        core = self._core()
        if isinstance(core, faiss.IndexHNSW):
            core.hnsw.efSearch = params["efSearch"]
            core.hnsw.efConstruction = params["efConstruction"]
        if hasattr(core, "do_polysemous_training"):
            core.do_polysemous_training = False
        ivf = faiss.try_extract_index_ivf(self._index)
        if ivf is not None:
            ivf = faiss.downcast_index(ivf)
            if hasattr(ivf, "do_polysemous_training"):
                ivf.do_polysemous_training = False
            ivf.nprobe = min(params["nprobe"], ivf.nlist)
            quantizer = faiss.downcast_index(ivf.quantizer)
            if isinstance(quantizer, faiss.IndexHNSW):
                quantizer.hnsw.efSearch = max(params["efSearch"], ivf.nprobe)

    def _training_size(self) -> int:
        """How many vectors to gather before training (0 if the index needs none)."""
        if self._index.is_trained:
            return 0
        faiss = self._faiss
        clusters = 1
        parts = [self._core()]
        ivf = faiss.try_extract_index_ivf(self._index)
        if ivf is not None:
            clusters = max(clusters, ivf.nlist)
            parts.append(faiss.downcast_index(ivf))
        if isinstance(parts[0], faiss.IndexHNSW):
            parts.append(faiss.downcast_index(parts[0].storage))
        for part in parts:
            quantizer = getattr(part, "pq", None)
            if quantizer is not None:
                clusters = max(clusters, quantizer.ksub)
        requested = self.params["train_size"]
        if requested and requested < clusters:
            raise ConfigError(
                f"train_size={requested} is too small for {self.params['factory']!r}: "
                f"k-means needs at least {clusters} vectors"
            )
        return requested or max(_MIN_TRAIN, _POINTS_PER_CENTROID * clusters)

    def _train(self) -> None:
        ids, vectors = self._pending.ids.copy(), self._pending.vectors.copy()
        self._index.train(vectors)
        self._pending.clear()
        self._insert(ids, vectors)

    # -- rows of a trained index ------------------------------------------------------------

    def _insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not self._tombstones:
            if self._index.ntotal:
                self._index.remove_ids(self._faiss.IDSelectorBatch(ids))
            self._index.add_with_ids(vectors, ids)
            return
        replaced = [self._row.pop(i) for i in ids.tolist() if i in self._row]
        self._live[replaced] = False
        self._append(ids, vectors)
        self._compact_if_mostly_dead()

    def _reset_rows(self) -> None:
        """Tombstone bookkeeping: row -> id, row liveness, id -> row for live rows."""
        self._labels = np.zeros(0, dtype=np.int64)
        self._live = np.zeros(0, dtype=bool)
        self._row: dict[int, int] = {}
        self._selector: tuple[Any, Any] | None = None

    def _append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        start = int(self._index.ntotal)
        stop = start + len(ids)
        if stop > len(self._labels):
            capacity = max(stop, 2 * len(self._labels))
            self._labels = np.resize(self._labels, capacity)
            self._live = np.resize(self._live, capacity)
        self._index.add(vectors)
        self._labels[start:stop] = ids
        self._live[start:stop] = True
        self._row.update(zip(ids.tolist(), range(start, stop), strict=True))
        self._selector = None

    def _compact_if_mostly_dead(self) -> None:
        ntotal = int(self._index.ntotal)
        if ntotal - len(self._row) <= len(self._row):
            return
        rows = np.flatnonzero(self._live[:ntotal])
        ids = self._labels[rows].copy()
        vectors = (
            self._index.reconstruct_batch(rows)
            if len(rows)
            else np.zeros((0, self.dim), dtype=np.float32)
        )
        self._index.reset()  # keeps training (SQ ranges, PCA), drops rows and graph
        self._reset_rows()
        if len(rows):
            self._append(ids, vectors)

    def _live_rows_of(self, allowed: np.ndarray) -> np.ndarray:
        """The live rows, ascending, that hold ids in `allowed`."""
        ntotal = int(self._index.ntotal)
        return np.flatnonzero(self._live[:ntotal] & np.isin(self._labels[:ntotal], allowed))

    def _live_filter(self) -> tuple[Any, Any]:
        """(selector, search parameters) that skip dead rows; (None, None) when all are live.
        Kept until rows change: the selector is a bitmap over every row."""
        ntotal = int(self._index.ntotal)
        if ntotal == len(self._row):
            return None, None
        if self._selector is None:
            selector = self._row_selector(np.flatnonzero(self._live[:ntotal]))
            self._selector = (selector, self._params(selector))
        return self._selector

    def _row_selector(self, rows: np.ndarray) -> Any:
        """A selector that lets only `rows` through (keep it alive while FAISS searches)."""
        passing = np.zeros(int(self._index.ntotal), dtype=bool)
        passing[rows] = True
        return self._faiss.IDSelectorBitmap(np.packbits(passing, bitorder="little"))

    def _params(self, selector: Any, widen: float = 1.0) -> Any:
        """Search parameters carrying `selector`, of the type the index at the core takes;
        an HNSW graph's efSearch, or the IVF lists probed, multiplied by `widen`."""
        faiss = self._faiss
        core = self._core()
        ivf = faiss.try_extract_index_ivf(self._index)
        if isinstance(core, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW()
            params.efSearch = int(np.ceil(core.hnsw.efSearch * widen))
        elif ivf is not None:
            ivf = faiss.downcast_index(ivf)
            params = faiss.SearchParametersIVF()
            params.nprobe = min(ivf.nlist, int(np.ceil(ivf.nprobe * widen)))
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        return params
