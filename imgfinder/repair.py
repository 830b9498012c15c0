"""`imgfinder repair`: redo only what `check` found missing or damaged, keep what is sound.

Damaged or missing vectors are forgotten in the catalog, so an index run over the collection's
own folders embeds exactly those contents again (with the model that made them); a saved index
that cannot be read is deleted and rebuilt from the vectors.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from imgfinder.embedders.base import Embedder
from imgfinder.errors import CatalogError
from imgfinder.indexing import Progress
from imgfinder.search import SearchModel
from imgfinder.store.collection import Collection
from imgfinder.store.health import Problem, check


@dataclass
class RepairReport:
    found: list[Problem] = field(default_factory=list)
    #: contents whose vectors were redone, per model
    reembedded: dict[str, int] = field(default_factory=dict)
    saved_indexes_removed: int = 0
    temp_files_removed: int = 0
    left: list[Problem] = field(default_factory=list)


def repair(
    collection: Collection,
    progress: Callable[[Progress], None] | None = None,
    *,
    embedders: Sequence[Embedder] = (),
) -> RepairReport:
    """Fix what can be fixed; `left` lists what could not (a damaged SQLite file, say).

    Vectors are redone by the model the manifest names for them, or by the one of `embedders`
    (a library user's own models) whose key they were made with.
    """
    own = {embedder.key: embedder for embedder in embedders}
    report = RepairReport(found=check(collection))
    report.left = [problem for problem in report.found if not problem.repairable]
    lock = collection.writer()
    lock.acquire(wait=False)
    try:
        redo: dict[str, set[int]] = {}
        for problem in report.found:
            if problem.saved_index is not None:
                shutil.rmtree(problem.saved_index, ignore_errors=True)
                report.saved_indexes_removed += 1
            report.temp_files_removed += collection.sweep_temp_files() if problem.temp_files else 0
            if problem.items and problem.embedder_key:
                redo.setdefault(problem.embedder_key, set()).update(problem.items)
        forgotten = {
            key: collection.catalog.forget_vectors(key, sorted(items))
            for key, items in redo.items()
        }
    finally:
        lock.release()
    roots = collection.catalog.roots()
    for key, contents in forgotten.items():
        entry = collection.manifest["embedders"][key]
        if key in own:
            model = SearchModel(collection, own[key], model_name=entry["model"])
        else:
            runtime = entry.get("runtime") or "auto"
            model = SearchModel(collection, entry["model"], runtime=runtime)
        if model.embedder.key != key:
            raise CatalogError(
                f"the vectors of {entry['model']} were made by {key}, but that model now loads "
                f"as {model.embedder.key}; index the collection again with it"
            )
        model.index(roots, progress=progress, wait=False)
        report.reembedded[entry["model"]] = contents
    return report
