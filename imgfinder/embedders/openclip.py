"""open_clip models behind the Embedder contract: lazy, local-files-only, torch or ONNX runtime.

Constructing an embedder is free; torch and open_clip are imported and weights read on first
use. Weights come from a pretrained tag (found in `models_dir()` or the Hugging Face cache,
never downloaded here), a `local-dir:` folder or a checkpoint file. With runtime "onnx" and a
cached export, models using CLIP's BPE tokenizer run without importing torch at all.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import logging
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from imgfinder.atomic import atomic_write_text
from imgfinder.embedders import hftokenizer, textclean
from imgfinder.embedders.base import CLIP_MEAN, CLIP_STD, Embedder, l2_normalize, to_rgb
from imgfinder.embedders.registry import (
    LOCAL_DIR,
    REPO_CONFIG,
    hub_cache_dir,
    hub_offline,
    models_dir,
    repo_dir,
)
from imgfinder.errors import ConfigError, ImgFinderError, MissingExtraError, ModelError

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx", "onnx-int8")
#: rows per forward pass; bounds peak memory whatever batch the caller hands in
MAX_BATCH = 32
#: texts tokenised for the ONNX parity check (several scripts, empty, long)
PARITY_TEXTS = (
    "a photo of a dog running on the grass",
    "кошка спит на подоконнике",
    "",
    "Zürich 2024, 東京タワー, 🙂!",
    "a very long caption " * 30,
)
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
_CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its pixels: the part of open_clip's transform that matters at inference.

    `resize_mode` is "shortest" (resize the short side, centre-crop), "squash" (resize to the
    square, ignoring aspect) or "crop" (centre-crop the largest square, then resize; ruCLIP).
    """

    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        size = data["size"]
        if isinstance(size, (list, tuple)):
            if len(set(size)) != 1:
                raise ModelError(f"non-square model input {tuple(size)} is not supported")
            size = size[0]
        preprocess = cls(
            size=int(size),
            mean=tuple(float(v) for v in data.get("mean", CLIP_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data.get("std", CLIP_STD)),  # type: ignore[arg-type]
            interpolation=str(data.get("interpolation", "bicubic")),
            resize_mode=str(data.get("resize_mode", "shortest")),
        )
        if preprocess.interpolation not in _RESAMPLE:
            raise ModelError(f"unsupported image interpolation {preprocess.interpolation!r}")
        if preprocess.resize_mode not in ("shortest", "squash", "crop"):
            raise ModelError(f"unsupported image resize mode {preprocess.resize_mode!r}")
        return preprocess

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One image to float32[3, size, size], normalised."""
        image = to_rgb(image)
        size, resample = self.size, _RESAMPLE[self.interpolation]
        width, height = image.size
        if self.resize_mode == "squash":
            image = image.resize((size, size), resample)
        elif self.resize_mode == "crop":
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            image = image.resize((size, size), resample)
        else:
            scale = size / min(width, height)
            new_w = max(size, int(width * scale))
            new_h = max(size, int(height * scale))
            if (new_w, new_h) != (width, height):
                image = image.resize((new_w, new_h), resample)
            left = round((new_w - size) / 2.0)
            top = round((new_h - size) / 2.0)
            image = image.crop((left, top, left + size, top + size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(array.transpose(2, 0, 1))


# --------------------------------------------------------------------------- helpers

_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so a big checkpoint is hashed once:
    in this process, and across processes in a `<file>.sha256` note beside it when writable."""
    path = Path(path).resolve()
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    with _digest_lock:
        if memo in _digests:
            return _digests[memo]
    note = path.with_name(path.name + ".sha256")
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        remembered = json.loads(note.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        remembered = {}
    if isinstance(remembered, dict) and remembered.get("stamp") == stamp:
        hexdigest = str(remembered["sha256"])
    else:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        hexdigest = digest.hexdigest()
        with contextlib.suppress(OSError):  # a read-only model folder just hashes again
            atomic_write_text(note, json.dumps({"stamp": stamp, "sha256": hexdigest}))
    with _digest_lock:
        _digests[memo] = hexdigest
    return hexdigest


def find_checkpoint(directory: Path) -> Path | None:
    """The weights file open_clip would pick in a folder (safetensors first)."""
    for name in _CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def trim_padding(tokens: np.ndarray, pad_id: int = 0) -> np.ndarray:
    """Drop trailing columns that are padding in every row.

    With a causal text tower, positions after the end token never influence it, so a short
    query costs a few positions instead of the whole context.
    """
    used = np.flatnonzero((tokens != pad_id).any(axis=0))
    length = int(used[-1]) + 1 if used.size else 1
    return np.ascontiguousarray(tokens[:, :length])


CLIP_VOCAB_FILE = "clip_bpe_vocab.txt.gz"
HUB_TOKENIZER_FILE = "tokenizer.json"
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


def import_torch() -> Any:
    """torch, or a clear error naming the extra to install."""
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError("torch", "torch") from exc
    return torch


def import_open_clip() -> Any:
    import_torch()
    try:
        import open_clip
    except ImportError as exc:
        raise MissingExtraError("open_clip_torch", "torch") from exc
    return open_clip


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


def lazy(
    factory: Callable[[], Callable[[Sequence[str]], np.ndarray]],
) -> Callable[[Sequence[str]], np.ndarray]:
    """A tokenizer built on first use, so an image-only (indexing) process never loads it."""
    made: list[Callable[[Sequence[str]], np.ndarray]] = []
    lock = threading.Lock()

    def tokenize(texts: Sequence[str]) -> np.ndarray:
        if not made:
            with lock:
                if not made:
                    made.append(factory())
        return made[0](texts)

    return tokenize


def runtime_tag(runtime: str) -> str:
    """The runtime and precision part of an embedder key."""
    return {"torch": "torch-fp32", "onnx": "onnx-fp32", "onnx-int8": "onnx-int8"}[runtime]


def check_runtime(runtime: str, device: str) -> None:
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime != "torch" and device != "cpu":
        raise ConfigError(f"runtime {runtime!r} runs on the CPU; use runtime 'torch' for {device}")


class Loaded(NamedTuple):
    """What a TowerEmbedder loads on first use.

    `towers` has `image(float32 batch)`, `text(int64 tokens)` and `dynamic_sequence`.
    """

    towers: Any
    preprocess: Preprocess
    tokenize: Callable[[Sequence[str]], np.ndarray]
    pad_id: int
    dim: int


class TowerEmbedder(Embedder):
    """Shared batching for embedders built from an image tower, a text tower and a tokenizer.

    Subclasses implement `_load()`, called once, on first use.
    """

    #: "torch", "onnx" or "onnx-int8", set by the subclass
    runtime: str

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None

    @property
    @abstractmethod
    def source_key(self) -> str:
        """The torch model's identity, before any runtime conversion."""

    @property
    def key(self) -> str:
        return f"{self.source_key}:{runtime_tag(self.runtime)}"

    @property
    def parity(self) -> dict[str, float]:
        """Measured cosine agreement of the ONNX towers with their reference ({} for torch)."""
        return getattr(self.towers, "parity", {})

    @property
    def top10_overlap(self) -> float | None:
        """For int8 towers: the share of fp32's top-10 results they keep, as measured."""
        return getattr(self.towers, "overlap", None)

    @abstractmethod
    def _load(self) -> Loaded:
        """Import the runtime and read the model: the expensive part, done once."""

    def _ensure(self) -> Loaded:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    @property
    def towers(self) -> Any:
        """The loaded runtime (TorchTowers or onnx.OnnxTowers), loading it if needed."""
        return self._ensure().towers

    @property
    def preprocess(self) -> Preprocess:
        return self._ensure().preprocess

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return self.preprocess.size

    @property
    def mean(self) -> tuple[float, float, float]:  # type: ignore[override]
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, float, float]:  # type: ignore[override]
        return self.preprocess.std

    @property
    def dim(self) -> int:
        return self._ensure().dim

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        """Pixels exactly as this model's own preprocessing would produce them."""
        return self.preprocess(image)

    def input_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The whole image for a model that squashes it to its square; else the centre square."""
        if self.preprocess.resize_mode == "squash":
            return (0, 0, width, height)
        return super().input_box(width, height)

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """int64[n, context] token ids, as the model was trained with."""
        return self._ensure().tokenize(list(texts))

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        loaded = self._ensure()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) == 0:
            return np.zeros((0, loaded.dim), dtype=np.float32)
        image = loaded.towers.image
        parts = [image(batch[i : i + MAX_BATCH]) for i in range(0, len(batch), MAX_BATCH)]
        return l2_normalize(np.concatenate(parts))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        loaded = self._ensure()
        texts = list(texts)
        if not texts:
            return np.zeros((0, loaded.dim), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), MAX_BATCH):
            tokens = loaded.tokenize(texts[start : start + MAX_BATCH])
            if loaded.towers.dynamic_sequence:
                tokens = trim_padding(tokens, loaded.pad_id)
            parts.append(loaded.towers.text(tokens))
        return l2_normalize(np.concatenate(parts))


# --------------------------------------------------------------------------- open_clip


class OpenClipEmbedder(TowerEmbedder):
    """An open_clip model (any architecture open_clip knows, or a `local-dir:` folder).

    `pretrained` is None (random weights, seeded: for tests and benchmarks), an open_clip
    tag such as "laion2b_s34b_b79k", "local-dir:/path" or the path of a checkpoint file.
    `runtime` is "torch", "onnx" or "onnx-int8"; ONNX towers are exported on first use and
    cached under `onnx_dir` (default `models_dir()/onnx`).
    """

    family = "open_clip"

    def __init__(
        self,
        architecture: str,
        pretrained: str | Path | None = None,
        *,
        device: str = "cpu",
        runtime: str = "torch",
        cache_dir: str | Path | None = None,
        onnx_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        check_runtime(runtime, device)
        self.architecture = architecture
        self.pretrained = str(pretrained) if pretrained not in (None, "") else None
        self.device = device
        self.runtime = runtime
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.onnx_dir = Path(onnx_dir) if onnx_dir else None
        self._weights_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"OpenClipEmbedder({self.architecture!r}, {self.pretrained!r}, "
            f"runtime={self.runtime!r})"
        )

    # -- identity

    @property
    def weights_id(self) -> str:
        """Names the weights: the tag, or a content hash when they come from a file."""
        if self._weights_id is None:
            self._weights_id = self._compute_weights_id()
        return self._weights_id

    def _compute_weights_id(self) -> str:
        pretrained = self.pretrained
        if pretrained is None:
            return "random-seed0"
        if pretrained.startswith(LOCAL_DIR):
            directory = Path(pretrained[len(LOCAL_DIR) :])
            checkpoint = find_checkpoint(directory)
            config = directory / REPO_CONFIG
            if checkpoint is None or not config.is_file():
                raise ModelError(
                    f"{directory} needs {REPO_CONFIG} and a weights file "
                    f"(one of {', '.join(_CHECKPOINT_NAMES)})"
                )
            combined = hashlib.sha256((file_digest(config) + file_digest(checkpoint)).encode())
            return f"dir-{combined.hexdigest()[:16]}"
        if Path(pretrained).is_file():
            return f"file-{file_digest(pretrained)[:16]}"
        return pretrained

    @property
    def source_key(self) -> str:
        """The torch model's identity, before any runtime conversion."""
        return f"open_clip:{self.architecture}:{self.weights_id}"

    # -- loading

    def _cache_root(self) -> Path:
        return self.cache_dir or models_dir()

    def _resolve(self) -> tuple[str, str | None, dict[str, Any], Path | None]:
        """(open_clip model name, checkpoint, create kwargs, folder with tokenizer files)."""
        open_clip = import_open_clip()
        pretrained = self.pretrained
        if pretrained is not None and pretrained.startswith(LOCAL_DIR):
            self.weights_id  # noqa: B018 - validates the folder with a clear message
            return pretrained, None, {}, None
        if open_clip.get_model_config(self.architecture) is None:
            raise ModelError(f"open_clip has no architecture named {self.architecture!r}")
        if pretrained is None:
            return self.architecture, None, {}, None
        if Path(pretrained).is_file():
            return self.architecture, pretrained, {}, None
        cfg = open_clip.get_pretrained_cfg(self.architecture, pretrained)
        if not cfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(self.architecture)) or "none"
            raise ModelError(
                f"{pretrained!r} is neither a weights file nor an open_clip tag of "
                f"{self.architecture} (tags: {tags})"
            )
        checkpoint, folder = self._find_tag_weights(cfg)
        if folder is not None and builds_from_repo_config(folder, checkpoint):
            quick_gelu = {"force_quick_gelu": True} if cfg.get("quick_gelu") else {}
            return f"{LOCAL_DIR}{folder}", None, quick_gelu, folder
        kwargs = {
            "image_mean": tuple(cfg["mean"]),
            "image_std": tuple(cfg["std"]),
            "image_interpolation": cfg.get("interpolation", "bicubic"),
            "image_resize_mode": cfg.get("resize_mode", "shortest"),
            "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
        }
        return self.architecture, str(checkpoint), kwargs, folder

    def _find_tag_weights(self, cfg: dict[str, Any]) -> tuple[Path, Path | None]:
        """A tag's checkpoint from models_dir() or the Hugging Face cache, else ModelError."""
        hub = cfg.get("hf_hub") or ""
        if not hub:
            url = cfg.get("url") or ""
            path = self._cache_root() / "open_clip" / url.rsplit("/", 1)[-1]
            if url and path.is_file():
                return path, None
            raise ModelError(
                f"weights for open_clip {self.architecture} {self.pretrained!r} are not here: "
                f"download {url} into {path.parent}"
            )
        repo_id, filename = split_hub(hub)
        names = tag_filenames(filename)
        folder = repo_dir(repo_id, self._cache_root())
        for name in names:
            if (folder / name).is_file():
                return folder / name, folder
        from huggingface_hub import try_to_load_from_cache

        for name in names:
            cached = try_to_load_from_cache(repo_id, name)
            if isinstance(cached, str):
                return Path(cached), None
        raise ModelError(
            f"weights for open_clip {self.architecture} {self.pretrained!r} are not here: "
            f"download {names[0]} from https://huggingface.co/{repo_id} into {folder}"
        )

    def _load_torch_model(self) -> tuple[Any, Preprocess, OpenClipTokenize]:
        open_clip = import_open_clip()
        name, checkpoint, kwargs, folder = self._resolve()
        random_init = checkpoint is None and name == self.architecture
        try:
            hub = self._text_tower_hub()
            with hub_offline(hub), seeded() if random_init else contextlib.nullcontext():
                model, _, _ = open_clip.create_model_and_transforms(
                    name, pretrained=checkpoint, device=self.device, **kwargs
                )
        except Exception as exc:
            raise ModelError(f"cannot load open_clip {self.architecture}: {exc}") from exc
        model.eval()
        tokenize = self._tokenizer(name, folder)
        return model, Preprocess.from_dict(model.visual.preprocess_cfg), tokenize

    def _load(self) -> Loaded:
        if self.runtime == "torch":
            model, preprocess, tokenize = self._load_torch_model()
            towers = TorchTowers.from_model(model, self.device)
            probe = np.zeros((1, 3, preprocess.size, preprocess.size), dtype=np.float32)
            return Loaded(towers, preprocess, tokenize, 0, int(towers.image(probe).shape[1]))
        from imgfinder.embedders import onnx as onnx_runtime

        built: dict[str, Any] = {}

        def build() -> onnx_runtime.ExportSource:
            model, preprocess, tokenize = self._load_torch_model()
            built["tokenize"] = tokenize
            source = onnx_runtime.ExportSource.from_model(
                model, preprocess=preprocess, sample_tokens=tokenize(PARITY_TEXTS)
            )
            source.tokenizer, source.assets = torch_free_tokenizer(tokenize)
            return source

        towers = onnx_runtime.load_towers(
            self.source_key, build, precision=self.runtime, root=self.onnx_dir
        )
        tokenize = built.get("tokenize") or self._onnx_tokenizer(towers)
        preprocess = Preprocess.from_dict(towers.meta["preprocess"])
        return Loaded(towers, preprocess, tokenize, 0, towers.dim)

    def _tokenizer(self, name: str | None = None, folder: Path | None = None) -> OpenClipTokenize:
        """open_clip's tokenizer for this model, from local files only."""
        open_clip = import_open_clip()
        if name is None:
            name, folder = self._tokenizer_source()
        if folder is not None and (folder / REPO_CONFIG).is_file():
            name = f"{LOCAL_DIR}{folder}"
        try:
            with hub_offline(self._text_tower_hub()):
                tokenizer = open_clip.get_tokenizer(name)
        except Exception as exc:
            raise ModelError(f"cannot load the tokenizer of {self.architecture}: {exc}") from exc
        return OpenClipTokenize(tokenizer)

    def _onnx_tokenizer(self, towers: Any) -> Callable[[Sequence[str]], np.ndarray]:
        """The export's own torch-free tokenizer when it has one, else open_clip's (lazily)."""
        spec = towers.meta.get("tokenizer") or {}
        if spec.get("kind") == "clip-bpe":
            path, length = towers.directory / spec["file"], int(spec["context_length"])
            return lazy(lambda: ClipBpeTokenizer(path, length))
        if spec.get("kind") == hftokenizer.KIND:
            return lazy(lambda: hftokenizer.HubTokenizer.from_export(towers.directory, spec))
        return lazy(self._tokenizer)

    def _text_tower_hub(self) -> Path | None:
        """The model dir's Hugging Face cache, when it holds this architecture's text tower
        files (pulled there by `imgfinder models pull`); else None, the default cache."""
        config = import_open_clip().get_model_config(self.architecture) or {}
        text = config.get("text_cfg", {})
        names = {text.get("hf_model_name"), text.get("hf_tokenizer_name")} - {None}
        hub = hub_cache_dir(self._cache_root())
        if any((hub / f"models--{name.replace('/', '--')}").is_dir() for name in names):
            return hub
        return None

    def _tokenizer_source(self) -> tuple[str, Path | None]:
        """Tokenizer name and folder without needing the weights (they may be ONNX by now)."""
        pretrained = self.pretrained
        if pretrained is not None and pretrained.startswith(LOCAL_DIR):
            return pretrained, None
        if pretrained is None or Path(pretrained).is_file():
            return self.architecture, None
        cfg = import_open_clip().get_pretrained_cfg(self.architecture, pretrained) or {}
        hub = cfg.get("hf_hub") or ""
        folder = repo_dir(split_hub(hub)[0], self._cache_root()) if hub else None
        return self.architecture, folder


class OpenClipTokenize:
    """open_clip's tokenizer of a model (it needs torch), giving int64 numpy rows."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.tokenizer(list(texts)).numpy().astype(np.int64)


def torch_free_tokenizer(
    tokenize: OpenClipTokenize,
) -> tuple[dict[str, Any] | None, dict[str, bytes]]:
    """(meta, files) of a tokenizer for an export that reproduces `tokenize` without torch:
    ClipBpeTokenizer for CLIP's BPE, HubTokenizer for a Hugging Face one; else (None, {}),
    and searching will tokenize with open_clip (torch)."""
    checks: tuple[str, ...] = TOKENIZER_CHECKS
    candidate: Callable[[Sequence[str]], np.ndarray]
    try:
        described = hftokenizer.describe(tokenize.tokenizer, HUB_TOKENIZER_FILE)
        if described is not None:
            spec, files = described.spec, {HUB_TOKENIZER_FILE: described.backend_json.encode()}
            candidate = hftokenizer.HubTokenizer(described.backend_json, spec)
            checks += described.checks
        else:
            from open_clip.tokenizer import default_bpe

            length = tokenize(checks[:1]).shape[1]
            spec = {"kind": "clip-bpe", "file": CLIP_VOCAB_FILE, "context_length": length}
            files = {CLIP_VOCAB_FILE: Path(default_bpe()).read_bytes()}
            candidate = ClipBpeTokenizer(default_bpe(), context_length=length)
        differs = not np.array_equal(candidate(checks), tokenize(checks))
    except (ImgFinderError, OSError, KeyError, ValueError) as exc:
        differs, reason = True, f"{type(exc).__name__}: {exc}"
    else:
        reason = f"its {spec['kind']} form gives other ids"
    if differs:
        log.warning("no torch-free tokenizer for this export (%s): searching needs torch", reason)
        return None, {}
    return spec, files


def builds_from_repo_config(folder: Path, checkpoint: Path) -> bool:
    """Whether a downloaded repo folder describes its own model and preprocessing
    (open_clip_config.json) and open_clip, building from it, would load `checkpoint`."""
    if not (folder / REPO_CONFIG).is_file():
        return False
    from open_clip import factory

    choose = getattr(factory, "_find_checkpoint_in_dir", None)
    return choose is not None and Path(choose(folder) or "") == checkpoint


def split_hub(hub: str) -> tuple[str, str]:
    """open_clip's "org/repo/" or "org/repo/file" as (repo id, file name or "")."""
    parts = hub.strip("/").split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def tag_filenames(filename: str) -> list[str]:
    """Checkpoint names to look for, safetensors first (no pickle)."""
    if not filename:
        return ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    names = [filename]
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    elif filename.endswith(".bin"):
        names.insert(0, filename[:-4] + ".safetensors")
    return names
