"""Tiny stand-ins for the multilingual models' Hugging Face tokenizers, as the files a
download brings (tokenizer.json, tokenizer_config.json, ...), trained on a few sentences."""

from __future__ import annotations

import json

CORPUS = [
    "a red car at night",
    "красная машина ночью",
    "собака на пляже",
    "a dog on the beach",
    "синяя звезда и зелёный круг",
    "the quick brown fox jumps over the lazy dog 0123456789",
]
#: XLM-RoBERTa's special tokens, in the order of their ids
XLMR_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
#: Gemma's (SigLIP 2's) special tokens, with Gemma's ids 0-3
GEMMA_SPECIAL = {
    "pad_token": "<pad>",
    "eos_token": "<eos>",
    "bos_token": "<bos>",
    "unk_token": "<unk>",
}


def xlm_roberta_files() -> dict[str, str]:
    """A Unigram tokenizer like XLM-RoBERTa's, with its config (pads on the right)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.train_from_iterator(
        CORPUS,
        trainers.UnigramTrainer(vocab_size=200, special_tokens=XLMR_SPECIAL, unk_token="<unk>"),
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    config = {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": 78,
        "bos_token": "<s>",
        "cls_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
    }
    return {"tokenizer.json": tokenizer.to_str(), "tokenizer_config.json": json.dumps(config)}


def gemma_files() -> dict[str, str]:
    """A SentencePiece-style BPE like Gemma's, with its config (pads on the left)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=list(GEMMA_SPECIAL.values()))
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <eos>", special_tokens=[("<eos>", 1)]
    )
    config = {"tokenizer_class": "GemmaTokenizer", "model_max_length": 64, **GEMMA_SPECIAL}
    return {
        "tokenizer.json": tokenizer.to_str(),
        "tokenizer_config.json": json.dumps(config),
        "special_tokens_map.json": json.dumps(GEMMA_SPECIAL),
    }


def vocab_size(files: dict[str, str]) -> int:
    return len(json.loads(files["tokenizer.json"])["model"]["vocab"])
