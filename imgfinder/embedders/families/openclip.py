"""open_clip models behind the Embedder contract: lazy, local-files-only, torch or ONNX runtime.

Constructing an embedder is free; torch and open_clip are imported and weights read on first
use. Weights come from a pretrained tag (found in `models_dir()` or the Hugging Face cache,
never downloaded here), a `local-dir:` folder or a checkpoint file. With runtime "onnx" and a
cached export, models using CLIP's BPE tokenizer run without importing torch at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgfinder.embedders.export import TorchTowers, import_torch, seeded
from imgfinder.embedders.preprocess import Preprocess
from imgfinder.embedders.registry import (
    LOCAL_DIR,
    REPO_CONFIG,
    hub_cache_dir,
    hub_offline,
    models_dir,
    repo_dir,
)
from imgfinder.embedders.tokenizers import hub as hub_tokenizer
from imgfinder.embedders.tokenizers.clip_bpe import (
    CLIP_VOCAB_FILE,
    TOKENIZER_CHECKS,
    ClipBpeTokenizer,
)
from imgfinder.embedders.towers import (
    CHECKPOINT_NAMES,
    PARITY_TEXTS,
    Loaded,
    TowerEmbedder,
    check_runtime,
    file_digest,
    find_checkpoint,
    lazy,
)
from imgfinder.errors import ImgFinderError, MissingExtraError, ModelError

if TYPE_CHECKING:
    from imgfinder.embedders.export import ExportSource

log = logging.getLogger(__name__)


HUB_TOKENIZER_FILE = "tokenizer.json"


def import_open_clip() -> Any:
    import_torch()
    try:
        import open_clip
    except ImportError as exc:
        raise MissingExtraError("open_clip_torch", "torch") from exc
    return open_clip


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
                    f"(one of {', '.join(CHECKPOINT_NAMES)})"
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
        model = fused(model.eval())
        tokenize = self._tokenizer(name, folder)
        return model, Preprocess.from_dict(model.visual.preprocess_cfg), tokenize

    def _load(self) -> Loaded:
        if self.runtime == "torch":
            model, preprocess, tokenize = self._load_torch_model()
            towers = TorchTowers.from_model(model, self.device)
            probe = np.zeros((1, 3, preprocess.size, preprocess.size), dtype=np.float32)
            return Loaded(towers, preprocess, tokenize, 0, int(towers.image(probe).shape[1]))
        from imgfinder.embedders import onnx_runtime

        built: dict[str, Any] = {}

        def build() -> ExportSource:
            from imgfinder.embedders.export import ExportSource

            model, preprocess, tokenize = self._load_torch_model()
            built["tokenize"] = tokenize
            source = ExportSource.from_model(
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
        if spec.get("kind") == hub_tokenizer.KIND:
            return lazy(lambda: hub_tokenizer.HubTokenizer.from_export(towers.directory, spec))
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


def fused(model: Any) -> Any:
    """`model` for inference: towers trained with parallel branches (MobileCLIP's FastViT)
    folded into single convolutions, which gives the same vectors 15-37 % faster on a CPU
    (bench/results/models.md); other models as they are."""
    if not any(hasattr(module, "reparameterize") for module in model.modules()):
        return model
    from timm.utils import reparameterize_model

    return reparameterize_model(model)


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
        described = hub_tokenizer.describe(tokenize.tokenizer, HUB_TOKENIZER_FILE)
        if described is not None:
            spec, files = described.spec, {HUB_TOKENIZER_FILE: described.backend_json.encode()}
            candidate = hub_tokenizer.HubTokenizer(described.backend_json, spec)
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
