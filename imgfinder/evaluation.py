"""Retrieval and zero-shot metrics over ranked id lists, generic over embedders and indexers.

Everything here is numpy and plain Python. A ranking is a sequence of item ids, best first;
`relevant` is the set of ids that should be found. Padding ids (-1, as indexers return them)
are ignored. Definitions, for one query with relevant set R and ranking r:

- precision@k = |R ∩ r[:k]| / k
- recall@k = |R ∩ r[:k]| / |R|
- capped recall@k = |R ∩ r[:k]| / min(k, |R|): 1.0 when the top k are as good as they can
  be; with many relevant items plain recall@k cannot reach 1 and hit-rate is too lenient
- hit rate@k = 1 if any relevant item is in r[:k]
- nDCG@k with binary gains and log2 discounts, normalised by the ideal ranking
- AP = mean over relevant items of precision at their rank (unretrieved ones count 0)

Per-query values are averaged over queries; queries with no relevant item are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import numpy as np

#: a batch search: (queries, k) -> one ranked id list per query
SearchFn = Callable[[Sequence, int], Sequence[Sequence[int]]]


def _top(ranked: Sequence[int], k: int) -> list[int]:
    return [int(i) for i in list(ranked)[:k] if int(i) >= 0]


def precision_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Share of the first k results that are relevant (missing results count as misses)."""
    return sum(1 for i in _top(ranked, k) if i in relevant) / k


def recall_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Share of all relevant items found in the first k results."""
    if not relevant:
        return 0.0
    return sum(1 for i in _top(ranked, k) if i in relevant) / len(relevant)


def capped_recall_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Relevant items in the first k over the most there could be, min(k, |relevant|)."""
    if not relevant:
        return 0.0
    return sum(1 for i in _top(ranked, k) if i in relevant) / min(k, len(relevant))


def hit_rate_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """1.0 if any of the first k results is relevant."""
    return float(any(i in relevant for i in _top(ranked, k)))


def ndcg_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Normalised discounted cumulative gain with binary relevance."""
    if not relevant:
        return 0.0
    dcg = sum(
        1.0 / math.log2(rank + 2)
        for rank, i in enumerate(list(ranked)[:k])
        if int(i) >= 0 and int(i) in relevant
    )
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal


def average_precision(ranked: Sequence[int], relevant: Collection[int]) -> float:
    """Mean of precision@rank over the relevant items; ones never retrieved add 0."""
    if not relevant:
        return 0.0
    hits = 0
    total = 0.0
    for rank, i in enumerate(ranked, start=1):
        if int(i) >= 0 and int(i) in relevant:
            hits += 1
            total += hits / rank
    return total / len(relevant)


def mean_average_precision(
    rankings: Sequence[Sequence[int]], relevants: Sequence[Collection[int]]
) -> float:
    """AP averaged over queries that have at least one relevant item."""
    values = [average_precision(r, rel) for r, rel in zip(rankings, relevants, strict=True) if rel]
    return float(np.mean(values)) if values else 0.0


def ranking_metrics(
    rankings: Sequence[Sequence[int]],
    relevants: Sequence[Collection[int]],
    ks: Iterable[int] = (1, 5, 10),
) -> dict[str, float]:
    """All the metrics above averaged over queries, plus the query count."""
    if len(rankings) != len(relevants):
        raise ValueError(f"{len(rankings)} rankings but {len(relevants)} relevant sets")
    pairs = [
        (list(r), set(int(i) for i in rel))
        for r, rel in zip(rankings, relevants, strict=True)
        if rel
    ]
    out: dict[str, float] = {"queries": float(len(pairs))}
    if not pairs:
        return out
    for k in ks:
        for name, fn in (
            ("precision", precision_at_k),
            ("recall", recall_at_k),
            ("capped_recall", capped_recall_at_k),
            ("hit_rate", hit_rate_at_k),
            ("ndcg", ndcg_at_k),
        ):
            out[f"{name}@{k}"] = float(np.mean([fn(r, rel, k) for r, rel in pairs]))
    out["mAP"] = float(np.mean([average_precision(r, rel) for r, rel in pairs]))
    return out


def rank_by_similarity(
    queries: np.ndarray, items: np.ndarray, k: int | None = None, ids: Sequence[int] | None = None
) -> np.ndarray:
    """Exact cosine ranking of `items` (unit rows) for each query: int64[nq, k] ids.

    Ties are broken by position so results are deterministic.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    items = np.asarray(items, dtype=np.float32)
    k = items.shape[0] if k is None else min(k, items.shape[0])
    scores = queries @ items.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    if ids is None:
        return order.astype(np.int64)
    return np.asarray(ids, dtype=np.int64)[order]


def vector_search_fn(
    embed_queries: Callable[[Sequence], np.ndarray],
    item_vectors: np.ndarray,
    ids: Sequence[int] | None = None,
) -> SearchFn:
    """A `SearchFn` doing exact search over item vectors, e.g. with `embedder.embed_texts`."""

    def search(queries: Sequence, k: int) -> np.ndarray:
        return rank_by_similarity(embed_queries(queries), item_vectors, k, ids)

    return search


def evaluate_text_to_image(
    search_fn: SearchFn,
    queries: Sequence[str],
    relevant: Sequence[Collection[int]],
    k: int = 1000,
    ks: Iterable[int] = (1, 5, 10),
) -> dict[str, float]:
    """Retrieval metrics of `search_fn` on labelled queries; AP is computed over the top `k`.

    Pass k ≥ the collection size for exact mAP; an indexer works through a search function
    such as `lambda qs, k: index.search(embedder.embed_texts(qs), k)[1]`.
    """
    rankings = search_fn(list(queries), k)
    return ranking_metrics(rankings, relevant, ks)


def evaluate_image_to_image(
    vectors: np.ndarray, labels: Sequence, ks: Iterable[int] = (1, 5, 10)
) -> dict[str, float]:
    """Leave-one-out retrieval: each item queries the rest; relevant = same label.

    `nn_accuracy` is the share of items whose nearest other item has the same label.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = list(labels)
    n = len(labels)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, : n - 1]
    by_label: dict = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, set()).add(i)
    relevants = [by_label[label] - {i} for i, label in enumerate(labels)]
    out = ranking_metrics(order, relevants, ks)
    out["nn_accuracy"] = float(np.mean([labels[order[i, 0]] == labels[i] for i in range(n)]))
    return out


def zero_shot_accuracy(
    image_vectors: np.ndarray, labels: Sequence[int], class_text_vectors: np.ndarray
) -> float:
    """Share of images whose most similar class text is their own class (labels index rows)."""
    predicted = np.argmax(np.asarray(image_vectors) @ np.asarray(class_text_vectors).T, axis=1)
    return float(np.mean(predicted == np.asarray(labels)))


def to_markdown(results: Mapping[str, Mapping[str, float]], digits: int = 3) -> str:
    """A Markdown table: one row per result set, one column per metric (union, in order)."""
    columns: list[str] = []
    for row in results.values():
        columns += [c for c in row if c not in columns]
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in results.items():
        cells = []
        for column in columns:
            value = row.get(column)
            if value is None:
                cells.append("")
            elif isinstance(value, float) and not float(value).is_integer():
                cells.append(f"{value:.{digits}f}")
            else:
                cells.append(str(int(value)) if isinstance(value, float) else str(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
