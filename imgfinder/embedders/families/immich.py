"""Models exported to ONNX by the immich project, run with ONNX Runtime and no torch.

The immich-app organisation publishes open_clip and multilingual M-CLIP models as ONNX pairs
on the Hugging Face hub, one repository each:

    config.json                  open_clip's model config (text_cfg: context_length, ...)
    textual/model.onnx           text tower; input "text" (int32, 1 × L) or, for M-CLIP,
                                 "input_ids" and "attention_mask"
    textual/tokenizer.json       the Hugging Face tokenizer; tokenizer_config.json names the
    textual/tokenizer_config.json  pad token
    visual/model.onnx            image tower; input float32 1 × 3 × S × S
    visual/preprocess_cfg.json   size, mean, std

Both towers already return unit vectors. Preprocessing is CLIP's: shortest side to S (bicubic),
centre crop, mean/std; queries are padded and truncated to exactly L tokens.
"""

from __future__ import annotations

import hashlib
import json
import string
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgfinder.embedders.base import Embedder, l2_normalize
from imgfinder.embedders.onnx_runtime import open_session
from imgfinder.embedders.towers import file_digest
from imgfinder.errors import MissingExtraError, ModelError

FILES = (
    "config.json",
    "textual/model.onnx",
    "textual/tokenizer.json",
    "textual/tokenizer_config.json",
    "visual/model.onnx",
    "visual/preprocess_cfg.json",
)


class ImmichEmbedder(Embedder):
    """A folder laid out like an immich-app repository (see the module docstring)."""

    family = "immich"

    def __init__(self, folder: str | Path, *, runtime: str = "onnx", threads: int | None = None):
        if runtime not in ("auto", "onnx"):
            raise ModelError(
                f"models exported by immich run on ONNX Runtime fp32 only, not {runtime}"
            )
        self.folder = Path(folder)
        self.runtime = "onnx"
        self.threads = threads
        missing = [name for name in FILES if not (self.folder / name).is_file()]
        if missing:
            raise ModelError(f"{self.folder} lacks {', '.join(missing)}")
        config = _read_json(self.folder / "config.json")
        preprocess = _read_json(self.folder / "visual" / "preprocess_cfg.json")
        text_cfg = config.get("text_cfg", {})
        self.context_length = int(text_cfg.get("context_length", 77))
        self.canonicalize = text_cfg.get("tokenizer_kwargs", {}).get("clean") == "canonicalize"
        size = preprocess.get("size", 224)
        self.image_size = int(size[0] if isinstance(size, list) else size)
        self.mean = tuple(float(v) for v in preprocess.get("mean", self.mean))
        self.std = tuple(float(v) for v in preprocess.get("std", self.std))
        self._dim = int(config["embed_dim"]) if "embed_dim" in config else None
        self._tokenizer = self._load_tokenizer()
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._key: str | None = None

    def __repr__(self) -> str:
        return f"ImmichEmbedder({str(self.folder)!r})"

    @property
    def key(self) -> str:
        """The towers' and the tokenizer's content, and the preprocessing."""
        if self._key is None:
            parts = [file_digest(self.folder / name) for name in FILES]
            digest = hashlib.sha256("".join(parts).encode()).hexdigest()[:12]
            self._key = f"immich:{self.folder.name}:{digest}-onnx"
        return self._key

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_texts(["a photo"]).shape[1])
        return self._dim

    # -- images

    def load(self, modality: str = "image") -> None:
        self._session("visual" if modality == "image" else "textual")

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        session = self._session("visual")
        name = session.get_inputs()[0].name
        pixels = np.ascontiguousarray(batch, dtype=np.float32)
        if _static_batch(session):
            rows = [session.run(None, {name: pixels[i : i + 1]})[0][0] for i in range(len(pixels))]
            return l2_normalize(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)
        return l2_normalize(session.run(None, {name: pixels})[0])

    # -- texts

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        session = self._session("textual")
        names = [item.name for item in session.get_inputs()]
        kind = np.int64 if "int64" in session.get_inputs()[0].type else np.int32
        rows = []
        for text in texts:
            encoding = self._tokenizer.encode(self._clean(text))
            feed = {names[0]: np.asarray([encoding.ids], dtype=kind)}
            if "attention_mask" in names:
                feed["attention_mask"] = np.asarray([encoding.attention_mask], dtype=kind)
            rows.append(session.run(None, feed)[0][0])
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.stack(rows))

    def _clean(self, text: str) -> str:
        """Whitespace collapsed; SigLIP-style models also drop punctuation and lower-case."""
        text = " ".join(text.split())
        if self.canonicalize:
            text = text.translate(str.maketrans("", "", string.punctuation)).lower()
        return text

    def _load_tokenizer(self) -> Any:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingExtraError("tokenizers", "multilingual") from exc
        textual = self.folder / "textual"
        try:
            tokenizer = Tokenizer.from_file(str(textual / "tokenizer.json"))
        except Exception as exc:  # the library's errors carry no common type
            raise ModelError(f"cannot read {textual / 'tokenizer.json'}: {exc}") from exc
        pad = _read_json(textual / "tokenizer_config.json").get("pad_token")
        if isinstance(pad, dict):  # an AddedToken written out in full
            pad = pad.get("content")
        pad_id = tokenizer.token_to_id(pad) if isinstance(pad, str) else None
        if pad_id is None:
            raise ModelError(f"{textual / 'tokenizer_config.json'} names no known pad token")
        tokenizer.enable_padding(length=self.context_length, pad_id=pad_id, pad_token=pad)
        tokenizer.enable_truncation(max_length=self.context_length)
        return tokenizer

    def _session(self, tower: str) -> Any:
        if tower not in self._sessions:
            with self._lock:
                if tower not in self._sessions:
                    path = self.folder / tower / "model.onnx"
                    self._sessions[tower] = open_session(path, self.threads)
        return self._sessions[tower]


def _static_batch(session: Any) -> bool:
    """Exported with a fixed batch of one (immich's graphs are), so rows go one by one."""
    first = session.get_inputs()[0].shape[0]
    return isinstance(first, int)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data
