"""Bilingual word + character-trigram tokenizer for the demo model, pure Python and numpy.

Each word becomes a row of feature ids: its own id when it is in the vocabulary (else UNK),
followed by hashed character trigrams of the word with boundary marks. The trigrams let the
model read inflections and words it never saw (Cyrillic and Latin alike); the word id lets it
be exact about the words it knows. Texts are lower-cased, «ё» is read as «е», and anything
that is not a letter or a digit separates words.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

PAD_ID = 0
UNK_ID = 1
_FIRST_WORD_ID = 2
_WORD = re.compile(r"[0-9a-zа-я]+")
_CACHE_LIMIT = 50_000


def normalize(text: str) -> str:
    """Lower-case, fold «ё» into «е» (people rarely type it) and keep letters/digits apart."""
    return text.lower().replace("ё", "е")


def split_words(text: str) -> list[str]:
    """Words of a text after `normalize`."""
    return _WORD.findall(normalize(text))


class Tokenizer:
    """Maps texts to int64[n, max_words, max_features] feature ids (0 is padding)."""

    def __init__(
        self,
        vocab: Sequence[str],
        buckets: int = 4096,
        max_words: int = 16,
        max_features: int = 12,
    ) -> None:
        self.vocab = list(vocab)
        self.buckets = int(buckets)
        self.max_words = int(max_words)
        self.max_features = int(max_features)
        self._ids = {word: _FIRST_WORD_ID + i for i, word in enumerate(self.vocab)}
        self._bucket_base = _FIRST_WORD_ID + len(self.vocab)
        self._cache: dict[str, list[int]] = {}

    @property
    def known(self) -> dict[str, int]:
        """The vocabulary's words (their ids), for telling a known word from a guessed one."""
        return self._ids

    @property
    def num_ids(self) -> int:
        """Size of the embedding table the ids index into."""
        return self._bucket_base + self.buckets

    def word_features(self, word: str) -> list[int]:
        """Feature ids of one normalised word: word id (or UNK) then trigram buckets."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        marked = f"<{word}>"
        grams = [marked[i : i + 3] for i in range(len(marked) - 2)]
        room = self.max_features - 1
        if len(grams) > room:  # keep both ends: stems at the start, case endings at the end
            head = room // 2
            grams = grams[:head] + grams[len(grams) - (room - head) :]
        ids = [self._ids.get(word, UNK_ID)]
        ids += [self._bucket_base + zlib.crc32(g.encode("utf-8")) % self.buckets for g in grams]
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[word] = ids
        return ids

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """int64[n, max_words, max_features]; words beyond `max_words` are dropped."""
        out = np.zeros((len(texts), self.max_words, self.max_features), dtype=np.int64)
        for row, text in enumerate(texts):
            for col, word in enumerate(split_words(text)[: self.max_words]):
                ids = self.word_features(word)
                out[row, col, : len(ids)] = ids
        return out

    def to_dict(self) -> dict:
        return {
            "format": "imgfinder-demo-tokenizer",
            "version": 1,
            "normalize": "lower, ё→е, words are runs of [0-9a-zа-я]",
            "features": "word id (0 pad, 1 unk) + crc32 of <word> character trigrams",
            "buckets": self.buckets,
            "max_words": self.max_words,
            "max_features": self.max_features,
            "vocab": self.vocab,
        }

    def save(self, path: str | Path) -> None:
        from imgfinder.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != "imgfinder-demo-tokenizer" or data.get("version") != 1:
            from imgfinder.errors import ModelError

            raise ModelError(f"{path} is not a demo tokenizer file this version can read")
        return cls(data["vocab"], data["buckets"], data["max_words"], data["max_features"])

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        min_count: int = 2,
        buckets: int = 4096,
        max_words: int = 16,
        max_features: int = 12,
    ) -> Tokenizer:
        """A tokenizer whose vocabulary is every word seen at least `min_count` times."""
        counts = Counter(word for text in texts for word in split_words(text))
        vocab = sorted(word for word, n in counts.items() if n >= min_count)
        return cls(vocab, buckets, max_words, max_features)
