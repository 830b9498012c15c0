"""`imgfinder eval`: score embedders and indexers on the user's own labelled data.

Labelled data is either a folder with one sub-folder per class (queries are the class names
through a prompt template) or any folder plus a CSV of `query,relevant` rows (relevant paths
relative to the folder; one row per relevant file, or several joined by ';').
"""

from __future__ import annotations

import csv
import itertools
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgfinder.embedders.framing import CROP, check_framing, framed
from imgfinder.errors import ConfigError
from imgfinder.evaluation import (
    evaluate_image_to_image,
    ranking_metrics,
    zero_shot_accuracy,
)
from imgfinder.media.scan import scan


@dataclass
class LabelledData:
    root: Path
    queries: list[str]
    relevant: list[set[str]]
    #: class of each file, for image→image and zero-shot (folder-per-class data only)
    labels: dict[str, str] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)


def load_labelled(root: Path, queries_csv: Path | None = None, prompt: str = "{}") -> LabelledData:
    """Read either layout; paths are kept absolute so they match the catalog."""
    root = root.absolute()
    if not root.is_dir():
        raise ConfigError(f"there is no folder at {root}")
    files = [f for f in scan([root], include_videos=False).files]
    if not files:
        raise ConfigError(f"no images under {root}")
    if queries_csv is not None:
        grouped: dict[str, set[str]] = {}
        with open(queries_csv, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if "query" not in row or "relevant" not in row:
                    raise ConfigError(f"{queries_csv} needs 'query' and 'relevant' columns")
                for part in row["relevant"].split(";"):
                    if part.strip():
                        grouped.setdefault(row["query"], set()).add(str(root / part.strip()))
        return LabelledData(root, list(grouped), list(grouped.values()))
    labels = {
        str(f.path): f.path.relative_to(root).parts[0] for f in files if f.path.parent != root
    }
    classes = sorted(set(labels.values()))
    if len(classes) < 2:
        raise ConfigError(
            f"{root} needs one sub-folder per class (or pass --queries CSV with query,relevant)"
        )
    queries = [prompt.format(name.replace("_", " ")) for name in classes]
    relevant = [{p for p, label in labels.items() if label == name} for name in classes]
    return LabelledData(root, queries, relevant, labels, classes)


def evaluate(
    data: LabelledData,
    models: Sequence[str],
    indexers: Sequence[str] = ("exact",),
    *,
    ks: Sequence[int] = (1, 5, 10),
    workdir: Path | None = None,
    indexer_params: Mapping[str, Mapping[str, Any]] | None = None,
    framings: Sequence[str] = (CROP,),
) -> dict[str, dict[str, float]]:
    """One row of metrics per model × framing × indexer; approximate indexers are also
    scored vs exact.

    `indexer_params` maps an indexer name to its parameters (e.g. {"hnsw": {"efSearch": 8}});
    the vs-exact score searches at depth k, as a user's query does, not over everything.
    `framings` compares centre-cropping with padding to a square ("crop", "pad").
    """
    params = {name: dict(values) for name, values in (indexer_params or {}).items()}
    from imgfinder.embedders.registry import create_embedder
    from imgfinder.search import SearchModel

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = workdir or Path(tmp)
        for model, framing in itertools.product(models, map(check_framing, framings)):
            embedder = framed(create_embedder(model), framing)
            name = model if framing == CROP else f"{model} ({framing})"
            collection = base / f"eval-{model}-{framing}"
            exact_top: np.ndarray | None = None
            for indexer in ["exact", *[i for i in indexers if i != "exact"]]:
                search_model = SearchModel(
                    collection,
                    embedder,
                    indexer=indexer,
                    indexer_params=params.get(indexer),
                    model_name=model,
                )
                if indexer == "exact":
                    search_model.index([data.root])
                ids, paths, vectors = search_model.stored("image")
                index = search_model.vector_index()
                depth = len(ids)
                queries = search_model.embedder.embed_texts(data.queries)
                _, ranked = index.search(queries, depth)
                by_path = {p: i for i, p in zip(ids, paths, strict=True)}
                relevant = [{by_path[p] for p in rel if p in by_path} for rel in data.relevant]
                row = ranking_metrics([r[r >= 0].tolist() for r in ranked], relevant, ks)
                k = max(ks)
                if indexer == "exact":
                    exact_top = ranked[:, :k]
                    if data.labels:
                        labels = [data.labels.get(p, "") for p in paths]
                        row["image_nn_accuracy"] = evaluate_image_to_image(vectors, labels, ks)[
                            "nn_accuracy"
                        ]
                        class_vectors = search_model.embedder.embed_texts(data.queries)
                        label_ids = [data.classes.index(label) for label in labels]
                        row["zero_shot_accuracy"] = zero_shot_accuracy(
                            vectors, label_ids, class_vectors
                        )
                if indexer != "exact" and exact_top is not None:
                    _, top = index.search(queries, min(k, depth))
                    row[f"recall@{k}_vs_exact"] = _overlap(top, exact_top)
                if indexer == "exact" or indexer in indexers:
                    results[f"{name} / {_label(indexer, params.get(indexer))}"] = row
                search_model.close()
    return results


def _label(indexer: str, params: Mapping[str, Any] | None) -> str:
    """ "faiss" or "faiss(factory=HNSW32, efSearch=16)": rows say which settings they measured."""
    if not params:
        return indexer
    return f"{indexer}({', '.join(f'{name}={value}' for name, value in params.items())})"


def _overlap(approx: np.ndarray, exact: np.ndarray) -> float:
    hits = [
        len(set(a[a >= 0]) & set(e[e >= 0])) / max(1, (e >= 0).sum())
        for a, e in zip(approx, exact, strict=True)
    ]
    return float(np.mean(hits))
