"""ONNX Runtime towers: exported once from torch, checked against it, optionally int8.

An export lives in `models_dir()/onnx/<hash of the source key>/`: `image.onnx`, `text.onnx`,
their int8 twins once quantised, `samples.npz` (the parity inputs) and `meta.json` (what it
came from, the preprocessing, the tokenizer, the measured parity). With an export on disk,
embedding needs neither torch nor open_clip when the tokenizer is torch-free too (ruCLIP's
YouTokenToMe, CLIP's BPE copied into the export): torch is imported to export, not to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgfinder.atomic import atomic_write_file, atomic_write_text
from imgfinder.embedders.base import l2_normalize
from imgfinder.errors import MissingExtraError, ModelError

log = logging.getLogger(__name__)

FORMAT = 1
OPSET = 17
#: torch and ONNX fp32 must agree at least this well on every sample, or the export fails
PARITY_MIN = 0.9999
#: int8 below this on any sample is reported loudly (it still runs: the user chose int8)
INT8_PARITY_WARN = 0.99
PRECISIONS = {"onnx": "fp32", "onnx-int8": "int8"}
#: synthetic pictures int8's top-10 results are compared with fp32's on
OVERLAP_GALLERY = 48


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
        from imgfinder.embedders.openclip import tower_modules

        image, text, dynamic = tower_modules(model)
        return cls(image, text, dynamic, preprocess.to_dict(), sample_tokens, pad_id)


def onnx_root() -> Path:
    from imgfinder.embedders.registry import models_dir

    return models_dir() / "onnx"


def export_dir(source_key: str, root: str | Path | None = None) -> Path:
    """Folder of the export of `source_key` (a hash, so any key makes a valid name)."""
    digest = hashlib.sha256(source_key.encode("utf-8")).hexdigest()[:16]
    return Path(root or onnx_root()) / digest


def physical_cores() -> int:
    """Cores this process may use, counting SMT siblings once (ONNX Runtime's sweet spot)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    physical = None
    with contextlib.suppress(ImportError):
        import psutil

        physical = psutil.cpu_count(logical=False)
    if not physical:
        physical = _cores_from_cpuinfo()
    return max(1, min(usable, physical or usable))


def _cores_from_cpuinfo() -> int | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores, package = set(), "0"
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "physical id":
            package = value.strip()
        elif name.strip() == "core id":
            cores.add((package, value.strip()))
    return len(cores) or None


def session_options(threads: int | None = None) -> Any:
    """Settings for small machines: one pool of `physical_cores()` threads, no spinning.

    Spinning threads would steal the CPU from the image decoders that run alongside.
    """
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingExtraError("onnxruntime", "all") from exc
    return onnxruntime


# --------------------------------------------------------------------------- runtime


def open_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU; a file it cannot open is a ModelError."""
    ort = _import_onnxruntime()
    try:
        return ort.InferenceSession(
            str(path), session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own types for bad or missing files
        raise ModelError(f"cannot open {path}: {exc}") from exc


class OnnxTowers:
    """Image and text towers as ONNX Runtime sessions, created on first use of each."""

    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        precision: str = "fp32",
        threads: int | None = None,
    ) -> None:
        if precision not in meta["files"]:
            raise ModelError(f"the ONNX export in {directory} has no {precision} towers")
        self.directory = directory
        self.meta = meta
        self.precision = precision
        self.runtime = f"onnx-{precision}"
        self.threads = threads
        self.dim = int(meta["dim"])
        self.dynamic_sequence = bool(meta["dynamic_sequence"])
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def parity(self) -> dict[str, float]:
        """Minimum cosine vs the reference on the export samples, per tower.

        fp32 is compared with torch, int8 with fp32 ONNX.
        """
        return dict(self.meta["parity"][self.precision])

    @property
    def overlap(self) -> float | None:
        """For int8: the share of the fp32 towers' top-10 results it returns too, measured on
        synthetic pictures at quantisation (None for fp32, or an export made before)."""
        return self.meta.get("overlap", {}).get(self.precision)

    def session(self, tower: str) -> Any:
        if tower not in self._sessions:
            with self._lock:
                if tower not in self._sessions:
                    path = self.directory / self.meta["files"][self.precision][tower]
                    self._sessions[tower] = open_session(path, self.threads)
        return self._sessions[tower]

    def image(self, batch: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session("image").run(None, {"pixels": pixels})[0]

    def text(self, tokens: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(tokens, dtype=np.int64)
        return self.session("text").run(None, {"tokens": ids})[0]


def load_towers(
    source_key: str,
    build: Callable[[], ExportSource],
    *,
    precision: str = "onnx",
    root: str | Path | None = None,
    threads: int | None = None,
) -> OnnxTowers:
    """Open the cached export of `source_key`, exporting (and quantising) it first if needed.

    `build` is only called when there is no valid export yet; it is where torch gets loaded.
    `precision` is a runtime name, "onnx" (fp32) or "onnx-int8".
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown ONNX precision {precision!r}")
    directory = export_dir(source_key, root)
    meta = read_meta(directory, source_key)
    if meta is None:
        meta = export(build(), directory, source_key)
    if PRECISIONS[precision] == "int8" and "int8" not in meta["files"]:
        meta = quantize(directory, meta)
    return OnnxTowers(directory, meta, PRECISIONS[precision], threads)


def read_meta(directory: Path, source_key: str) -> dict[str, Any] | None:
    """The export's metadata if it is complete and made from `source_key`, else None."""
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("format") != FORMAT or meta.get("source") != source_key:
        return None
    for files in meta.get("files", {}).values():
        if not all((directory / name).is_file() for name in files.values()):
            return None
    return meta if "fp32" in meta.get("files", {}) else None


# --------------------------------------------------------------------------- export


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


def parity_summary(runtime: str, parity: dict[str, float], overlap: float | None = None) -> str:
    """What the user is told about an ONNX runtime's measured agreement with its reference:
    "agrees with PyTorch: cosine image 1.0000, text 1.0000" (int8 is compared with fp32,
    and says how many of fp32's top-10 results it keeps)."""
    reference = "ONNX fp32" if runtime == "onnx-int8" else "PyTorch"
    agreement = ", ".join(f"{tower} {cosine:.4f}" for tower, cosine in parity.items())
    kept = f"; {overlap:.0%} of its top-10 results the same" if overlap is not None else ""
    return f"agrees with {reference}: cosine {agreement}{kept}"


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
    from imgfinder.embedders.openclip import TorchTowers, import_torch, trim_padding

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
    torch = _import_torch()

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


def _import_torch() -> Any:
    from imgfinder.embedders.openclip import import_torch

    return import_torch()


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
    ort = _import_onnxruntime()
    versions = {"torch": torch.__version__, "onnxruntime": ort.__version__}
    with contextlib.suppress(ImportError):
        import open_clip

        versions["open_clip"] = open_clip.__version__
    return versions


# --------------------------------------------------------------------------- int8


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
