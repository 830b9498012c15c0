"""`imgfinder check`: is a collection sound? SQLite's own checks plus the catalog against its
vector files and saved indexes, each finding one sentence with what a repair would redo."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgfinder.atomic import orphaned_temp_files
from imgfinder.indexers.base import Indexer
from imgfinder.store.collection import STAMP, Collection

#: vectors are read this many rows at a time, so checking 10^6 rows needs little memory
_CHUNK = 65536


@dataclass(frozen=True)
class Problem:
    """One finding; `items` lists the items whose vectors under `embedder_key` must be redone."""

    what: str
    embedder_key: str | None = None
    items: tuple[int, ...] = field(default=(), repr=False)
    #: a saved index folder a repair deletes (it is rebuilt from the vectors)
    saved_index: Path | None = None
    #: leftovers of killed writes, which a repair (or the next index run) removes
    temp_files: tuple[Path, ...] = field(default=(), repr=False)

    @property
    def repairable(self) -> bool:
        return bool(self.items) or self.saved_index is not None or bool(self.temp_files)


def check(collection: Collection) -> list[Problem]:
    """Every problem found; an empty list means the collection is sound."""
    problems = [Problem(text) for text in collection.catalog.integrity_problems()]
    embedders = collection.manifest.get("embedders", {})
    for key in collection.catalog.embedder_keys():
        entry = embedders.get(key)
        if not isinstance(entry, dict) or "dim" not in entry:
            problems.append(Problem(f"the manifest does not describe the embedder {key}"))
            continue
        problems.extend(_check_vectors(collection, key, int(entry["dim"]), entry.get("model")))
    problems.extend(_check_saved_indexes(collection))
    orphans = orphaned_temp_files(collection.dir)
    if orphans:
        problems.append(
            Problem(
                f"{len(orphans)} temporary files were left by interrupted writes",
                temp_files=tuple(orphans),
            )
        )
    return problems


def _check_vectors(collection: Collection, key: str, dim: int, model: str | None) -> list[Problem]:
    store = collection.vectors(key, dim)
    rows = collection.catalog.snapshot(key).rows
    name = model or key
    problems = []
    count = len(store)
    beyond = tuple(sorted(item for item, row in rows.items() if row >= count))
    if beyond:
        where = "is missing" if not store.exists() else f"holds only {count} rows"
        problems.append(
            Problem(
                f"the vector file of {name} {where}: {len(beyond)} items lack vectors", key, beyond
            )
        )
    owners: dict[int, list[int]] = {}
    for item, row in rows.items():
        owners.setdefault(row, []).append(item)
    shared = tuple(sorted(i for items in owners.values() if len(items) > 1 for i in items))
    if shared:
        problems.append(
            Problem(
                f"{len(shared)} items of {name} share vector rows with another item", key, shared
            )
        )
    inside = sorted((row, item) for item, row in rows.items() if row < count)
    damaged = []
    for start in range(0, len(inside), _CHUNK):
        chunk = inside[start : start + _CHUNK]
        vectors = store.read(np.asarray([row for row, _ in chunk], dtype=np.int64))
        finite = np.isfinite(vectors).all(axis=1)
        norms = np.linalg.norm(np.where(np.isfinite(vectors), vectors, 0.0), axis=1)
        bad = ~finite | (np.abs(norms - 1.0) > 0.05)
        damaged.extend(item for (_, item), is_bad in zip(chunk, bad, strict=True) if is_bad)
    if damaged:
        problems.append(
            Problem(
                f"{len(damaged)} vectors of {name} are damaged (not finite or not unit length)",
                key,
                tuple(sorted(damaged)),
            )
        )
    return problems


def _check_saved_indexes(collection: Collection) -> list[Problem]:
    problems = []
    base = collection.dir / "index"
    for directory in sorted(base.iterdir()) if base.is_dir() else []:
        if not directory.is_dir() or not (directory / STAMP).exists():
            continue  # no stamp: a save was cut short, and the next search rebuilds it
        try:
            json.loads((directory / STAMP).read_text())
            Indexer.load(directory)
        except Exception as exc:  # any backend's failure to load means the same: rebuild it
            problems.append(
                Problem(
                    f"the saved index {directory.name} cannot be read ({exc}); it is rebuilt "
                    f"from the vectors",
                    saved_index=directory,
                )
            )
    return problems
