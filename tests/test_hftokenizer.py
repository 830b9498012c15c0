"""The torch-free Hugging Face tokenizer gives open_clip's HFTokenizer ids, exactly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import test_multilingual
import test_siglip2

from imgfinder.embedders.hftokenizer import HubTokenizer, describe
from imgfinder.embedders.openclip import TOKENIZER_CHECKS

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
    """A tiny Unigram tokenizer with XLM-RoBERTa's specials and config (pads on the right)."""
    folder.mkdir()
    (folder / "tokenizer.json").write_text(test_multilingual.tiny_tokenizer_json())
    config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 78}
    special = dict(
        zip(
            ("bos_token", "pad_token", "eos_token", "unk_token", "mask_token"),
            test_multilingual.SPECIAL,
            strict=True,
        )
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(config | special | {"sep_token": "</s>"})
    )
    return folder


def gemma_like(folder: Path) -> Path:
    """A tiny BPE with Gemma's specials and config (pads on the left)."""
    folder.mkdir()
    (folder / "tokenizer.json").write_text(test_siglip2.tiny_tokenizer_json())
    config = {"tokenizer_class": "GemmaTokenizer", "model_max_length": 64}
    (folder / "tokenizer_config.json").write_text(json.dumps(config | test_siglip2.SPECIAL))
    return folder


@pytest.mark.parametrize(
    ("make", "clean", "length", "strip_sep"),
    [
        (xlm_roberta_like, "whitespace", 77, False),
        (xlm_roberta_like, "lower", 8, True),
        (xlm_roberta_like, "canonicalize", 64, True),
        (gemma_like, "canonicalize", 64, False),
        (gemma_like, "lower", 8, False),
    ],
)
def test_same_ids_as_open_clip(
    make, clean: str, length: int, strip_sep: bool, tmp_path: Path
) -> None:
    folder = make(tmp_path / "tokenizer")
    wrapper = open_clip_tokenizer.HFTokenizer(
        str(folder), context_length=length, clean=clean, strip_sep_token=strip_sep
    )
    described = describe(wrapper, "tokenizer.json")
    assert described is not None
    spec, backend = described
    assert spec["clean"] == clean and spec["context_length"] == length
    texts = random_texts()
    expected = wrapper(texts).numpy()
    ours = HubTokenizer(backend, json.loads(json.dumps(spec)))(texts)
    assert ours.dtype == np.int64 and ours.shape == (len(texts), length)
    np.testing.assert_array_equal(ours, expected)


def test_open_clips_own_clips_mode_is_not_claimed(tmp_path: Path) -> None:
    folder = xlm_roberta_like(tmp_path / "tokenizer")
    wrapper = open_clip_tokenizer.HFTokenizer(
        str(folder), context_length=16, tokenizer_mode="clips"
    )
    assert describe(wrapper, "tokenizer.json") is None
