"""Every architecture in the model registry on ONNX fp32 and int8, with random weights.

For each distinct network in imgfinder/embedders/models.toml (keys that build the same network
share a row): images/s at batch 8 (and 32 when cheap), texts/s at batch 32, each against
ViT-B-32 measured in the rounds right beside it, and what int8 does to search: the overlap of
the top 10 results of fp32 and int8 for text and image queries over a gallery of photo-like
images, with the worst cosine between fp32 and int8 vectors. The bundled demo model (real
weights) is measured the same way.

Nothing is downloaded. Random weights give the speed of the real network; tokenizers that only
exist on the Hugging Face hub are replaced by small stand-ins trained here (token ids of the
right context length; the text towers of those models always run their full context, so their
speed does not depend on the ids), and ruCLIP folders are written with random weights and a
stand-in BPE that encodes each query word as one token, as a 49k-token BPE mostly does.

Used by bench_models.py (which writes models.md and models.json); on its own:

    python bench/bench_registry.py [--only KEY ...] [--rounds 3] [--image-seconds 40]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "bench")) if p not in sys.path]

from common import photo_like  # noqa: E402

from imgfinder.embedders import registry  # noqa: E402

REFERENCE = "ViT-B-32"
K = 10
TEXT_BATCH = 32
#: the text queries whose top 10 fp32 and int8 must share (the rest pad the speed batch to 32)
QUERY_COUNT = 20
TEXTS = [
    "a dog running on the beach",
    "кошка спит на подоконнике",
    "sunset over the mountains",
    "красная машина у дома",
    "a birthday cake with candles",
    "дети играют в снегу",
    "a bowl of fruit on a wooden table",
    "старый город ночью",
    "two people hiking in a forest",
    "белый корабль в море",
    "a city street at night in the rain",
    "собака на пляже",
    "a plate of pasta with tomato sauce",
    "зимний лес и замёрзшее озеро",
    "a child riding a red bicycle",
    "цветы в вазе на столе",
    "an old church with a tall tower",
    "горы и облака на закате",
    "a cat sitting on a sofa",
    "люди на концерте",
    "a bridge over a river",
    "фото с дня рождения",
    "a train station in the snow",
    "жёлтые листья в парке",
    "fireworks over the harbour",
    "кофе и книга у окна",
    "a group photo at a wedding",
    "рыбалка на озере утром",
    "a sailing boat on a calm lake",
    "новогодняя ёлка с игрушками",
    "a horse in a green field",
    "мост через реку в тумане",
]
PHOTO_SIZE = (320, 240)
#: gallery bounds: the top 10 of fewer than 32 images says little
GALLERY_MIN, GALLERY_MAX = 32, 200
#: a network whose smallest gallery would take longer than this gets its speed measured only
MAX_GALLERY_SECONDS = 90.0
#: ruCLIP's config.json per architecture, as on the model cards (the vocabulary size only
#: sizes the embedding table: it costs a lookup, not time)
RUCLIP_CONFIGS: dict[str, dict[str, int]] = {
    f"ruclip-vit-{size}-patch{patch}-{side}": {
        "embed_dim": 768 if size == "large" else 512,
        "image_resolution": side,
        "vision_layers": 24 if size == "large" else 12,
        "vision_width": 1024 if size == "large" else 768,
        "vision_patch_size": patch,
        "context_length": 77,
        "vocab_size": 49408,
        "transformer_width": 768 if size == "large" else 512,
        "transformer_heads": 12 if size == "large" else 8,
        "transformer_layers": 12,
    }
    for size, patch, side in (
        ("base", 32, 224),
        ("base", 16, 224),
        ("base", 32, 384),
        ("base", 16, 384),
        ("large", 14, 224),
        ("large", 14, 336),
    )
}
#: Hugging Face text towers (open_clip `hf_model_name`) rebuilt offline from their config
HF_CONFIGS: dict[str, dict[str, Any]] = {
    "xlm-roberta-base": {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "vocab_size": 250002,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "layer_norm_eps": 1e-5,
    }
}
#: architectures open_clip 3.3 has no config for, as their authors publish them (TinyCLIP:
#: microsoft/Cream, TinyCLIP/src/open_clip/model_configs/; vision heads are width / 64); the
#: registry's entries read the same from their repository's open_clip_config.json
REPO_CONFIGS: dict[str, dict[str, Any]] = {
    f"TinyCLIP-ViT-{vision}M-32-Text-{text}M": {
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": width, "patch_size": 32},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 512,
            "heads": 8,
            "layers": layers,
        },
    }
    for vision, text, width, layers in ((40, 19, 512, 6), (61, 29, 640, 9))
}
COMMIT = "0" * 40
CALIBRATION_NOTE = (
    "random batch-norm statistics collapse every image onto one vector (mean cosine 1.000) "
    "and, in a dev run, made the same network 1.5-3x slower (degenerate activations, likely "
    "denormal floats), so they are first set on 32 other photo-like images, as training sets them"
)


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One network to measure, and the registry keys that build it."""

    name: str
    kind: str  # open_clip | ruclip | demo
    keys: list[str] = field(default_factory=list)
    top1: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    architecture: str | None = None
    config: dict[str, Any] | None = None
    #: FastViT towers: batch-norm statistics set on photo-like images (see calibrate_batch_norm)
    calibrate_bn: bool = False

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name)


def open_clip_config(architecture: str) -> dict[str, Any] | None:
    """open_clip's config of `architecture`, read from its JSON file (no torch import)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = (
        Path(next(iter(spec.submodule_search_locations))) / "model_configs" / f"{architecture}.json"
    )
    return json.loads(path.read_text()) if path.is_file() else None


def plain_shape(config: dict[str, Any]) -> str | None:
    """The shapes of a plain CLIP config (OpenAI-style towers), comparable across loaders."""
    vision, text = dict(config.get("vision_cfg", {})), dict(config.get("text_cfg", {}))
    if config.get("custom_text") or "timm_model_name" in vision or "hf_model_name" in text:
        return None
    if vision.get("head_width", 64) == 64:
        vision.pop("head_width", None)
    for name in ("pool_type", "eos_id", "pad_id"):
        text.pop(name, None)
    return json.dumps([config["embed_dim"], vision, text], sort_keys=True)


def registry_targets(model_dir: Path) -> tuple[list[Target], list[dict[str, str]]]:
    """(targets, entries that cannot be measured here with the reason), from the registry."""
    from imgfinder.embedders.families.ruclip import open_clip_config as ruclip_to_open_clip

    targets: dict[str, Target] = {}
    unmeasured: list[dict[str, str]] = []

    def add(key: str, name: str, kind: str, top1: float | None, **fields: Any) -> Target:
        config = fields.get("config")
        same = json.dumps(config, sort_keys=True) if config is not None else name
        target = targets.get(same)
        if target is None:
            target = targets[same] = Target(name=name, kind=kind, **fields)
        elif name != target.name:
            target.notes.append(f"{name} is the same network as {target.name}")
        target.keys.append(key)
        target.top1[key] = top1
        return target

    infos = registry.list_models(model_dir)
    ruclip_rows = []
    for info in infos:
        top1 = getattr(info, "imagenet_top1", None)
        if info.family == "demo":
            add(info.key, "demo", "demo", top1)
        elif info.family in ("open_clip", "immich"):
            config = open_clip_config(info.architecture) or REPO_CONFIGS.get(info.architecture)
            if config is None:
                unmeasured.append(
                    {
                        "key": info.key,
                        "architecture": info.architecture,
                        "reason": f"{info.architecture} is not an open_clip 3.3 architecture "
                        "(immich's M-CLIP export: XLM-RoBERTa large + ViT-B-16-plus-240), so "
                        "it cannot be rebuilt offline; its own ONNX files need a download",
                    }
                )
                continue
            target = add(
                info.key,
                info.architecture,
                "open_clip",
                top1,
                architecture=info.architecture,
                config=config,
            )
            if info.family == "immich":
                target.notes.append(
                    f"{info.key}: immich's own export (not measured: needs a download), fp32 "
                    "only, queries padded to the full context; this row is our export of "
                    "the same architecture"
                )
        elif info.family == "ruclip":
            ruclip_rows.append((info, top1))
    shapes = {plain_shape(t.config): t for t in targets.values() if t.config is not None}
    shapes.pop(None, None)
    for info, top1 in ruclip_rows:
        dims = RUCLIP_CONFIGS.get(info.architecture)
        if dims is None:
            unmeasured.append(
                {
                    "key": info.key,
                    "architecture": info.architecture,
                    "reason": "no known ruCLIP config for it",
                }
            )
            continue
        config = ruclip_to_open_clip(dims)
        twin = shapes.get(plain_shape(config))
        if twin is not None:
            twin.keys.append(info.key)
            twin.top1[info.key] = top1
            twin.notes.append(f"{info.key}: the same tower shapes (with QuickGELU, pooling at EOS)")
        else:
            add(
                info.key,
                info.architecture,
                "ruclip",
                top1,
                architecture=info.architecture,
                config={"ruclip": dims},
            )
    ordered = sorted(targets.values(), key=lambda t: (t.name != REFERENCE, t.kind == "demo"))
    for target in ordered:
        vision = (target.config or {}).get("vision_cfg", {})
        if str(vision.get("timm_model_name", "")).startswith("fastvit"):
            target.calibrate_bn = True
            target.notes.append(CALIBRATION_NOTE)
            target.notes.append(
                "FastViT's training-time branches fused (timm reparameterize_model) after "
                "that, as imgfinder runs MobileCLIP"
            )
    return ordered, unmeasured


# --------------------------------------------------------------------------- stand-in files


def write_hub_files(hub: Path, repo_id: str, files: dict[str, str | bytes]) -> Path:
    """Files laid out as huggingface_hub caches a download; returns the snapshot folder."""
    folder = hub / f"models--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = snapshot / name
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return snapshot


def corpus() -> list[str]:
    from imgfinder.embedders.tokenizers.clip_bpe import TOKENIZER_CHECKS

    return [*TEXTS, *TOKENIZER_CHECKS]


def stand_in_tokenizer(style: str, context_length: int) -> dict[str, str]:
    """A small Hugging Face tokenizer trained on the bench texts: "xlmr" (Unigram, <s> ... </s>,
    pad 1) or "gemma" (BPE, ... <eos>, pad 0), with the config files a download brings."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if style == "xlmr":
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.train_from_iterator(
            corpus(),
            trainers.UnigramTrainer(vocab_size=600, special_tokens=special, unk_token="<unk>"),
        )
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
        )
        config = {
            "tokenizer_class": "XLMRobertaTokenizer",
            "model_max_length": context_length,
            "bos_token": "<s>",
            "cls_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "mask_token": "<mask>",
        }
        return {"tokenizer.json": tokenizer.to_str(), "tokenizer_config.json": json.dumps(config)}
    names = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"}
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(
        corpus(), trainers.BpeTrainer(vocab_size=600, special_tokens=list(names.values()))
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <eos>", special_tokens=[("<eos>", 1)]
    )
    config = {"tokenizer_class": "GemmaTokenizer", "model_max_length": context_length, **names}
    return {
        "tokenizer.json": tokenizer.to_str(),
        "tokenizer_config.json": json.dumps(config),
        "special_tokens_map.json": json.dumps(names),
    }


def write_stand_ins(target: Target, models: Path) -> list[str]:
    """The Hugging Face files an open_clip architecture reads beyond open_clip itself, as
    stand-ins in `models`' own hub cache (where `imgfinder models pull` puts them)."""
    text = (target.config or {}).get("text_cfg", {})
    hub = registry.hub_cache_dir(models)
    notes = []
    model_name, tokenizer_name = text.get("hf_model_name"), text.get("hf_tokenizer_name")
    if model_name is not None and model_name not in HF_CONFIGS:
        raise RuntimeError(f"no offline config for the Hugging Face text tower {model_name}")
    if tokenizer_name is not None:
        style = "xlmr" if model_name else "gemma"
        files: dict[str, str | bytes] = dict(
            stand_in_tokenizer(style, int(text.get("context_length", 77)))
        )
        # transformers 5's AutoTokenizer reads the repo's config.json, even an empty one
        files["config.json"] = json.dumps(HF_CONFIGS[model_name]) if model_name else "{}"
        write_hub_files(hub, tokenizer_name, files)
        vocab = len(json.loads(str(files["tokenizer.json"]))["model"]["vocab"])
        notes.append(f"tokenizer {tokenizer_name} replaced by a {vocab}-token stand-in")
    if model_name is not None:
        snapshot = write_hub_files(
            hub, model_name, {"config.json": json.dumps(HF_CONFIGS[model_name])}
        )
        from transformers import AutoConfig, AutoModel

        from imgfinder.embedders.export import seeded

        with seeded():
            model = AutoModel.from_config(AutoConfig.from_pretrained(str(snapshot)))
        model.save_pretrained(str(snapshot))  # random weights where open_clip loads them
        notes.append(f"text tower {model_name} rebuilt from its config.json, random weights")
    return notes


def write_repo_folder(target: Target, folder: Path) -> list[str]:
    """A repository as the registry's entry pulls it (open_clip_config.json and weights),
    for an architecture open_clip has no name for, with random weights."""
    from safetensors.torch import save_file

    from imgfinder.embedders.export import import_torch, seeded

    import_torch()
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": target.config, "preprocess_cfg": {}}
    (folder / registry.REPO_CONFIG).write_text(json.dumps(config))
    with seeded():
        model = open_clip.create_model(f"{registry.LOCAL_DIR}{folder}")
    state = {name: value.contiguous() for name, value in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return ["its repository's open_clip_config.json as its authors publish the architecture"]


def write_yttm_stand_in(path: Path, texts: list[str]) -> None:
    """A YouTokenToMe model file over the characters of `texts` whose merges make each of
    their words one token (ids: pad 0, unk 1, bos 2, eos 3, "▁" and characters from 4)."""
    from imgfinder.embedders.tokenizers.yttm import SPACE

    words = sorted({word for text in texts for word in text.lower().split()})
    chars = sorted({ord(c) for word in words for c in word} | {SPACE})
    alphabet = {code: 4 + i for i, code in enumerate(chars)}
    rules: dict[tuple[int, int], int] = {}
    next_id = 4 + len(alphabet)
    for word in words:
        token = alphabet[SPACE]
        for char in word:
            pair = (token, alphabet[ord(char)])
            if pair not in rules:
                rules[pair] = next_id
                next_id += 1
            token = rules[pair]
    lines = [f"{len(alphabet)} {len(rules)}"]
    lines += [f"{code} {token}" for code, token in alphabet.items()]
    lines += [f"{left} {right} {merged}" for (left, right), merged in rules.items()]
    lines.append("1 0 2 3")
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def write_ruclip_folder(target: Target, folder: Path) -> list[str]:
    """A ruCLIP folder (config.json, bpe.model, model.safetensors) with random weights."""
    from safetensors.torch import save_file

    from imgfinder.embedders.export import import_torch, seeded
    from imgfinder.embedders.families import ruclip
    from imgfinder.embedders.towers import PARITY_TEXTS

    import_torch()
    from open_clip.model import CLIP

    dims = (target.config or {})["ruclip"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ruclip.CONFIG_FILE).write_text(json.dumps(dims))
    write_yttm_stand_in(folder / ruclip.TOKENIZER_FILE, [*TEXTS, *PARITY_TEXTS])
    with seeded():
        model = CLIP(**ruclip.open_clip_config(dims))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    return ["ruCLIP folder with random weights; bpe.model is a stand-in (one token per word)"]


# --------------------------------------------------------------------------- building


def build(target: Target, runtime: str, work: Path) -> Any:
    """The embedder of `target` in `runtime`, as the registry's loaders build it."""
    if target.kind == "ruclip":
        from imgfinder.embedders.families.ruclip import RuClipEmbedder

        return RuClipEmbedder(
            work / "ruclip" / target.slug, runtime=runtime, onnx_dir=work / "onnx"
        )
    if target.kind == "demo":
        from imgfinder.embedders.families.demo import DemoEmbedder

        if runtime == "onnx":
            return registry.create_embedder("demo", runtime="onnx", model_dir=work / "models")
        return DemoEmbedder(work / "demo-int8", runtime="onnx")
    from imgfinder.embedders.families.openclip import OpenClipEmbedder

    cls = bench_open_clip_class() if target.calibrate_bn else OpenClipEmbedder
    from_repo = target.architecture in REPO_CONFIGS
    model = cls(
        str(target.architecture),
        f"{registry.LOCAL_DIR}{work / 'repos' / target.slug}" if from_repo else None,
        runtime=runtime,
        cache_dir=work / "models",
        onnx_dir=work / "onnx",
    )
    return model


@functools.cache
def bench_open_clip_class() -> type:
    """OpenClipEmbedder whose torch model gets its batch-norm statistics set before export
    (a change of source key): set on the model as built, then fused as imgfinder fuses it
    (folding random statistics into the convolutions first would keep them)."""
    from unittest import mock

    from imgfinder.embedders.families import openclip

    class BenchOpenClip(openclip.OpenClipEmbedder):
        @property
        def source_key(self) -> str:
            return f"{super().source_key}:bn-calibrated"

        def _load_torch_model(self) -> Any:
            with mock.patch.object(openclip, "fused", lambda model: model):
                model, preprocess, tokenize = super()._load_torch_model()
            calibrate_batch_norm(model.visual, preprocess)
            return openclip.fused(model), preprocess, tokenize

    return BenchOpenClip


def calibrate_batch_norm(visual: Any, preprocess: Any, count: int = 32) -> None:
    """Batch-norm running statistics of random weights replaced by those of `count`
    photo-like images (not the gallery's), as training would have set them."""
    import torch

    pixels = torch.from_numpy(
        np.stack([preprocess(photo_like(*PHOTO_SIZE, seed=5000 + i)) for i in range(count)])
    )
    norms = [m for m in visual.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches below
    visual.train()
    with torch.no_grad():
        for batch in pixels.split(16):
            visual(batch)
    visual.eval()


def quantize_demo(work: Path) -> list[str]:
    """The bundled demo's ONNX towers quantised as imgfinder quantises open_clip's (the demo
    itself refuses int8), in a copy of its folder."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from imgfinder.embedders.families import demo

    source, folder = demo.DEFAULT_MODEL_DIR, work / "demo-int8"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (demo.CONFIG_FILE, demo.TOKENIZER_FILE, demo.WEIGHTS_FILE):
        shutil.copy(source / name, folder / name)
    for name in (demo.IMAGE_ONNX, demo.TEXT_ONNX):
        quantize_dynamic(
            source / name,
            folder / name,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            reduce_range=True,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True},
        )
    return [
        "the demo family refuses int8 (fp32 only); its int8 here is the bundled ONNX quantised "
        "with the settings imgfinder uses for open_clip (MatMul weights only: the image tower "
        "is convolutional and stays fp32)"
    ]


def export_task(target: Target, work: Path) -> dict[str, Any]:
    """Make `target`'s fp32 and int8 ONNX towers (in a process of its own); what it took."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    started = time.perf_counter()
    notes: list[str] = []
    try:
        if target.kind == "demo":
            notes += quantize_demo(work)
            return {"seconds": round(time.perf_counter() - started, 1), "notes": notes}
        if target.kind == "ruclip":
            notes += write_ruclip_folder(target, work / "ruclip" / target.slug)
        elif target.architecture in REPO_CONFIGS:
            notes += write_repo_folder(target, work / "repos" / target.slug)
        else:
            notes += write_stand_ins(target, work / "models")
        model = build(target, "onnx-int8", work)
        model.embed_texts(["export"])
        meta = model.towers.meta
    except Exception as exc:  # reported in the table instead of ending the run
        return {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "trace_seconds": meta.get("export_seconds"),
        "parity_at_export": meta.get("parity"),
        "tokenizer": (meta.get("tokenizer") or {}).get("kind"),
        "notes": notes,
    }


def export_all(targets: list[Target], work: Path, processes: int = 2) -> dict[str, dict[str, Any]]:
    """Exports, `processes` at a time (tracing and quantising are mostly one thread each),
    each in a fresh process that gives its memory back; the biggest first."""
    order = sorted(targets, key=lambda t: -weight(t))
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, maxtasksperchild=1) as pool:
        pending = {t.name: pool.apply_async(export_task, (t, work)) for t in order}
        return {name: result.get() for name, result in pending.items()}


def weight(target: Target) -> float:
    """Rough export cost (quantising dominates: about the number of weights), to start the
    slow ones first."""
    config = target.config or {}
    if "ruclip" in config:
        dims = config["ruclip"]
        side = dims["image_resolution"] / dims["vision_patch_size"]
        return dims["vision_layers"] * dims["vision_width"] ** 2 * (1 + side**2 / 2000)
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    if "timm_model_name" in vision:
        image = 30e6 if "fastvit" in vision["timm_model_name"] else 90e6
    else:
        image = 12 * vision.get("layers", 12) * vision.get("width", 768) ** 2
    words = (
        85e6
        if "hf_model_name" in text
        else 12 * text.get("layers", 12) * text.get("width", 512) ** 2
    )
    return image + words


# --------------------------------------------------------------------------- measuring


def gallery_images(count: int, start: int = 0) -> list[Any]:
    return [photo_like(*PHOTO_SIZE, seed=1000 + i) for i in range(start, start + count)]


def _status_mb(field_name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(target: Target, runtime: str, work: Path, connection: Any) -> None:
    """One embedder in its own process. Answers ("images", start, batch sizes) with the
    vectors of gallery images start... and the seconds per batch, ("texts", texts) with
    vectors and seconds; "stop" ends it."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    started = time.perf_counter()
    model = build(target, runtime, work)
    model.embed_texts(["warm up"])
    prepared: dict[int, np.ndarray] = {}

    def pixels(start: int, count: int) -> np.ndarray:
        missing = [i for i in range(start, start + count) if i not in prepared]
        if missing:
            for i, image in zip(missing, gallery_images(len(missing), missing[0]), strict=True):
                prepared[i] = model.prepare_image(image)
        return np.stack([prepared[i] for i in range(start, start + count)])

    model.embed_prepared(pixels(0, 1))
    connection.send(
        {
            "load_seconds": round(time.perf_counter() - started, 2),
            "key": model.key,
            "torch_imported": "torch" in sys.modules,
        }
    )
    while (command := connection.recv()) != "stop":
        if command[0] == "images":
            _, start, sizes = command
            vectors, seconds, offset = [], [], start
            for size in sizes:
                batch = pixels(offset, size)
                begun = time.perf_counter()
                vectors.append(model.embed_prepared(batch))
                seconds.append(time.perf_counter() - begun)
                offset += size
            connection.send((np.concatenate(vectors), seconds))
        elif command[0] == "texts":
            begun = time.perf_counter()
            vectors = model.embed_texts(command[1])
            connection.send((vectors, time.perf_counter() - begun))
        elif command[0] == "memory":
            connection.send(round(_status_mb("VmHWM"), 1))


class Workers:
    """fp32 and int8 worker processes of one target; dying workers raise, not hang."""

    def __init__(self, target: Target, work: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.name = target.name
        self.connections: dict[str, Any] = {}
        self.processes: list[Any] = []
        self.setup: dict[str, Any] = {}
        runtimes = {"fp32": "onnx", "int8": "onnx-int8"}
        try:
            for precision, runtime in runtimes.items():
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=worker, args=(target, runtime, work, theirs), daemon=True
                )
                process.start()
                theirs.close()
                self.connections[precision] = ours
                self.processes.append(process)
            for precision in runtimes:
                self.setup[precision] = self.ask(precision)
        except BaseException:
            self.close()
            raise

    def ask(self, precision: str, command: Any = None) -> Any:
        connection = self.connections[precision]
        if command is not None:
            connection.send(command)
        try:
            return connection.recv()
        except EOFError:
            raise RuntimeError(f"the {precision} worker of {self.name} died") from None

    def close(self) -> None:
        for connection in self.connections.values():
            with contextlib.suppress(OSError):
                connection.send("stop")
            connection.close()
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()


def schedule(gallery: int, rounds: int, with_b32: bool) -> list[list[int]]:
    """Batch sizes per round after the probe round: the rest of the gallery in batches of 8,
    one batch of 32 in each round when `with_b32`."""
    rest = gallery - 8
    plan: list[list[int]] = [[] for _ in range(rounds - 1)]
    if with_b32:
        for sizes in plan:
            if rest >= 32 + 8:
                sizes.append(32)
                rest -= 32
    for i in range(rest // 8):
        plan[i % len(plan)].append(8)
    return plan


def top_k(gallery: np.ndarray, queries: np.ndarray, leave_out: bool = False) -> np.ndarray:
    scores = queries @ gallery.T
    if leave_out:
        np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :K]


def overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean, min) over queries of |top-K of a ∩ top-K of b| / K."""
    shared = [len(set(x) & set(y)) / K for x, y in zip(a, b, strict=True)]
    return float(np.mean(shared)), float(np.min(shared))


def fidelity(
    images: dict[str, np.ndarray], texts: dict[str, np.ndarray], with_overlap: bool = True
) -> dict[str, Any]:
    """What int8 changes: top-10 overlap for text and image queries, worst cosines."""
    cosines = {
        "gallery": len(images["fp32"]),
        "min_cosine_images": round(float((images["fp32"] * images["int8"]).sum(1).min()), 5),
        "min_cosine_texts": round(float((texts["fp32"] * texts["int8"]).sum(1).min()), 5),
    }
    if not with_overlap:
        return cosines
    queries = {p: texts[p][:QUERY_COUNT] for p in texts}
    text_mean, text_min = overlap(
        top_k(images["fp32"], queries["fp32"]), top_k(images["int8"], queries["int8"])
    )
    image_mean, image_min = overlap(
        top_k(images["fp32"], images["fp32"], leave_out=True),
        top_k(images["int8"], images["int8"], leave_out=True),
    )
    gram = images["fp32"] @ images["fp32"].T
    off_diagonal = gram[~np.eye(len(gram), dtype=bool)]
    return {
        **cosines,
        "text_queries": len(queries["fp32"]),
        "image_queries": len(images["fp32"]),
        "top10_overlap_text": round(text_mean, 3),
        "top10_overlap_text_min": round(text_min, 2),
        "top10_overlap_image": round(image_mean, 3),
        "top10_overlap_image_min": round(image_min, 2),
        #: what two unrelated rankings would share
        "top10_overlap_chance": round(K / len(images["fp32"]), 3),
        "gallery_mean_cosine": round(float(off_diagonal.mean()), 4),
    }


def rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def measure_target(
    target: Target,
    work: Path,
    reference: Workers | None,
    rounds: int,
    image_seconds: float,
) -> tuple[dict[str, Any], Workers | None]:
    """Speed and int8 fidelity of one target, each round beside the reference (ViT-B-32).

    The probe round embeds 8 gallery images per precision; its speed sizes the gallery so
    fp32 and int8 together spend about `image_seconds` on it (GALLERY_MIN..GALLERY_MAX).
    Returns the results and the target's workers when the caller keeps them (the reference).
    """
    rounds = max(2, rounds)
    workers = Workers(target, work)
    keep = reference is None
    reference = reference or workers
    try:
        b8: dict[str, list[float]] = {"fp32": [], "int8": []}
        b32: dict[str, list[float]] = {"fp32": [], "int8": []}
        ref_b8: dict[str, list[float]] = {"fp32": [], "int8": []}
        text_rates: dict[str, list[float]] = {"fp32": [], "int8": []}
        vectors: dict[str, list[np.ndarray]] = {"fp32": [], "int8": []}
        text_vectors: dict[str, np.ndarray] = {}
        offset, plan = 0, [[8]]
        r, speed_only = 0, False
        text_rounds = 2
        while r < len(plan):
            sizes = plan[r]
            order = ("fp32", "int8") if r % 2 == 0 else ("int8", "fp32")
            if reference is not workers:
                for precision in order:
                    _, seconds = reference.ask(precision, ("images", 0, [8]))
                    ref_b8[precision].append(rate(8, sum(seconds)))
            for precision in order:
                found, seconds = workers.ask(precision, ("images", offset, sizes))
                vectors[precision].append(found)
                small = [s for size, s in zip(sizes, seconds, strict=True) if size == 8]
                if small:
                    b8[precision].append(rate(8 * len(small), sum(small)))
                b32[precision] += [
                    rate(32, s) for size, s in zip(sizes, seconds, strict=True) if size == 32
                ]
            if r < text_rounds:
                for precision in order:
                    found, seconds = workers.ask(precision, ("texts", TEXTS))
                    text_rates[precision].append(rate(len(TEXTS), seconds))
                    text_vectors.setdefault(precision, found)
            offset += sum(sizes)
            if r == 0:
                per_image = 1 / b8["fp32"][0] + 1 / b8["int8"][0]
                if GALLERY_MIN * per_image > MAX_GALLERY_SECONDS:
                    speed_only = True
                    plan.append([8])
                else:
                    gallery = int(image_seconds / per_image) // 8 * 8
                    gallery = max(GALLERY_MIN, min(GALLERY_MAX, gallery))
                    plan += schedule(gallery, rounds, with_b32=gallery >= 96)
            r += 1
        images = {p: np.concatenate(v) for p, v in vectors.items()}
        memory = {p: workers.ask(p, ("memory",)) for p in ("fp32", "int8")}
        median = lambda values: round(statistics.median(values), 2) if values else None  # noqa: E731
        result: dict[str, Any] = {
            "images_per_s_batch_8": {p: median(v) for p, v in b8.items()},
            "images_per_s_batch_32": {p: median(v) for p, v in b32.items()},
            "texts_per_s_batch_32": {p: median(v) for p, v in text_rates.items()},
            "rounds": len(plan),
            "peak_rss_mb": memory,
            "setup": workers.setup,
            **fidelity(images, text_vectors, with_overlap=not speed_only),
        }
        if reference is not workers:
            result["reference_images_per_s_batch_8"] = {p: median(v) for p, v in ref_b8.items()}
            result["vs_reference_batch_8"] = {
                p: round(statistics.median(b8[p]) / statistics.median(ref_b8[p]), 3)
                for p in ("fp32", "int8")
            }
        else:
            result["reference_images_per_s_batch_8"] = result["images_per_s_batch_8"]
            result["vs_reference_batch_8"] = {"fp32": 1.0, "int8": 1.0}
        return result, (workers if keep else None)
    finally:
        if not keep:
            workers.close()


def measure_demo_world(work: Path) -> dict[str, Any]:
    """The demo model on its own world (its training domain): scenes and captions of it."""
    from imgfinder.demo import world

    demo = Target(name="demo", kind="demo")
    fp32, int8 = build(demo, "onnx", work), build(demo, "onnx-int8", work)
    scenes = world.make_dataset(GALLERY_MAX, seed=7)
    pictures = [world.render(scene, size=64) for scene in scenes]
    texts = [
        *world.make_queries(scenes, "en", QUERY_COUNT // 2, seed=1).texts,
        *world.make_queries(scenes, "ru", QUERY_COUNT // 2, seed=2).texts,
    ]
    images = {"fp32": fp32.embed_images(pictures), "int8": int8.embed_images(pictures)}
    vectors = {"fp32": fp32.embed_texts(texts), "int8": int8.embed_texts(texts)}
    return {"queries": texts[:4], **fidelity(images, vectors)}


def sweep(
    work: Path,
    rounds: int = 3,
    image_seconds: float = 40.0,
    only: list[str] | None = None,
    log: Any = print,
    before_measuring: Any = None,
) -> dict[str, Any]:
    """Export every target, then measure each beside ViT-B-32; the registry section's data.

    `before_measuring()` runs between the two (bench_models.py measures its runtimes there,
    on the ViT-B-32 export made here).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    (work / "models").mkdir(parents=True, exist_ok=True)
    targets, unmeasured = registry_targets(work / "models")
    if only:
        targets = [t for t in targets if t.name == REFERENCE or set(t.keys) & set(only)]
    if not targets or targets[0].name != REFERENCE:
        raise RuntimeError(f"the registry has no {REFERENCE} entry to compare with")
    started = time.perf_counter()
    exports = export_all(targets, work)
    export_wall = time.perf_counter() - started
    log(f"exports done in {export_wall:.0f} s")
    if "error" in exports[REFERENCE]:
        raise RuntimeError(f"the {REFERENCE} export failed: {exports[REFERENCE]['error']}")
    if before_measuring is not None:
        before_measuring()
    measuring_started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    reference: Workers | None = None
    try:
        for target in targets:
            row: dict[str, Any] = {**asdict(target), "export": exports[target.name]}
            row.pop("config")
            row["notes"] = target.notes + exports[target.name].get("notes", [])
            rows.append(row)
            if "error" in exports[target.name]:
                log(f"{target.name}: export failed: {exports[target.name]['error']}")
                continue
            begun = time.perf_counter()
            row["load_average_at_start"] = round(os.getloadavg()[0], 2)
            try:
                result, kept = measure_target(target, work, reference, rounds, image_seconds)
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                log(f"{target.name}: {row['error']}")
                continue
            reference = reference or kept
            row.update(result, measure_seconds=round(time.perf_counter() - begun, 1))
            if target.kind == "demo":
                row["demo_world"] = measure_demo_world(work)
            log(
                f"{target.name}: fp32 {result['images_per_s_batch_8']['fp32']} img/s "
                f"({result['vs_reference_batch_8']['fp32']}x), int8 "
                f"{result['images_per_s_batch_8']['int8']} img/s; top-10 overlap text "
                f"{result.get('top10_overlap_text')}, image {result.get('top10_overlap_image')} "
                f"({row['measure_seconds']} s)"
            )
    finally:
        if reference is not None:
            reference.close()
    return {
        "rows": rows,
        "unmeasured": unmeasured,
        "export_wall_seconds": round(export_wall, 1),
        "measure_wall_seconds": round(time.perf_counter() - measuring_started, 1),
        "rounds": rounds,
        "image_seconds": image_seconds,
        "gallery_bounds": [GALLERY_MIN, GALLERY_MAX],
        "photo_size": list(PHOTO_SIZE),
    }


# --------------------------------------------------------------------------- report


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fastest_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Which models reach twice ViT-B-32's images/s (fp32 the main comparison, int8 too)."""
    measured = [
        r
        for r in rows
        if "vs_reference_batch_8" in r and r["kind"] != "demo" and r["name"] != REFERENCE
    ]
    lines = []
    for precision in ("fp32", "int8"):
        fast = [r for r in measured if r["vs_reference_batch_8"][precision] >= 2.0]
        fast.sort(key=lambda r: -r["vs_reference_batch_8"][precision])
        if fast:
            best = fast[0]
            accurate = max(fast, key=lambda r: max((v or 0) for v in r["top1"].values()))
            names = ", ".join(
                f"{r['name']} {r['vs_reference_batch_8'][precision]:.2f}x" for r in fast
            )
            lines.append(
                f"- **ONNX {precision}, batch 8: the fastest model reaching ≥ 2× ViT-B-32 is "
                f"{best['name']}** ({best['images_per_s_batch_8'][precision]} images/s, "
                f"{best['vs_reference_batch_8'][precision]:.2f}× ViT-B-32's "
                f"{best['reference_images_per_s_batch_8'][precision]}). All at ≥ 2×: {names}; "
                f"the most accurate of them (ImageNet top-1): {accurate['name']} "
                f"({_top1(accurate)})."
            )
        else:
            top = sorted(measured, key=lambda r: -r["vs_reference_batch_8"][precision])[:3]
            names = ", ".join(
                f"{r['name']} {r['vs_reference_batch_8'][precision]:.2f}× "
                f"({r['images_per_s_batch_8'][precision]} images/s)"
                for r in top
            )
            lines.append(
                f"- **ONNX {precision}, batch 8: no model reaches 2× ViT-B-32**; the fastest: "
                f"{names}."
            )
    return lines


def _top1(row: dict[str, Any]) -> str:
    values = [f"{key} {value}" for key, value in row["top1"].items() if value is not None]
    return ", ".join(values) if values else "none published"


def markdown(section: dict[str, Any]) -> str:
    rows = section["rows"]
    lines = [
        "## Every registry architecture: ONNX fp32 and int8 (random weights)",
        "",
        f"Each network is measured in {section['rounds']} rounds (a probe round of 8 images, "
        "then the rest of its gallery), each round beside ViT-B-32 (8 images per precision), "
        "so the × columns compare speeds taken under the same load. fp32 and int8 each run "
        "in their own process. Exports ran two at a time before any measuring "
        f"({section['export_wall_seconds']} s in all).",
        "",
        "| network | registry keys (ImageNet zero-shot top-1 %) | fp32 img/s b8 | int8 img/s b8 "
        "| fp32 ×B-32 | int8 ×B-32 | fp32 img/s b32 | int8 img/s b32 | fp32 texts/s b32 "
        "| int8 texts/s b32 | export + int8 s | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        keys = ", ".join(
            f"{key} ({row['top1'][key]})" if row["top1"].get(key) is not None else key
            for key in row["keys"]
        )
        if "images_per_s_batch_8" not in row:
            reason = row.get("error") or row["export"].get("error", "")
            lines.append(f"| {row['name']} | {keys} | not measured: {reason} |||||||||")
            continue
        speed, ratio = row["images_per_s_batch_8"], row["vs_reference_batch_8"]
        big, texts = row["images_per_s_batch_32"], row["texts_per_s_batch_32"]
        lines.append(
            f"| {row['name']} | {keys} | {_cell(speed['fp32'])} | {_cell(speed['int8'])} "
            f"| {ratio['fp32']:.2f} | {ratio['int8']:.2f} | {_cell(big['fp32'])} "
            f"| {_cell(big['int8'])} | {_cell(texts['fp32'])} | {_cell(texts['int8'])} "
            f"| {_cell(row['export'].get('seconds'))} | {_cell(row.get('load_average_at_start'))} |"
        )
    for entry in section["unmeasured"]:
        lines.append(
            f"| {entry['architecture']} | {entry['key']} | not measured: {entry['reason']} "
            "|||||||||"
        )
    beside = [r["reference_images_per_s_batch_8"] for r in rows[1:] if "vs_reference_batch_8" in r]
    if beside:
        lines += [
            "",
            "ViT-B-32 measured beside the others, images/s at batch 8: fp32 "
            f"{min(b['fp32'] for b in beside)}-{max(b['fp32'] for b in beside)}, int8 "
            f"{min(b['int8'] for b in beside)}-{max(b['int8'] for b in beside)} (the machine's "
            "load moved: compare the × columns, not images/s across rows). Load: the 1-minute "
            "load average as each network's measuring began (2 = both cores busy).",
        ]
    lines += ["", *fastest_lines(rows), ""]
    lines += [
        "### What int8 changes in search results",
        "",
        f"Top-{K} overlap: for each query, |top {K} with fp32 ∩ top {K} with int8| / {K}, "
        f"mean (and worst) over {QUERY_COUNT} text queries (English and Russian) and over every "
        "gallery image as a query (leave-one-out) against a gallery of photo-like images "
        f"({section['photo_size'][0]}×{section['photo_size'][1]}, bench/common.py). Min cosine: "
        "the worst agreement of an fp32 vector with its int8 twin. Random weights crowd "
        "embeddings together (mean cosine between gallery images, last column), which makes "
        "rankings fragile: read these as a lower bound, the demo row (real weights) as what "
        "trained weights do.",
        "",
        "| network | gallery | text top-10 overlap (worst) | image top-10 overlap (worst) "
        "| chance | min cosine images | min cosine texts | gallery mean cosine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "min_cosine_images" not in row:
            continue
        lines.append(_fidelity_row(row["name"], row))
        if "demo_world" in row:
            lines.append(
                _fidelity_row("demo, on its own world (scenes + captions)", row["demo_world"])
            )
    lines += ["", "Reading the tables:", "", *READING, "", "Notes:", ""]
    notes: dict[str, list[str]] = {}  # note -> the rows it is about, in table order
    for row in rows:
        said = list(row["notes"])
        export = row.get("export", {})
        if export.get("tokenizer") is None and row["kind"] == "open_clip" and "error" not in export:
            said.append("its export has no torch-free tokenizer")
        if row.get("setup", {}).get("fp32", {}).get("torch_imported"):
            said.append("its ONNX worker imported torch (tokenizer)")
        if row.get("gallery") is not None and "top10_overlap_text" not in row:
            said.append(
                "too slow for a gallery in this run's time: speed from "
                f"{row['rounds']} rounds of 8 images, no top-10 overlap"
            )
        elif row.get("gallery") is not None and row["gallery"] < 100:
            said.append(f"slow, so a gallery of {row['gallery']} images")
        for note in said:
            notes.setdefault(note, []).append(row["name"])
    lines += [f"- {', '.join(names)}: {note}" for note, names in notes.items()]
    lines.append("")
    return "\n".join(lines)


READING = [
    "- The × columns are the ones to compare: when other programs share the machine its load "
    "moves within a run, and even these ratios move by about ±20 % between runs.",
    "- int8 is imgfinder's dynamic quantisation of MatMul weights only. On a CPU with VNNI "
    "that makes transformer towers several times faster, but leaves FastViT (MobileCLIP), "
    "mostly convolutions, nearly where fp32 is.",
    "- Text towers: OpenAI-style causal ones (ViT-B-32, ViT-B-16, ViT-L-14, ruCLIP) run "
    "queries trimmed to their length; XLM-RoBERTa (77 tokens), SigLIP (64) and MobileCLIP "
    "(77, no causal mask) always run their full context. ruCLIP's texts/s is optimistic: its "
    "stand-in BPE makes each word one token.",
    "- Export + int8: the one-off cost of a model's first ONNX use here (two exports ran at "
    "once, so about half speed); most of it is ONNX Runtime's per-channel int8 quantisation.",
]


def _fidelity_row(name: str, row: dict[str, Any]) -> str:
    cosines = f"{row['min_cosine_images']:.4f} | {row['min_cosine_texts']:.4f}"
    if "top10_overlap_text" not in row:
        return (
            f"| {name} | {row['gallery']} | not measured (too slow: speed only) | | | {cosines} | |"
        )
    return (
        f"| {name} | {row['gallery']} | {row['top10_overlap_text']:.3f} "
        f"({row['top10_overlap_text_min']:.1f}) | {row['top10_overlap_image']:.3f} "
        f"({row['top10_overlap_image_min']:.1f}) | {row['top10_overlap_chance']:.2f} "
        f"| {cosines} | {row['gallery_mean_cosine']:.3f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="registry keys (dev runs)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-seconds", type=float, default=40.0)
    parser.add_argument("--work", type=Path, default=None, help="keep exports here")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        section = sweep(work, args.rounds, args.image_seconds, args.only)
    print(markdown(section))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
