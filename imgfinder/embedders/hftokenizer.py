"""open_clip's Hugging Face tokenizer (multilingual models) without torch or transformers.

open_clip tokenizes XLM-RoBERTa and SigLIP 2 text with a `transformers` tokenizer wrapped in
torch. Its fast tokenizers are the `tokenizers` library underneath, so an ONNX export keeps
that backend's JSON plus the few settings open_clip applies around it (text cleaning, fixed
length, padding and truncation sides, an optional separator strip); searching then needs
neither torch nor transformers. An export records it only after checking that it reproduces
open_clip's ids (see `openclip.torch_free_tokenizer`).
"""

from __future__ import annotations

import html
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgfinder.errors import MissingExtraError

KIND = "hf-tokenizers"
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _basic(text: str) -> str:
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def _whitespace(text: str) -> str:
    return " ".join(_basic(text).split())


def _lower(text: str) -> str:
    return _whitespace(text).lower()


def _canonicalize(text: str) -> str:
    """big_vision's prompt canonicalisation: no punctuation, lower case, single spaces."""
    text = _basic(text).replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split())


CLEANERS: dict[str, Callable[[str], str]] = {
    "whitespace": _whitespace,
    "lower": _lower,
    "canonicalize": _canonicalize,
}


class HubTokenizer:
    """Rows of `context_length` int64 ids, as open_clip's HFTokenizer returns them."""

    def __init__(self, tokenizer_json: str, spec: dict[str, Any]) -> None:
        try:
            import ftfy  # noqa: F401 - the cleaners need it; fail here, clearly
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingExtraError("tokenizers and ftfy", "multilingual") from exc
        self.clean = CLEANERS[spec["clean"]]
        self.length = int(spec["context_length"])
        self.strip_id = spec.get("strip_id")
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.enable_truncation(self.length, direction=spec["truncation_side"])
        self.tokenizer.enable_padding(
            direction=spec["padding_side"],
            pad_id=int(spec["pad_id"]),
            pad_token=spec["pad_token"],
            length=self.length,
        )

    @classmethod
    def from_export(cls, directory: Path, spec: dict[str, Any]) -> HubTokenizer:
        return cls((directory / spec["file"]).read_text(encoding="utf-8"), spec)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch([self.clean(text) for text in texts])
        ids = np.array([row.ids for row in encoded], dtype=np.int64).reshape(-1, self.length)
        if self.strip_id is not None:
            ids[ids == self.strip_id] = 0
        return ids


def describe(wrapper: Any, file: str) -> tuple[dict[str, Any], str] | None:
    """(spec, backend JSON) of an open_clip HFTokenizer, or None when it is not reproducible
    this way (a slow tokenizer, open_clip's "clips" mode, an unknown cleaner)."""
    hub = getattr(wrapper, "tokenizer", None)
    backend = getattr(hub, "backend_tokenizer", None)
    clean = _cleaner_name(wrapper)
    if backend is None or getattr(wrapper, "tokenizer_mode", "") or clean is None:
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
        "strip_id": _strip_id(wrapper, hub),
    }
    return spec, backend.to_str()


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
