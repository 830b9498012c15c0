"""Queries before they are searched: the checks a text must pass, and mixing several terms
(positive and negative, texts and images) into one query vector."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

import numpy as np

from imgfinder.embedders.base import Embedder
from imgfinder.errors import ConfigError

#: how hard a "not" term pushes by default: enough to drop what it names from the top
#: results (measured on the demo: "blue, not square" 4 → 10 of 10), little enough to keep
#: the positive term in charge
NOT_WEIGHT = 0.5
#: how much a text counts beside an image ("like this photo, but at night") by default;
#: image-to-image similarities run higher than text-to-image, so a smaller weight barely moves
WITH_WEIGHT = 1.0
#: the largest weight a term may carry, either way
MAX_WEIGHT = 10.0


def check_text(embedder: Embedder, text: str) -> str:
    """`text` stripped, or a ConfigError saying why it cannot be a query for `embedder`."""
    if not text or not text.strip():
        raise ConfigError("the query is empty")
    if not any(unicodedata.category(char)[0] in "LNS" for char in text):
        raise ConfigError("the query has no words: punctuation alone describes nothing")
    if reason := embedder.unreadable(text):
        raise ConfigError(reason)
    return text.strip()


def check_weight(weight: float) -> float:
    """A term's weight, or a ConfigError for NaN, infinities and weights beyond ±MAX_WEIGHT."""
    weight = float(weight)
    if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
        raise ConfigError(
            f"a query term's weight is between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}, not {weight}"
        )
    return weight


def mix(base: np.ndarray, terms: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """unit(base + Σ weight · term) for unit vectors: a positive weight pulls the results
    toward a term, a negative one pushes them away from it."""
    total = np.asarray(base, dtype=np.float32).copy()
    for vector, weight in terms:
        total += check_weight(weight) * np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise ConfigError("the query's terms cancel each other out; weigh one of them less")
    return total / norm


__all__ = ["MAX_WEIGHT", "NOT_WEIGHT", "WITH_WEIGHT", "check_text", "check_weight", "mix"]
