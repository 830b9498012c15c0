"""ruCLIP (ai-forever) without the ruclip package: its weights in an open_clip CLIP.

A ruCLIP folder holds `config.json`, `bpe.model` (YouTokenToMe) and `pytorch_model.bin`.
ruCLIP is OpenAI's CLIP architecture with QuickGELU, a 64-wide attention head in the vision
tower, and a text tower that pools at the EOS token (id 3; BOS 2, pad 0). Its state_dict uses
the OpenAI CLIP module names, which open_clip's CLIP keeps, so the weights load strictly with
no renaming beyond dropping a DataParallel "module." prefix.

With runtime "onnx" and an export already cached, embedding needs neither torch nor open_clip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgfinder.embedders.export import TorchTowers, import_torch
from imgfinder.embedders.preprocess import CLIP_MEAN, CLIP_STD, Preprocess
from imgfinder.embedders.tokenizers.yttm import RuClipTokenizer
from imgfinder.embedders.towers import (
    PARITY_TEXTS,
    Loaded,
    TowerEmbedder,
    check_runtime,
    file_digest,
)
from imgfinder.errors import ModelError

if TYPE_CHECKING:
    from imgfinder.embedders.export import ExportSource

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "bpe.model"
WEIGHTS_FILES = ("pytorch_model.bin", "model.safetensors")
CONFIG_KEYS = (
    "embed_dim",
    "image_resolution",
    "vision_layers",
    "vision_width",
    "vision_patch_size",
    "context_length",
    "vocab_size",
    "transformer_width",
    "transformer_heads",
    "transformer_layers",
)
BOS_ID, EOS_ID, PAD_ID = 2, 3, 0


def read_config(model_dir: Path) -> dict[str, Any]:
    """ruCLIP's config.json, checked for the keys the architecture needs."""
    path = model_dir / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the ruCLIP config {path}: {exc}") from exc
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ModelError(f"{path} lacks {', '.join(missing)}: is it a ruCLIP config?")
    return config


def open_clip_config(config: dict[str, Any]) -> dict[str, Any]:
    """The open_clip CLIP keyword arguments equivalent to a ruCLIP config."""
    return {
        "embed_dim": int(config["embed_dim"]),
        "quick_gelu": True,
        "vision_cfg": {
            "image_size": int(config["image_resolution"]),
            "layers": int(config["vision_layers"]),
            "width": int(config["vision_width"]),
            "patch_size": int(config["vision_patch_size"]),
            "head_width": 64,
        },
        "text_cfg": {
            "context_length": int(config["context_length"]),
            "vocab_size": int(config["vocab_size"]),
            "width": int(config["transformer_width"]),
            "heads": int(config["transformer_heads"]),
            "layers": int(config["transformer_layers"]),
            "pool_type": "eos",
            "eos_id": EOS_ID,
            "pad_id": PAD_ID,
        },
    }


def preprocess_for(config: dict[str, Any]) -> Preprocess:
    """ruCLIP's transform: centre-crop the largest square, bilinear resize, normalise."""
    return Preprocess(
        size=int(config["image_resolution"]),
        mean=tuple(config.get("mean") or CLIP_MEAN),  # type: ignore[arg-type]
        std=tuple(config.get("std") or CLIP_STD),  # type: ignore[arg-type]
        interpolation="bilinear",
        resize_mode="crop",
    )


def convert_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Original ruCLIP keys to open_clip CLIP keys (the same names; see the module doc)."""
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return dict(state)


def weights_file(model_dir: Path) -> Path:
    for name in WEIGHTS_FILES:
        if (model_dir / name).is_file():
            return model_dir / name
    raise ModelError(f"{model_dir} has no ruCLIP weights ({' or '.join(WEIGHTS_FILES)})")


def build_model(model_dir: Path, device: str = "cpu") -> Any:
    """An open_clip CLIP holding the ruCLIP weights in `model_dir`, loaded strictly."""
    torch = import_torch()
    from open_clip.model import CLIP

    config = read_config(model_dir)
    model = CLIP(**open_clip_config(config))
    path = weights_file(model_dir)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read the ruCLIP weights {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        result = model.load_state_dict(convert_state_dict(state), strict=False)
    except RuntimeError as exc:  # a tensor of another shape than the config gives
        reason = " ".join(str(exc).split())  # torch's message spans lines; ours is one
        raise ModelError(f"{path} does not fit a ruCLIP model of {CONFIG_FILE}: {reason}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"{path} does not fit a ruCLIP model of {CONFIG_FILE}: "
            f"missing {_some(result.missing_keys)}, unexpected {_some(result.unexpected_keys)}"
        )
    return model.to(device).eval()


def _some(keys: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}]" if keys else "none"


class RuClipEmbedder(TowerEmbedder):
    """A ruCLIP model folder as an Embedder (Russian queries), on torch or ONNX Runtime."""

    family = "ruclip"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        runtime: str = "torch",
        device: str = "cpu",
        onnx_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        check_runtime(runtime, device)
        self.model_dir = Path(model_dir)
        self.runtime = runtime
        self.device = device
        self.onnx_dir = Path(onnx_dir) if onnx_dir else None
        self._digest: str | None = None

    def __repr__(self) -> str:
        return f"RuClipEmbedder({str(self.model_dir)!r}, runtime={self.runtime!r})"

    @property
    def name(self) -> str:
        """The model's name, from its folder ("ai-forever--ruclip-..." reads "ruclip-...")."""
        return self.model_dir.name.rsplit("--", 1)[-1]

    @property
    def digest(self) -> str:
        """Hash of config, tokenizer and weights: what decides the vectors."""
        if self._digest is None:
            parts = [self.model_dir / CONFIG_FILE, self.model_dir / TOKENIZER_FILE]
            for path in parts:
                if not path.is_file():
                    raise ModelError(f"{self.model_dir} has no {path.name}: not a ruCLIP folder")
            parts.append(weights_file(self.model_dir))
            joined = "".join(file_digest(path) for path in parts)
            self._digest = hashlib.sha256(joined.encode()).hexdigest()[:16]
        return self._digest

    @property
    def source_key(self) -> str:
        return f"ruclip:{self.name}:{self.digest}"

    def _load(self) -> Loaded:
        config = read_config(self.model_dir)
        preprocess = preprocess_for(config)
        tokenizer = RuClipTokenizer.load(
            self.model_dir / TOKENIZER_FILE, int(config["context_length"])
        )
        dim = int(config["embed_dim"])
        if self.runtime == "torch":
            towers = TorchTowers.from_model(build_model(self.model_dir, self.device), self.device)
            return Loaded(towers, preprocess, tokenizer, PAD_ID, dim)
        from imgfinder.embedders import onnx_runtime

        def build() -> ExportSource:
            from imgfinder.embedders.export import ExportSource

            return ExportSource.from_model(
                build_model(self.model_dir),
                preprocess=preprocess,
                sample_tokens=tokenizer(PARITY_TEXTS),
                pad_id=PAD_ID,
            )

        towers = onnx_runtime.load_towers(
            self.source_key, build, precision=self.runtime, root=self.onnx_dir
        )
        return Loaded(towers, preprocess, tokenizer, PAD_ID, dim)
