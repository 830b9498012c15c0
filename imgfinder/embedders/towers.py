"""What every family built from an image tower, a text tower and a tokenizer shares: loading
once on first use, batching, normalising, the key naming runtime and precision, and
identifying weights files by content. A family says only how to load itself (`_load`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from imgfinder.atomic import atomic_write_text
from imgfinder.embedders.base import Embedder, l2_normalize
from imgfinder.embedders.preprocess import Preprocess
from imgfinder.embedders.runtimes import RUNTIMES, TAGS
from imgfinder.errors import ConfigError

#: rows per forward pass; bounds peak memory whatever batch the caller hands in
MAX_BATCH = 32
#: texts tokenised for the ONNX parity check (several scripts, empty, long)
PARITY_TEXTS = (
    "a photo of a dog running on the grass",
    "кошка спит на подоконнике",
    "",
    "Zürich 2024, 東京タワー, 🙂!",
    "a very long caption " * 30,
)
CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)
_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so a big checkpoint is hashed once:
    in this process, and across processes in a `<file>.sha256` note beside it when writable."""
    path = Path(path).resolve()
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    with _digest_lock:
        if memo in _digests:
            return _digests[memo]
    note = path.with_name(path.name + ".sha256")
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        remembered = json.loads(note.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        remembered = {}
    if isinstance(remembered, dict) and remembered.get("stamp") == stamp:
        hexdigest = str(remembered["sha256"])
    else:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        hexdigest = digest.hexdigest()
        with contextlib.suppress(OSError):  # a read-only model folder just hashes again
            atomic_write_text(note, json.dumps({"stamp": stamp, "sha256": hexdigest}))
    with _digest_lock:
        _digests[memo] = hexdigest
    return hexdigest


def find_checkpoint(directory: Path) -> Path | None:
    """The weights file open_clip would pick in a folder (safetensors first)."""
    for name in CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def trim_padding(tokens: np.ndarray, pad_id: int = 0) -> np.ndarray:
    """Drop trailing columns that are padding in every row.

    With a causal text tower, positions after the end token never influence it, so a short
    query costs a few positions instead of the whole context.
    """
    used = np.flatnonzero((tokens != pad_id).any(axis=0))
    length = int(used[-1]) + 1 if used.size else 1
    return np.ascontiguousarray(tokens[:, :length])


def lazy(
    factory: Callable[[], Callable[[Sequence[str]], np.ndarray]],
) -> Callable[[Sequence[str]], np.ndarray]:
    """A tokenizer built on first use, so an image-only (indexing) process never loads it."""
    made: list[Callable[[Sequence[str]], np.ndarray]] = []
    lock = threading.Lock()

    def tokenize(texts: Sequence[str]) -> np.ndarray:
        if not made:
            with lock:
                if not made:
                    made.append(factory())
        return made[0](texts)

    return tokenize


def runtime_tag(runtime: str) -> str:
    """The runtime and precision part of an embedder key."""
    return TAGS[runtime]


def check_runtime(runtime: str, device: str) -> None:
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime != "torch" and device != "cpu":
        raise ConfigError(f"runtime {runtime!r} runs on the CPU; use runtime 'torch' for {device}")


class Loaded(NamedTuple):
    """What a TowerEmbedder loads on first use.

    `towers` has `image(float32 batch)`, `text(int64 tokens)` and `dynamic_sequence`.
    """

    towers: Any
    preprocess: Preprocess
    tokenize: Callable[[Sequence[str]], np.ndarray]
    pad_id: int
    dim: int


class TowerEmbedder(Embedder):
    """Shared batching for embedders built from an image tower, a text tower and a tokenizer.

    Subclasses implement `_load()`, called once, on first use.
    """

    #: "torch", "onnx" or "onnx-int8", set by the subclass
    runtime: str

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None

    @property
    @abstractmethod
    def source_key(self) -> str:
        """The torch model's identity, before any runtime conversion."""

    @property
    def key(self) -> str:
        return f"{self.source_key}:{runtime_tag(self.runtime)}"

    @property
    def parity(self) -> dict[str, float]:
        """Measured cosine agreement of the ONNX towers with their reference ({} for torch)."""
        return getattr(self.towers, "parity", {})

    @property
    def top10_overlap(self) -> float | None:
        """For int8 towers: the share of fp32's top-10 results they keep, as measured."""
        return getattr(self.towers, "overlap", None)

    @abstractmethod
    def _load(self) -> Loaded:
        """Import the runtime and read the model: the expensive part, done once."""

    def _ensure(self) -> Loaded:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    @property
    def towers(self) -> Any:
        """The loaded runtime (TorchTowers or onnx.OnnxTowers), loading it if needed."""
        return self._ensure().towers

    def load(self, modality: str = "image") -> None:
        """The model, and for ONNX the tower's session too: opening the image session of a
        ViT-B/32 takes about a second, which an index run spends while images decode."""
        open_tower = getattr(self.towers, "session", None)
        if open_tower is not None:
            open_tower(modality)

    @property
    def preprocess(self) -> Preprocess:
        return self._ensure().preprocess

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return self.preprocess.size

    @property
    def mean(self) -> tuple[float, float, float]:  # type: ignore[override]
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, float, float]:  # type: ignore[override]
        return self.preprocess.std

    @property
    def dim(self) -> int:
        return self._ensure().dim

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        """Pixels exactly as this model's own preprocessing would produce them."""
        return self.preprocess(image)

    def input_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The whole image for a model that squashes it to its square; else the centre square."""
        if self.preprocess.resize_mode == "squash":
            return (0, 0, width, height)
        return super().input_box(width, height)

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """int64[n, context] token ids, as the model was trained with."""
        return self._ensure().tokenize(list(texts))

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        loaded = self._ensure()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) == 0:
            return np.zeros((0, loaded.dim), dtype=np.float32)
        image = loaded.towers.image
        parts = [image(batch[i : i + MAX_BATCH]) for i in range(0, len(batch), MAX_BATCH)]
        return l2_normalize(np.concatenate(parts))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        loaded = self._ensure()
        texts = list(texts)
        if not texts:
            return np.zeros((0, loaded.dim), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), MAX_BATCH):
            tokens = loaded.tokenize(texts[start : start + MAX_BATCH])
            if loaded.towers.dynamic_sequence:
                tokens = trim_padding(tokens, loaded.pad_id)
            parts.append(loaded.towers.text(tokens))
        return l2_normalize(np.concatenate(parts))
