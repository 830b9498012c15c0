"""Torch towers to ONNX: export once (opset 17, dynamic batch), check against torch, and
quantise to int8 with its measured agreement. Only this module, the families' torch loaders
and Grad-CAM import torch; running an export needs `onnx_runtime.py` alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgfinder.atomic import atomic_write_file, atomic_write_text
from imgfinder.embedders.base import l2_normalize
from imgfinder.embedders.onnx_runtime import FORMAT, OnnxTowers, import_onnxruntime, read_meta
from imgfinder.embedders.towers import trim_padding
from imgfinder.errors import MissingExtraError, ModelError

log = logging.getLogger(__name__)


OPSET = 17
#: torch and ONNX fp32 must agree at least this well on every sample, or the export fails
PARITY_MIN = 0.9999
#: int8 below this on any sample is reported loudly (it still runs: the user chose int8)
INT8_PARITY_WARN = 0.99
#: synthetic pictures int8's top-10 results are compared with fp32's on
OVERLAP_GALLERY = 48


def import_torch() -> Any:
    """torch, or a clear error naming the extra to install."""
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError("torch", "torch") from exc
    return torch


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Deterministic random initialisation without disturbing the caller's RNG."""
    torch = import_torch()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tower_modules(model: Any) -> tuple[Any, Any, bool]:
    """Image and text towers of an open_clip model as separate modules (for torch and export).

    Returns (image, text, dynamic_sequence). When the text tower is causal and pools at the end
    token, the text module accepts token rows trimmed of trailing padding (`trim_padding`).
    """
    torch = import_torch()
    from open_clip.model import CLIP
    from open_clip.transformer import text_global_pool

    class ImageTower(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, image: Any) -> Any:
            return self.clip.encode_image(image)

    class TextTower(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, tokens: Any) -> Any:
            return self.clip.encode_text(tokens)

    class TrimmedTextTower(TextTower):
        def forward(self, tokens: Any) -> Any:
            clip = self.clip
            length = tokens.shape[1]
            cast_dtype = clip.transformer.get_cast_dtype()
            x = clip.token_embedding(tokens).to(cast_dtype)
            x = x + clip.positional_embedding[:length].to(cast_dtype)
            x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
            x = clip.ln_final(x)
            x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=clip.text_eos_id)
            if isinstance(clip.text_projection, torch.nn.Linear):
                return clip.text_projection(x)
            if clip.text_projection is not None:
                return x @ clip.text_projection
            return x

    trimmable = (
        isinstance(model, CLIP)
        and getattr(model, "attn_mask", None) is not None
        and model.text_pool_type in ("argmax", "eos")
    )
    text = TrimmedTextTower(model) if trimmable else TextTower(model)
    return ImageTower(model).eval(), text.eval(), trimmable


class TorchTowers:
    """Runs an open_clip model's towers on numpy input under inference mode."""

    runtime = "torch-fp32"

    def __init__(
        self, image_tower: Any, text_tower: Any, dynamic_sequence: bool, device: str = "cpu"
    ) -> None:
        self.torch = import_torch()
        self.device = device
        self.image_tower, self.text_tower = image_tower, text_tower
        self.dynamic_sequence = dynamic_sequence

    @classmethod
    def from_model(cls, model: Any, device: str = "cpu") -> TorchTowers:
        return cls(*tower_modules(model), device=device)

    def image(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            pixels = self.torch.from_numpy(batch).to(self.device)
            return self.image_tower(pixels).float().cpu().numpy()

    def text(self, tokens: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            ids = self.torch.from_numpy(tokens.astype(np.int64)).to(self.device)
            return self.text_tower(ids).float().cpu().numpy()


@dataclass
class ExportSource:
    """What an export needs from torch: the two towers and samples to check them on."""

    image_tower: Any
    text_tower: Any
    dynamic_sequence: bool
    preprocess: dict[str, Any]
    sample_tokens: np.ndarray
    pad_id: int = 0
    #: how to tokenize without torch (stored in meta.json), and files it needs copied along
    tokenizer: dict[str, Any] | None = None
    assets: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def from_model(
        cls, model: Any, *, preprocess: Any, sample_tokens: np.ndarray, pad_id: int = 0
    ) -> ExportSource:
        """From an open_clip model (CLIP or CustomTextCLIP) and its `Preprocess`."""
        from imgfinder.embedders.export import tower_modules

        image, text, dynamic = tower_modules(model)
        return cls(image, text, dynamic, preprocess.to_dict(), sample_tokens, pad_id)


def sample_images(preprocess: dict[str, Any], count: int = 4) -> np.ndarray:
    """Smooth, photo-like synthetic inputs (blobs, gradient, edges), normalised for the model."""
    size = int(preprocess["size"])
    rng = np.random.default_rng(1234)
    images = []
    for index in range(count):
        if index == count - 1:
            ramp = np.linspace(0, 255, size, dtype=np.float32)
            pixels = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1)], -1)
            pixels = np.concatenate([pixels, 255 - pixels[..., :1]], -1).astype(np.uint8)
            image = Image.fromarray(pixels)
        else:
            small = rng.integers(0, 256, (4 + 2 * index, 4 + 2 * index, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(preprocess["mean"], np.float32)) / np.asarray(
            preprocess["std"], np.float32
        )
        images.append(array.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(images), dtype=np.float32)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Worst row-wise cosine similarity between two batches of vectors."""
    return float((l2_normalize(a) * l2_normalize(b)).sum(axis=1).min())


def top10_overlap(reference: Any, other: Any, gallery: np.ndarray, tokens: np.ndarray) -> float:
    """Mean share of `reference`'s top 10 among `gallery` that `other` also ranks in its top
    10, over every gallery picture (itself left out) and every text as a query."""
    found = []
    for towers in (reference, other):
        pictures = l2_normalize(towers.image(gallery))
        queries = np.concatenate([pictures, l2_normalize(towers.text(tokens))])
        scores = queries @ pictures.T
        scores[np.arange(len(pictures)), np.arange(len(pictures))] = -np.inf
        found.append(np.argsort(-scores, axis=1)[:, :10])
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(*found, strict=True)]))


def export(source: ExportSource, directory: Path, source_key: str) -> dict[str, Any]:
    """Export both towers (opset 17, dynamic batch) and check them against torch."""
    torch = import_torch()
    directory.parent.mkdir(parents=True, exist_ok=True)
    work = directory.parent / f".{directory.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        images = sample_images(source.preprocess)
        tokens = np.ascontiguousarray(source.sample_tokens, dtype=np.int64)
        text_axes = {0: "batch", 1: "sequence"} if source.dynamic_sequence else {0: "batch"}
        started = time.perf_counter()
        with traceable_attention(source.image_tower, source.text_tower):
            _export_module(torch, source.image_tower, images[:2], work, "image")
            _export_module(torch, source.text_tower, tokens[:2], work, "text", text_axes)
        export_seconds = time.perf_counter() - started

        reference = TorchTowers(source.image_tower, source.text_tower, source.dynamic_sequence)
        meta = {
            "format": FORMAT,
            "source": source_key,
            "opset": OPSET,
            "dim": 0,
            "dynamic_sequence": source.dynamic_sequence,
            "pad_id": source.pad_id,
            "preprocess": source.preprocess,
            "files": {"fp32": {"image": "image.onnx", "text": "text.onnx"}},
            "tokenizer": source.tokenizer,
            "parity": {},
            "export_seconds": round(export_seconds, 2),
            "versions": _versions(torch),
        }
        runtime = OnnxTowers(work, meta, "fp32", threads=None)
        image_ref, image_onnx = reference.image(images), runtime.image(images)
        text_inputs = [tokens]
        if source.dynamic_sequence:
            text_inputs.append(trim_padding(tokens[:2], source.pad_id))
        text_parity = min(min_cosine(reference.text(ids), runtime.text(ids)) for ids in text_inputs)
        parity = {"image": min_cosine(image_ref, image_onnx), "text": text_parity}
        meta["dim"] = int(image_ref.shape[1])
        meta["parity"]["fp32"] = parity
        if min(parity.values()) < PARITY_MIN:
            raise ModelError(
                f"the ONNX export of {source_key} disagrees with torch (worst cosine "
                f"{min(parity.values()):.6f} < {PARITY_MIN}); use runtime 'torch'"
            )
        for name, data in source.assets.items():
            (work / name).write_bytes(data)
        np.savez(work / "samples.npz", images=images, tokens=tokens)
        atomic_write_text(work / "meta.json", json.dumps(meta, indent=2, sort_keys=True))
        _publish(work, directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("exported %s to %s (parity %s)", source_key, directory, parity)
    return read_meta(directory, source_key) or meta


@contextlib.contextmanager
def traceable_attention(*modules: Any) -> Iterator[None]:
    """Temporarily swap nn.MultiheadAttention for an equivalent the tracer keeps shape-generic.

    The traced nn.MultiheadAttention bakes the example's sequence length into its reshapes,
    so a text tower exported on full-length tokens would reject trimmed ones. The swap shares
    the weights and is undone after export; the parity check then runs the original modules.
    """
    torch = import_torch()

    class TraceableAttention(torch.nn.Module):
        def __init__(self, attention: Any) -> None:
            super().__init__()
            self.attention = attention
            self.heads = attention.num_heads
            self.head_dim = attention.embed_dim // attention.num_heads

        def forward(self, query: Any, key: Any, value: Any, **kwargs: Any) -> tuple[Any, None]:
            attention, mask = self.attention, kwargs.get("attn_mask")
            weight, bias = attention.in_proj_weight, attention.in_proj_bias
            qkv = torch.nn.functional.linear(query, weight, bias)
            qkv = qkv.unflatten(-1, (3, self.heads, self.head_dim)).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            scores = (q * self.head_dim**-0.5) @ k.transpose(-1, -2)
            if mask is not None:
                scores = scores + mask
            mixed = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
            return attention.out_proj(mixed), None

    swapped = []
    for module in modules:
        for parent in module.modules():
            attention = getattr(parent, "attn", None)
            if (
                isinstance(attention, torch.nn.MultiheadAttention)
                and attention.batch_first
                and attention._qkv_same_embed_dim
                and attention.bias_k is None
            ):
                parent.attn = TraceableAttention(attention)
                swapped.append((parent, attention))
    try:
        yield
    finally:
        for parent, attention in swapped:
            parent.attn = attention


def _export_module(
    torch: Any,
    module: Any,
    example: np.ndarray,
    work: Path,
    name: str,
    axes: dict[int, str] | None = None,
) -> None:
    input_name = "pixels" if name == "image" else "tokens"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about shapes; parity is checked after
        torch.onnx.export(
            module,
            (torch.from_numpy(example),),
            str(work / f"{name}.onnx"),
            opset_version=OPSET,
            dynamo=False,
            input_names=[input_name],
            output_names=["embedding"],
            dynamic_axes={input_name: axes or {0: "batch"}, "embedding": {0: "batch"}},
            do_constant_folding=True,
        )


def _publish(work: Path, directory: Path) -> None:
    """Move a finished export into place; a concurrent identical export may win the race."""
    stale = directory.parent / f".{directory.name}.{os.getpid()}.old"
    if directory.exists():
        os.replace(directory, stale)
    try:
        os.replace(work, directory)
    except OSError:
        if not (directory / "meta.json").is_file():
            raise
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def _versions(torch: Any) -> dict[str, str]:
    ort = import_onnxruntime()
    versions = {"torch": torch.__version__, "onnxruntime": ort.__version__}
    with contextlib.suppress(ImportError):
        import open_clip

        versions["open_clip"] = open_clip.__version__
    return versions


def quantize(directory: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Add int8 towers (dynamic quantisation of the weight matmuls) with measured parity.

    Per-channel 7-bit weights: without VNNI, full-range int8 products saturate in AVX2's
    16-bit accumulators, which cost ViT-B/32 about 0.006 of cosine in our measurements.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    files = {"image": "image.int8.onnx", "text": "text.int8.onnx"}
    for tower, name in files.items():
        source = directory / meta["files"]["fp32"][tower]
        atomic_write_file(
            directory / name,
            lambda tmp, source=source: quantize_dynamic(
                source,
                tmp,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                reduce_range=True,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True},
            ),
        )
    with np.load(directory / "samples.npz", allow_pickle=False) as samples:
        images, tokens = samples["images"], samples["tokens"]
    fp32 = OnnxTowers(directory, meta, "fp32")
    meta = {**meta, "files": {**meta["files"], "int8": files}}
    int8 = OnnxTowers(directory, meta, "int8")
    parity = {
        "image": min_cosine(fp32.image(images), int8.image(images)),
        "text": min_cosine(fp32.text(tokens), int8.text(tokens)),
    }
    meta["parity"] = {**meta["parity"], "int8": parity}
    gallery = sample_images(meta["preprocess"], OVERLAP_GALLERY)
    meta["overlap"] = {"int8": round(top10_overlap(fp32, int8, gallery, tokens), 4)}
    if min(parity.values()) < INT8_PARITY_WARN:
        log.warning("int8 towers of %s agree with fp32 only to cosine %s", meta["source"], parity)
    atomic_write_text(directory / "meta.json", json.dumps(meta, indent=2, sort_keys=True))
    return meta
