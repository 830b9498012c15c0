"""The torch-free Hugging Face tokenizer gives open_clip's HFTokenizer ids, exactly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from tiny_tokenizers import gemma_files, xlm_roberta_files

from imgfinder.embedders.tokenizers.clip_bpe import TOKENIZER_CHECKS
from imgfinder.embedders.tokenizers.hub import HubTokenizer, describe
from imgfinder.errors import ModelError

pytest.importorskip("transformers")
open_clip_tokenizer = pytest.importorskip("open_clip.tokenizer")

ALPHABET = "abcxyzABZ019 .,!?'’&;<>-_абвгдёжяАБЯ🙂🐙中文ελ\t\n"


def random_texts(count: int = 200) -> list[str]:
    rng = random.Random(0)
    texts = [*TOKENIZER_CHECKS, "&lt;b&gt; &amp;amp;", "snake_case and CAPS", "a " * 200]
    return texts + [
        "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 90))) for _ in range(count)
    ]


def xlm_roberta_like(folder: Path) -> Path:
    return write(folder, xlm_roberta_files())


def gemma_like(folder: Path) -> Path:
    return write(folder, gemma_files())


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(
    ("make", "clean", "length", "options"),
    [
        (xlm_roberta_like, "whitespace", 77, {}),
        (xlm_roberta_like, "lower", 8, {"strip_sep_token": True}),
        (xlm_roberta_like, "canonicalize", 64, {"strip_sep_token": True}),
        (xlm_roberta_like, "whitespace", 16, {"split_special_tokens": True}),
        (gemma_like, "canonicalize", 64, {}),
        (gemma_like, "lower", 8, {}),
        (gemma_like, "whitespace", 64, {"split_special_tokens": True}),
    ],
)
def test_same_ids_as_open_clip(
    make, clean: str, length: int, options: dict, tmp_path: Path
) -> None:
    folder = make(tmp_path / "tokenizer")
    wrapper = open_clip_tokenizer.HFTokenizer(
        str(folder), context_length=length, clean=clean, **options
    )
    described = describe(wrapper, "tokenizer.json")
    assert described is not None
    assert described.spec["clean"] == clean and described.spec["context_length"] == length
    texts = [*random_texts(), *described.checks]
    assert any("</s>" in text or "<eos>" in text for text in described.checks)
    expected = wrapper(texts).numpy()
    spec = json.loads(json.dumps(described.spec))  # as stored in meta.json
    ours = HubTokenizer(described.backend_json, spec)(texts)
    assert ours.dtype == np.int64 and ours.shape == (len(texts), length)
    np.testing.assert_array_equal(ours, expected)


def test_a_broken_export_is_a_model_error(tmp_path: Path) -> None:
    wrapper = open_clip_tokenizer.HFTokenizer(str(xlm_roberta_like(tmp_path / "t")), 16)
    described = describe(wrapper, "tokenizer.json")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="export again"):
        HubTokenizer.from_export(tmp_path, described.spec)


def test_open_clips_own_clips_mode_is_not_claimed(tmp_path: Path) -> None:
    folder = xlm_roberta_like(tmp_path / "tokenizer")
    wrapper = open_clip_tokenizer.HFTokenizer(
        str(folder), context_length=16, tokenizer_mode="clips"
    )
    assert describe(wrapper, "tokenizer.json") is None
