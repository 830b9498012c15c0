"""Our YouTokenToMe reader/encoder against model files written in YouTokenToMe's format."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from imgfinder.embedders.tokenizers.yttm import SPACE, RuClipTokenizer, SpecialTokens, YttmBpe
from imgfinder.errors import ModelError

CORPUS = """
Кошка спит на диване. Собака бежит по траве, кошка смотрит в окно.
Красная машина стоит у дома 42; синяя машина едет по дороге №7.
A red car parks near house 42, a blue car drives down the road.
The cat sleeps on the sofa! The dog runs on the grass?
Фото 2024 года: закат над морем 🌅, горы 🏔️ и лес 🌲🌲.
Photo from 2024: sunset over the sea 🌅, mountains 🏔️ and forest.
"""


def write_model(
    path: Path,
    alphabet: dict[str, int],
    rules: list[tuple[int, int, int]],
    special: tuple[int, int, int, int] = (1, 0, 2, 3),
) -> Path:
    """Write a model file exactly as YouTokenToMe's BPEState::dump lays it out."""
    lines = [f"{len(alphabet)} {len(rules)}"]
    lines += [f"{ord(char)} {token}" for char, token in alphabet.items()]
    lines += [f"{x} {y} {z}" for x, y, z in rules]
    lines.append(" ".join(str(value) for value in special))
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def train(text: str, vocab_size: int, path: Path) -> tuple[Path, dict[str, list[int]]]:
    """A small BPE trainer in YouTokenToMe's conventions (ids 0-3 special, "▁" next, then
    characters by frequency; merge the most frequent pair, ties to the smallest ids).

    Returns the model file and each training word's final segmentation.
    """
    words = Counter(text.split())
    chars = Counter(char for word, n in words.items() for char in word for _ in range(n))
    alphabet = {chr(SPACE): 4}
    for char, _ in sorted(chars.items(), key=lambda item: (-item[1], item[0])):
        alphabet[char] = len(alphabet) + 4
    segmented = {word: [4] + [alphabet[c] for c in word] for word in words}
    rules: list[tuple[int, int, int]] = []
    next_id = len(alphabet) + 4
    while next_id < vocab_size:
        pairs: Counter[tuple[int, int]] = Counter()
        for word, tokens in segmented.items():
            for pair in itertools.pairwise(tokens):
                pairs[pair] += words[word]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], max(p), min(p), p[0]))
        rules.append((*best, next_id))
        for word, tokens in segmented.items():
            merged, i = [], 0
            while i < len(tokens):
                if tuple(tokens[i : i + 2]) == best:
                    merged.append(next_id)
                    i += 2
                else:
                    merged.append(tokens[i])
                    i += 1
            segmented[word] = merged
        next_id += 1
    return write_model(path, alphabet, rules), segmented


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[YttmBpe, dict[str, list[int]]]:
    path, segmented = train(CORPUS.lower(), 400, tmp_path_factory.mktemp("bpe") / "bpe.model")
    return YttmBpe.load(path), segmented


@pytest.fixture
def hand_made(tmp_path: Path) -> YttmBpe:
    """▁=4 a=5 b=6 c=7; rules by rank: ab, ▁a, ab+c, ▁a+b, aa."""
    alphabet = {chr(SPACE): 4, "a": 5, "b": 6, "c": 7}
    rules = [(5, 6, 8), (4, 5, 9), (8, 7, 10), (9, 6, 11), (5, 5, 12)]
    return YttmBpe.load(write_model(tmp_path / "bpe.model", alphabet, rules))


def test_file_format(hand_made: YttmBpe) -> None:
    assert hand_made.alphabet[SPACE] == 4 and hand_made.rules[0] == (5, 6, 8)
    assert hand_made.special == SpecialTokens(unk=1, pad=0, bos=2, eos=3)
    assert hand_made.vocab_size == 4 + 5 + 4
    assert hand_made.id_to_subword(10) == "abc" and hand_made.id_to_subword(0) == "<PAD>"


def test_merge_order_is_by_rank_then_leftmost(hand_made: YttmBpe) -> None:
    # "ab" (rank 0) beats "▁a" (rank 1), so the word ends as ▁ + abc, not ▁ab + c
    assert hand_made.encode("abc") == [4, 10]
    assert hand_made.encode_as_subwords("abc") == ["▁", "abc"]
    # "▁a" then "▁a"+"b": no "ab" pair survives to compete
    assert hand_made.encode("ab") == [4, 8]
    assert hand_made.encode("aab") == [9, 8]
    # equal ranks: the leftmost pair merges first
    assert hand_made.encode("aaa") == [9, 12]
    assert hand_made.encode("aaaa") == [9, 12, 5]
    assert hand_made.encode("ba") == [4, 6, 5]


def test_spaces_and_unknown_characters(hand_made: YttmBpe) -> None:
    assert hand_made.encode("  ab \t\n abc  ") == [4, 8, 4, 10]
    assert hand_made.encode("ab▁abc") == [4, 8, 4, 10]  # "▁" in the text separates words
    assert hand_made.encode("") == [] and hand_made.encode(" \n ") == []
    # a run of unknown characters is one UNK; known characters around it still merge
    assert hand_made.encode("ab€€€c") == [4, 8, 1, 7]
    assert hand_made.encode_as_subwords("ab€€€c") == ["▁", "ab", "€€€", "c"]
    assert hand_made.encode("€") == [4, 1]
    assert hand_made.encode("ab", bos=True, eos=True) == [2, 4, 8, 3]
    assert hand_made.encode("\u00a0ab") == [4, 1, 8]  # no-break space is not a separator


def test_trained_model_reproduces_training_segmentation(
    trained: tuple[YttmBpe, dict[str, list[int]]],
) -> None:
    bpe, segmented = trained
    for word, tokens in segmented.items():
        assert bpe.encode(word) == tokens, word
    assert bpe.decode(bpe.encode("кошка спит на диване")) == "кошка спит на диване"


@pytest.mark.parametrize(
    "text",
    [
        "кошка смотрит на собаку",
        "a red car near the house 42",
        "закат 2024 🌅 и 🌲",
        "photo, sunset; sea! road?",
        "машина and the car 2047",
    ],
)
def test_round_trip_in_every_script(
    trained: tuple[YttmBpe, dict[str, list[int]]], text: str
) -> None:
    bpe, _ = trained
    ids = bpe.encode(text)
    assert 1 not in ids  # every character was seen in training
    assert bpe.decode(ids) == text
    assert "".join(bpe.encode_as_subwords(text)).replace("▁", " ").strip() == text


def test_unseen_characters_become_unk(trained: tuple[YttmBpe, dict[str, list[int]]]) -> None:
    bpe, _ = trained
    ids = bpe.encode("кошка 日本語 🐙🐙 кошка")
    assert ids.count(1) == 2
    assert bpe.decode(ids, ignore_ids=[1]) == "кошка   кошка"  # the words keep their "▁"


def test_ruclip_tokenizer(trained: tuple[YttmBpe, dict[str, list[int]]]) -> None:
    bpe, _ = trained
    tokenizer = RuClipTokenizer(bpe, context_length=12)
    rows = tokenizer(["КОШКА спит", "кошка спит", "", "кошка " * 50])
    assert rows.dtype == np.int64 and rows.shape == (4, 12)
    np.testing.assert_array_equal(rows[0], rows[1])  # lower-cased
    body = bpe.encode("кошка спит")
    assert rows[0, : len(body) + 2].tolist() == [2, *body, 3]
    assert (rows[0, len(body) + 2 :] == 0).all()
    assert rows[2, :3].tolist() == [2, 3, 0]
    assert rows[3, 0] == 2 and rows[3, -1] == 3 and 0 not in rows[3]  # cut, EOS kept


def test_long_input_is_fast(trained: tuple[YttmBpe, dict[str, list[int]]]) -> None:
    bpe, _ = trained
    text = (CORPUS.lower() * 40) + "ж" * 3000  # plus one 3000-character word
    started = time.perf_counter()
    ids = bpe.encode(text)
    assert time.perf_counter() - started < 5
    assert bpe.decode(ids) == " ".join(text.split())


@pytest.mark.parametrize(
    "content",
    ["", "2 1\n9601 4\n", "1 0\n97 4\n1 0 2 3\n", "not a model", "1 0\n9601 4\n1 0 2\n"],
)
def test_bad_files_raise_model_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bpe.model"
    path.write_text(content)
    with pytest.raises(ModelError):
        YttmBpe.load(path)
    with pytest.raises(ModelError):
        YttmBpe.load(tmp_path / "missing.model")


REAL = Path(__file__).parent / "data" / "yttm"


def test_ids_equal_the_real_youtokentome() -> None:
    """A model file trained by YouTokenToMe's own C++ and the ids it gave (see data/yttm)."""
    bpe = YttmBpe.load(REAL / "bpe.model")
    cases = json.loads((REAL / "cases.json").read_text(encoding="utf-8"))
    assert len(cases["texts"]) == len(cases["ids"]) > 500
    wrong = [
        (text, expected, bpe.encode(text))
        for text, expected in zip(cases["texts"], cases["ids"], strict=True)
        if bpe.encode(text) != expected
    ]
    assert not wrong, wrong[:3]
    tokenizer = RuClipTokenizer(bpe, context_length=77)
    rows = tokenizer(cases["texts"])
    for text, row in zip(cases["texts"], rows, strict=True):
        ids = bpe.encode(text.lower())[:75]
        assert row.tolist() == [2, *ids, 3] + [0] * (75 - len(ids)), text
