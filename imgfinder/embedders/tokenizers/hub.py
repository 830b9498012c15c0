"""open_clip's Hugging Face tokenizer (multilingual models) without torch or transformers.

open_clip tokenizes XLM-RoBERTa and SigLIP 2 text with a `transformers` tokenizer wrapped in
torch. Its fast tokenizers are the `tokenizers` library underneath, so an ONNX export keeps
that backend's JSON plus the few settings open_clip and transformers apply around it (text
cleaning, fixed length, padding and truncation sides, whether special-token text is split, an
optional separator strip); searching then needs neither torch nor transformers. An export
records it only after checking that it reproduces open_clip's ids
(`families.openclip.torch_free_tokenizer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from imgfinder.embedders.tokenizers.textclean import CLEANERS, require_ftfy
from imgfinder.errors import MissingExtraError, ModelError

KIND = "hf-tokenizers"


class HubTokenizer:
    """Rows of `context_length` int64 ids, as open_clip's HFTokenizer returns them."""

    def __init__(self, tokenizer_json: str, spec: dict[str, Any]) -> None:
        require_ftfy()
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingExtraError("tokenizers", "multilingual") from exc
        self.clean = CLEANERS[spec["clean"]]
        self.length = int(spec["context_length"])
        self.strip_id = spec.get("strip_id")
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.encode_special_tokens = bool(spec.get("split_special_tokens", False))
        self.tokenizer.enable_truncation(self.length, direction=spec["truncation_side"])
        self.tokenizer.enable_padding(
            direction=spec["padding_side"],
            pad_id=int(spec["pad_id"]),
            pad_token=spec["pad_token"],
            length=self.length,
        )

    @classmethod
    def from_export(cls, directory: Path, spec: dict[str, Any]) -> HubTokenizer:
        path = directory / spec["file"]
        try:
            return cls(path.read_text(encoding="utf-8"), spec)
        except MissingExtraError:
            raise
        except Exception as exc:  # tokenizers reports a bad file as a bare Exception
            raise ModelError(
                f"cannot read the tokenizer {path} ({exc}); delete {directory} to export again"
            ) from exc

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch([self.clean(text) for text in texts])
        ids = np.array([row.ids for row in encoded], dtype=np.int64)
        if ids.shape != (len(texts), self.length):
            raise ModelError(
                f"the tokenizer gave ids of shape {ids.shape}, not rows of {self.length}"
            )
        if self.strip_id is not None:
            ids[ids == self.strip_id] = 0
        return ids


class Described(NamedTuple):
    """What an export stores to tokenize without torch, and texts to check it on."""

    spec: dict[str, Any]
    backend_json: str
    checks: tuple[str, ...]


def describe(wrapper: Any, file: str) -> Described | None:
    """The torch-free form of an open_clip HFTokenizer, or None when it cannot be one (a slow
    tokenizer, open_clip's "clips" mode, an unknown cleaner, no padding token)."""
    hub = getattr(wrapper, "tokenizer", None)
    backend = getattr(hub, "backend_tokenizer", None)
    clean = _cleaner_name(wrapper)
    if backend is None or getattr(wrapper, "tokenizer_mode", "") or clean is None:
        return None
    if hub.pad_token_id is None:
        return None
    spec = {
        "kind": KIND,
        "file": file,
        "clean": clean,
        "context_length": int(wrapper.context_length),
        "pad_id": int(hub.pad_token_id),
        "pad_token": str(hub.pad_token),
        "padding_side": str(hub.padding_side),
        "truncation_side": str(hub.truncation_side),
        "split_special_tokens": bool(getattr(hub, "split_special_tokens", False)),
        "strip_id": _strip_id(wrapper, hub),
    }
    specials = [str(token) for token in hub.all_special_tokens]
    checks = ("snake_case_words and CamelCase", *(f"a {t}b{t} c" for t in specials))
    return Described(spec, backend.to_str(), checks)


def _strip_id(wrapper: Any, hub: Any) -> int | None:
    """The separator id open_clip zeroes (XLM-RoBERTa-style models ask for it), if any."""
    if not wrapper.strip_sep_token or hub.sep_token_id is None:
        return None
    return int(hub.sep_token_id)


def _cleaner_name(wrapper: Any) -> str | None:
    """Which of open_clip's cleaning functions the wrapper uses, by our name for it."""
    from open_clip.tokenizer import get_clean_fn

    clean_fn = getattr(wrapper, "clean_fn", None)
    return next((name for name in CLEANERS if clean_fn is get_clean_fn(name)), None)
