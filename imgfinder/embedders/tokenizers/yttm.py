"""A pure-Python reader and encoder for YouTokenToMe BPE models (ruCLIP's `bpe.model`).

YouTokenToMe has no wheels for current Pythons, and its encoder is small: this module reads
its model file and reproduces its encoding exactly, so ruCLIP runs without it (or torch).

The model file is text, whitespace-separated:
    n_chars n_rules
    n_chars lines "codepoint id"        (the alphabet; U+2581 "▁" marks a word start)
    n_rules lines "left right merged"   (merge rules; their order is their priority)
    "unk_id pad_id bos_id eos_id"       (-1 when a special token is unused)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from imgfinder.errors import ModelError

#: "▁", prefixed to every word; a space character for the encoder, like ASCII whitespace
SPACE = 0x2581
#: the C locale's isspace() (YouTokenToMe tests `ch < 256 && isspace(ch)`)
ASCII_SPACES = frozenset({9, 10, 11, 12, 13, 32})
SPECIAL_NAMES = {"unk": "<UNK>", "pad": "<PAD>", "bos": "<BOS>", "eos": "<EOS>"}


def is_space(char: str) -> bool:
    """YouTokenToMe's word separator test."""
    code = ord(char)
    return code in ASCII_SPACES or code == SPACE


@dataclass(frozen=True)
class SpecialTokens:
    unk: int = 1
    pad: int = 0
    bos: int = 2
    eos: int = 3

    def ids(self) -> dict[int, str]:
        return {
            value: SPECIAL_NAMES[name]
            for name, value in vars(self).items()
            if isinstance(value, int) and value >= 0
        }


class YttmBpe:
    """A YouTokenToMe BPE model: `encode` gives the ids YouTokenToMe's `encode` would."""

    def __init__(
        self,
        alphabet: dict[int, int],
        rules: Sequence[tuple[int, int, int]],
        special: SpecialTokens = SpecialTokens(),
    ) -> None:
        if SPACE not in alphabet:
            raise ModelError("a YouTokenToMe model must contain the word-start symbol U+2581")
        self.alphabet = dict(alphabet)
        self.rules = list(rules)
        self.special = special
        self._ranks = {(left, right): rank for rank, (left, right, _) in enumerate(self.rules)}
        self._pieces = {token: chr(code) for code, token in self.alphabet.items()}
        for left, right, merged in self.rules:
            self._pieces[merged] = self._pieces[left] + self._pieces[right]
        self._encode_word = lru_cache(maxsize=65536)(self._encode_word_uncached)

    @classmethod
    def load(cls, path: str | Path) -> YttmBpe:
        """Read a model file written by YouTokenToMe (`yttm bpe` / `youtokentome.BPE.train`)."""
        try:
            numbers = [int(value) for value in Path(path).read_text(encoding="ascii").split()]
            n_chars, n_rules = numbers[0], numbers[1]
            body = numbers[2:]
            chars = body[: 2 * n_chars]
            rules = body[2 * n_chars : 2 * n_chars + 3 * n_rules]
            unk, pad, bos, eos = body[2 * n_chars + 3 * n_rules :][:4]
            alphabet = dict(zip(chars[0::2], chars[1::2], strict=True))
            triples = list(zip(rules[0::3], rules[1::3], rules[2::3], strict=True))
            if len(alphabet) != n_chars or len(triples) != n_rules:
                raise ValueError("counts do not match the header")
        except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
            raise ModelError(f"{path} is not a YouTokenToMe BPE model: {exc}") from exc
        return cls(alphabet, triples, SpecialTokens(unk=unk, pad=pad, bos=bos, eos=eos))

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet) + len(self.rules) + len(self.special.ids())

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of `text`; unknown characters become the unk id, one per run."""
        ids = [self.special.bos] if bos else []
        for word in _words(text):
            ids.extend(self._encode_word(word))
        if eos:
            ids.append(self.special.eos)
        return ids

    def encode_as_subwords(self, text: str) -> list[str]:
        """The pieces of `text` (unknown runs kept as their own text), for inspection."""
        pieces = []
        for word in _words(text):
            tokens, unknown = self._symbols(word)
            pieces.extend(
                self._pieces[token] if token >= 0 else unknown[token]
                for token in self._merge(tokens)
            )
        return pieces

    def id_to_subword(self, token: int) -> str:
        specials = self.special.ids()
        if token in specials:
            return specials[token]
        if token not in self._pieces:
            raise ModelError(f"token id {token} is outside this model's vocabulary")
        return self._pieces[token]

    def decode(self, ids: Iterable[int], ignore_ids: Iterable[int] = ()) -> str:
        """Text from ids, word starts turned back into spaces (as YouTokenToMe decodes)."""
        ignored = set(ignore_ids)
        text = "".join(self.id_to_subword(int(token)) for token in ids if int(token) not in ignored)
        return text.replace(chr(SPACE), " ").removeprefix(" ")

    # -- encoding one word

    def _symbols(self, word: str) -> tuple[list[int], dict[int, str]]:
        """Ids of "▁" and the word's characters; each run of unknown characters becomes one
        negative id, mapped to its text."""
        tokens = [self.alphabet[SPACE]]
        unknown: dict[int, str] = {}
        for char in word:
            token = self.alphabet.get(ord(char))
            if token is not None:
                tokens.append(token)
            elif tokens[-1] < 0:
                unknown[tokens[-1]] += char
            else:
                tokens.append(-len(tokens))
                unknown[tokens[-1]] = char
        return tokens, unknown

    def _encode_word_uncached(self, word: str) -> tuple[int, ...]:
        merged = self._merge(self._symbols(word)[0])
        return tuple(token if token >= 0 else self.special.unk for token in merged)

    def _merge(self, tokens: list[int]) -> list[int]:
        """Apply rules lowest rank first, leftmost first among equals, as YouTokenToMe does."""
        count = len(tokens)
        if count < 2:
            return tokens
        alive: list[int | None] = list(tokens)
        prev = list(range(-1, count - 1))
        after = [*range(1, count), -1]
        ranks = self._ranks
        queue = [
            (rank, i)
            for i in range(count - 1)
            if (rank := ranks.get((tokens[i], tokens[i + 1]))) is not None
        ]
        heapq.heapify(queue)
        while queue:
            rank, left = heapq.heappop(queue)
            right = after[left]
            first, second, merged = self.rules[rank]
            if right == -1 or alive[left] != first or alive[right] != second:
                continue
            alive[left], alive[right] = merged, None
            following = after[right]
            after[left] = following
            if following != -1:
                prev[following] = left
                rank = ranks.get((merged, alive[following]))  # type: ignore[arg-type]
                if rank is not None:
                    heapq.heappush(queue, (rank, left))
            before = prev[left]
            if before != -1:
                rank = ranks.get((alive[before], merged))  # type: ignore[arg-type]
                if rank is not None:
                    heapq.heappush(queue, (rank, before))
        out, position = [], 0
        while position != -1:
            out.append(alive[position])
            position = after[position]
        return out  # type: ignore[return-value]


def _words(text: str) -> list[str]:
    """Split on YouTokenToMe's spaces (ASCII whitespace and "▁"); empty words vanish."""
    words, current = [], []
    for char in text:
        if is_space(char):
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


class RuClipTokenizer:
    """ruCLIP's text processing: lower-case, BPE, BOS + ids + EOS, zero padding.

    Longer texts keep their first `context_length - 2` tokens, so EOS is always present
    (the text tower pools at it).
    """

    def __init__(
        self,
        bpe: YttmBpe,
        context_length: int,
        *,
        bos_id: int = 2,
        eos_id: int = 3,
        pad_id: int = 0,
    ) -> None:
        if context_length < 2:
            raise ModelError("a ruCLIP context must hold at least BOS and EOS")
        self.bpe = bpe
        self.context_length = context_length
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id

    @classmethod
    def load(cls, path: str | Path, context_length: int) -> RuClipTokenizer:
        return cls(YttmBpe.load(path), context_length)

    def encode(self, text: str) -> list[int]:
        ids = self.bpe.encode(text.lower())[: self.context_length - 2]
        return [self.bos_id, *ids, self.eos_id]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """int64[len(texts), context_length] token rows."""
        out = np.full((len(texts), self.context_length), self.pad_id, dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self.encode(text)
            out[row, : len(ids)] = ids
        return out
