"""Zero-shot classes: a collection's own list of labels gives every item the label it is
closest to, so results can be narrowed to "beach" or "documents" and the page can offer
the labels as facets with their counts.

A label is scored as the model's text vector of `prompt` filled with it ("a photo of a
beach"); an item takes the label whose vector is nearest its own. Classes are kept per
embedder and label list in one small file (item ids and label numbers), written atomically;
items indexed later are classified when the collection is next indexed or searched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgfinder.errors import ConfigError, IndexerError
from imgfinder.indexers.common import load_npz, save_npz

DEFAULT_PROMPT = "a photo of {}"
MAX_LABELS = 200


@dataclass(frozen=True)
class Labels:
    """The labels a collection sorts its items into, and how each becomes a text query."""

    names: tuple[str, ...]
    prompt: str = DEFAULT_PROMPT

    def __post_init__(self) -> None:
        names = tuple(dict.fromkeys(name.strip() for name in self.names if name.strip()))
        if len(names) < 2:
            raise ConfigError("give at least two labels to sort the items into")
        if len(names) > MAX_LABELS:
            raise ConfigError(f"at most {MAX_LABELS} labels, not {len(names)}")
        if "{}" not in self.prompt:
            raise ConfigError(f"the prompt {self.prompt!r} needs {{}} where a label goes")
        object.__setattr__(self, "names", names)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Labels | None:
        saved = manifest.get("labels")
        if not saved:
            return None
        return cls(tuple(saved["names"]), str(saved.get("prompt", DEFAULT_PROMPT)))

    def to_manifest(self) -> dict[str, Any]:
        return {"names": list(self.names), "prompt": self.prompt}

    def texts(self) -> list[str]:
        return [self.prompt.format(name) for name in self.names]

    def file_name(self, embedder_key: str) -> str:
        """One classes file per embedder and label list: changing either starts afresh."""
        spec = json.dumps([embedder_key, self.to_manifest()], sort_keys=True)
        return f"{hashlib.sha1(spec.encode('utf-8')).hexdigest()[:16]}.npz"


def nearest_label(vectors: np.ndarray, label_vectors: np.ndarray) -> np.ndarray:
    """int16 label number of each row of `vectors`: the label vector with the highest cosine."""
    if not len(vectors):
        return np.zeros(0, dtype=np.int16)
    return np.argmax(np.asarray(vectors, np.float32) @ label_vectors.T, axis=1).astype(np.int16)


class ClassFile:
    """Item ids (ascending) and their label numbers, on disk between runs."""

    def __init__(self, path: Path, labels: Labels) -> None:
        self.path = path
        self.labels = labels
        self.ids = np.zeros(0, dtype=np.int64)
        self.label = np.zeros(0, dtype=np.int16)
        if path.is_file():
            try:
                saved = load_npz(path, ("ids", "label"))
            except IndexerError:  # damaged: every item is classified again
                return
            self.ids, self.label = saved["ids"].astype(np.int64), saved["label"].astype(np.int16)

    def missing(self, ids: np.ndarray) -> np.ndarray:
        """Those of `ids` with no class yet."""
        return np.setdiff1d(ids, self.ids, assume_unique=True)

    def add(self, ids: np.ndarray, label: np.ndarray) -> None:
        """Record classes of new items and save (a write that fails is redone next time)."""
        if not len(ids):
            return
        ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        label = np.concatenate([self.label, np.asarray(label, np.int16)])
        order = np.argsort(ids, kind="stable")
        self.ids, self.label = ids[order], label[order]
        save_npz(self.path, ids=self.ids, label=self.label)

    def members(self, live: np.ndarray) -> dict[str, np.ndarray]:
        """label -> ascending ids of the items in `live` that carry it."""
        keep = np.isin(self.ids, live)
        ids, label = self.ids[keep], self.label[keep]
        return {name: ids[label == number] for number, name in enumerate(self.labels.names)}


def parse_labels(names: Sequence[str]) -> tuple[str, ...]:
    """Labels as typed: several per argument when comma-separated ("cat, dog")."""
    return tuple(part.strip() for name in names for part in name.split(",") if part.strip())
