"""Exact brute-force indexer (the original's "dummy"): the oracle the ANN backends are tested
against, and the right choice up to ~10^6 vectors.

With `storage="float16"` (the default) a saved index is one memory-mapped file of float16 rows
in id order (`imgfinder.indexers.mapped`): opening it reads nothing but its ids, searching it
streams over the mapping, and changes since it was saved are held in memory beside it (new rows,
and tombstones over the file's rows) until the next save folds them in. A collection's vectors
are float16 already, so this loses nothing. `storage="float32"` keeps every row in memory as
float32, for vectors that are not float16 to begin with (the tests' oracle).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imgfinder.errors import ConfigError, IndexerError
from imgfinder.indexers.base import Indexer
from imgfinder.indexers.common import (
    DATA_FILE,
    IdVectors,
    as_allowed,
    as_ids,
    as_vectors,
    check_k,
    cosines,
    finish,
    load_npz,
    positive_int,
    save_npz,
    unit_queries,
)
from imgfinder.indexers.mapped import MappedRows, write_rows

STORAGES = {"float16": np.float16, "float32": np.float32}
#: rows copied at a time when a save folds the changes into a new file
_SAVE_CHUNK = 65536
#: candidates beyond k scored again by their exact cosine
_RESCORED = 16


class ExactIndexer(Indexer):
    """Brute-force inner product over unit vectors: exact scores, O(n·d) per query."""

    name = "exact"

    def __init__(self, dim: int, *, storage: str = "float16") -> None:
        if storage not in STORAGES:
            raise ConfigError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
        super().__init__(positive_int("dim", dim), storage=storage)
        self._store = IdVectors(self.dim, STORAGES[storage])
        self._mapped: MappedRows | None = None
        #: ids of the mapped rows, ascending (row order), and which rows still count
        self._mapped_ids = np.zeros(0, dtype=np.int64)
        self._live = np.zeros(0, dtype=bool)
        self._live_count = 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = as_vectors(ids, vectors, self.dim)
        self._forget_mapped(ids)
        self._store.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> None:
        ids = as_ids(ids)
        self._forget_mapped(ids)
        self._store.remove(ids)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        queries = unit_queries(queries, self.dim)
        allowed = as_allowed(allowed)
        if self.params["storage"] == "float32":
            return self._store.search(queries, k, allowed)
        # float16 rows are unit length only to float16's precision: rank by inner product,
        # then score a few more than k by their true cosine, so an image still finds itself
        # first among near-duplicates
        wider = k + _RESCORED
        scores, ids = self._store.search(queries, wider, allowed)
        mapped = self._search_mapped(queries, wider, allowed) if len(queries) else None
        if mapped is not None:
            both = (np.concatenate([scores, mapped[0]], 1), np.concatenate([ids, mapped[1]], 1))
            scores, ids = finish(*both, wider)
        return finish(self._cosines(queries, ids), ids, k)

    def _search_mapped(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-k of the mapped file's live rows (of `allowed` ids only, if given), as ids;
        None when no row can be."""
        if not self._live_count:
            return None
        rows = None
        if allowed is not None or self._live_count < len(self._live):
            rows = np.flatnonzero(self._live)
            if allowed is not None:
                rows = np.intersect1d(rows, self._mapped_rows(allowed), assume_unique=True)
            if not len(rows):
                return None
        assert self._mapped is not None
        scores, found = self._mapped.search(queries, k, rows)
        return scores, np.where(found >= 0, self._mapped_ids[np.maximum(found, 0)], -1)

    def _cosines(self, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Each query's cosine to the stored rows of its found ids (-inf where none)."""
        flat = ids.ravel()
        rows = np.zeros((len(flat), self.dim), dtype=np.float32)
        held = self._store.row_numbers(flat)
        rows[held >= 0] = self._store.vectors[held[held >= 0]]
        elsewhere = (held < 0) & (flat >= 0)
        if elsewhere.any():
            assert self._mapped is not None
            at = np.searchsorted(self._mapped_ids, flat[elsewhere])
            rows[elsewhere] = self._mapped.rows[at]
        return cosines(queries, rows.reshape(*ids.shape, self.dim), ids)

    def __len__(self) -> int:
        return len(self._store) + self._live_count

    # -- the mapped file ----------------------------------------------------------------------

    def _mapped_rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of the mapped file that hold `ids` (live or not), ascending."""
        at = np.searchsorted(self._mapped_ids, ids)
        inside = at < len(self._mapped_ids)
        at = at[inside]
        return np.unique(at[self._mapped_ids[at] == ids[inside]])

    def _forget_mapped(self, ids: np.ndarray) -> None:
        """Tombstone the mapped rows of ids that are replaced or removed."""
        if self._live_count and len(ids):
            rows = self._mapped_rows(ids)
            self._live_count -= int(self._live[rows].sum())
            self._live[rows] = False

    def _chunks(self, order: np.ndarray, mapped_count: int) -> Iterator[np.ndarray]:
        """The rows in `order`: positions below `mapped_count` are live mapped rows, the rest
        rows held in memory."""
        live = np.flatnonzero(self._live)
        held = self._store.vectors
        for start in range(0, len(order), _SAVE_CHUNK):
            positions = order[start : start + _SAVE_CHUNK]
            chunk = np.empty((len(positions), self.dim), dtype=np.float16)
            from_file = positions < mapped_count
            if from_file.any():
                assert self._mapped is not None
                chunk[from_file] = self._mapped.rows[live[positions[from_file]]]
            chunk[~from_file] = held[positions[~from_file] - mapped_count]
            yield chunk

    def _save_data(self, directory: Path) -> None:
        if self.params["storage"] == "float32":
            save_npz(directory / DATA_FILE, ids=self._store.ids, vectors=self._store.vectors)
            return
        mapped_ids = self._mapped_ids[self._live]
        ids = np.concatenate([mapped_ids, self._store.ids])
        order = np.argsort(ids, kind="stable")
        # a fresh name per save: the state file names its rows, so an interrupted save can
        # never pair new ids with old rows; the rows the state named until now are kept for a
        # process that read the old state and is about to map them (a process that has mapped
        # a file keeps its pages when it goes)
        previous = _rows_file(directory)
        name = f"exact-{secrets.token_hex(8)}.f16"
        write_rows(directory / name, self.dim, self._chunks(order, len(mapped_ids)))
        save_npz(directory / DATA_FILE, ids=ids[order], rows_file=np.array(name))
        for stale in directory.glob("exact-*.f16"):
            if stale.name not in (name, previous):
                stale.unlink(missing_ok=True)
        self._map(directory / name, ids[order])

    def _load_data(self, directory: Path) -> None:
        if self.params["storage"] == "float32":
            data = load_npz(directory / DATA_FILE, ("ids", "vectors"))
            self._store.load(data["ids"], data["vectors"])
            return
        data = load_npz(directory / DATA_FILE, ("ids", "rows_file"))
        name = str(data["rows_file"])
        if not name.startswith("exact-") or Path(name).name != name:
            raise IndexerError(f"{directory / DATA_FILE} names a bad rows file {name!r}")
        self._map(directory / name, data["ids"])

    def _map(self, path: Path, ids: np.ndarray) -> None:
        """Search the rows of `path` (ids ascending) from now on, and nothing held in memory."""
        mapped = MappedRows(path, self.dim)
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) != len(mapped) or (len(ids) > 1 and (np.diff(ids) <= 0).any()):
            raise IndexerError(f"the ids saved with {path} do not match its rows")
        self._mapped, self._mapped_ids = mapped, ids
        self._live = np.ones(len(ids), dtype=bool)
        self._live_count = len(ids)
        self._store.clear()


def _rows_file(directory: Path) -> str | None:
    """The rows file a saved state names, if there is a readable one."""
    try:
        return str(load_npz(directory / DATA_FILE, ("rows_file",))["rows_file"])
    except IndexerError:
        return None
