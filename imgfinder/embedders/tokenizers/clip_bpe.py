"""OpenAI CLIP's byte-level BPE tokenizer without torch, for exports of models that use it."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from imgfinder.embedders.tokenizers import textclean
from imgfinder.embedders.towers import PARITY_TEXTS
from imgfinder.errors import MissingExtraError

CLIP_VOCAB_FILE = "clip_bpe_vocab.txt.gz"
#: merges in CLIP's 49408-token vocabulary (256 bytes, 256 word-final bytes, 2 specials)
CLIP_MERGES = 49152 - 256 - 2
#: texts on which the torch-free tokenizer must equal open_clip's before it is trusted
TOKENIZER_CHECKS = (
    *PARITY_TEXTS,
    "Hello, WORLD!! It's 3.14 &amp; naïve café <end_of_text> x",
    "  spaces\tand\nnewlines  ",
    "emoji 🙂🐙, 中文, русский, ελληνικά, عربى",
)


class ClipBpeTokenizer:
    """open_clip's default (OpenAI CLIP) tokenizer without torch: byte-level BPE.

    Clean (ftfy, HTML entities, whitespace, lower case), split with CLIP's pattern, map UTF-8
    bytes to characters, merge by rank; rows are SOT + ids + EOT, cut to the context (the last
    kept id becomes EOT) and zero-padded. An export records it only after checking that it
    reproduces open_clip's ids (`TOKENIZER_CHECKS`).
    """

    def __init__(self, merges_file: str | Path, context_length: int = 77) -> None:
        try:
            import ftfy  # noqa: F401 - the cleaning needs it; fail here, clearly
            import regex
        except ImportError as exc:
            raise MissingExtraError("ftfy and regex", "torch") from exc
        with gzip.open(merges_file, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")[1 : CLIP_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
        others = [byte for byte in range(256) if byte not in printable]
        self.byte_chars = {byte: chr(byte) for byte in printable}
        self.byte_chars |= {byte: chr(256 + i) for i, byte in enumerate(others)}
        alphabet = list(self.byte_chars.values())
        vocab = alphabet + [char + "</w>" for char in alphabet] + ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.ids = {token: index for index, token in enumerate(vocab)}
        self.ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.sot, self.eot = self.ids["<start_of_text>"], self.ids["<end_of_text>"]
        self.context_length = context_length
        self.pattern = regex.compile(
            r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"
            r"|[^\s\p{L}\p{N}]+",
            regex.IGNORECASE,
        )
        self._word = lru_cache(maxsize=65536)(self._merge_word)

    def clean(self, text: str) -> str:
        return textclean.lower(text)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self.pattern.findall(self.clean(text)):
            if piece in ("<start_of_text>", "<end_of_text>"):
                ids.append(self.ids[piece])
                continue
            chars = "".join(self.byte_chars[byte] for byte in piece.encode("utf-8"))
            ids.extend(self.ids[symbol] for symbol in self._word(chars))
        return ids

    def _merge_word(self, word: str) -> tuple[str, ...]:
        """Merge the best-ranked adjacent pair everywhere, left to right, until none is known."""
        symbols = [*word[:-1], word[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = set(itertools.pairwise(symbols))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, CLIP_MERGES))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return tuple(symbols)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """int64[len(texts), context_length] token rows."""
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot][: self.context_length]
            ids[-1] = self.eot
            out[row, : len(ids)] = ids
        return out
