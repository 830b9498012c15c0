"""The bundled demo embedder: a small bilingual CLIP-style model trained on a synthetic world.

It runs on ONNX Runtime by default (no torch at search time); `runtime="torch"` rebuilds the
towers from the safetensors weights, which is what the export is checked against.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgfinder.embedders.base import Embedder, l2_normalize
from imgfinder.errors import MissingExtraError, ModelError

#: the model shipped with the repository (trained by `python -m imgfinder.demo.train`)
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "demo" / "bundled"
RUNTIMES = ("onnx", "torch")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
IMAGE_ONNX = "image.onnx"
TEXT_ONNX = "text.onnx"
_BATCH = 256


def model_hash(model_dir: str | Path) -> str:
    """Short hash of what decides the vectors: config, tokenizer and weights."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE):
        digest.update((Path(model_dir) / name).read_bytes())
    return digest.hexdigest()[:12]


class DemoEmbedder(Embedder):
    """Embeds images and English/Russian texts with the demo model in `model_dir`.

    `threads` caps ONNX Runtime's (or torch's) intra-op threads; None lets the runtime choose.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        runtime: str = "onnx",
        threads: int | None = None,
    ) -> None:
        if runtime == "onnx-int8":
            raise ModelError(
                "the demo model runs in fp32 only (ONNX or PyTorch): at 1.2 M parameters it "
                "gains nothing from int8; choose the automatic or ONNX fp32 runtime (auto, onnx)"
            )
        if runtime not in RUNTIMES:
            raise ModelError(f"unknown demo runtime {runtime!r}; choose one of {RUNTIMES}")
        self.model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        self.runtime = runtime
        needed = [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE]
        if runtime == "onnx":
            needed += [IMAGE_ONNX, TEXT_ONNX]
        missing = [name for name in needed if not (self.model_dir / name).is_file()]
        if missing:
            raise ModelError(
                f"the demo model in {self.model_dir} is missing {', '.join(missing)}; "
                "train it with: python -m imgfinder.demo.train"
            )
        from imgfinder.demo.tokenizer import Tokenizer

        try:
            self.config = json.loads((self.model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
            self.tokenizer = Tokenizer.load(self.model_dir / TOKENIZER_FILE)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot read the demo model in {self.model_dir}: {exc}") from exc
        self.image_size = int(self.config["image_size"])
        self.mean = tuple(self.config["mean"])  # type: ignore[assignment]
        self.std = tuple(self.config["std"])  # type: ignore[assignment]
        self._dim = int(self.config["embed_dim"])
        self._key = f"demo-{model_hash(self.model_dir)}-{runtime}"
        if runtime == "onnx":
            self._image_session = _onnx_session(self.model_dir / IMAGE_ONNX, threads)
            self._text_session = _onnx_session(self.model_dir / TEXT_ONNX, threads)
        else:
            self._model = _torch_model(self.model_dir, self.config, threads)

    @property
    def key(self) -> str:
        return self._key

    @property
    def dim(self) -> int:
        return self._dim

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._run_image(batch[i : i + _BATCH]) for i in range(0, len(batch), _BATCH)]
        return l2_normalize(np.concatenate(parts))

    def unreadable(self, text: str) -> str | None:
        """The demo model knows only its world's words: a query with none of them is refused
        (its character trigrams alone would match something anyway)."""
        from imgfinder.demo.tokenizer import split_words

        if any(word in self.tokenizer.known for word in split_words(text)):
            return None
        return (
            "the demo model knows none of these words: it reads only colours, shapes, sizes, "
            "counts and backgrounds, in English or Russian"
        )

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.tokenizer.encode(texts)
        parts = [self._run_text(ids[i : i + _BATCH]) for i in range(0, len(ids), _BATCH)]
        return l2_normalize(np.concatenate(parts))

    def _run_image(self, pixels: np.ndarray) -> np.ndarray:
        if self.runtime == "onnx":
            return self._image_session.run(None, {"pixels": pixels})[0]
        import torch

        with torch.inference_mode():
            return self._model.image(torch.from_numpy(pixels)).numpy()

    def _run_text(self, ids: np.ndarray) -> np.ndarray:
        if self.runtime == "onnx":
            return self._text_session.run(None, {"ids": ids})[0]
        import torch

        with torch.inference_mode():
            return self._model.text(torch.from_numpy(ids)).numpy()


def _onnx_session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot load {path}: {exc}") from exc


def _torch_model(model_dir: Path, config: dict, threads: int | None):
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError as exc:
        raise MissingExtraError("torch", "torch") from exc
    from imgfinder.demo.model import DemoConfig, load_model

    if threads:
        torch.set_num_threads(int(threads))
    torch.set_flush_denormal(True)
    try:
        state = load_file(str(model_dir / WEIGHTS_FILE))
        return load_model(DemoConfig.from_dict(config), state)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"cannot load the demo weights in {model_dir}: {exc}") from exc
