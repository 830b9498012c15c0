"""ONNX Runtime towers at run time: no torch here.

An export lives in `models_dir()/onnx/<hash of the source key>/`: `image.onnx`, `text.onnx`,
their int8 twins once quantised, `samples.npz` (the parity inputs) and `meta.json` (what it
came from, the preprocessing, the tokenizer, the measured parity). With an export on disk,
embedding needs neither torch nor open_clip when the tokenizer is torch-free too (ruCLIP's
YouTokenToMe, CLIP's BPE copied into the export); `export.py` makes exports, with torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgfinder.embedders.runtimes import PRECISIONS
from imgfinder.errors import MissingExtraError, ModelError

if TYPE_CHECKING:
    from imgfinder.embedders.export import ExportSource

log = logging.getLogger(__name__)


FORMAT = 1


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
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingExtraError("onnxruntime", "all") from exc
    return onnxruntime


def open_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU; a file it cannot open is a ModelError."""
    ort = import_onnxruntime()
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
    from imgfinder.embedders import export as exporting  # torch, only when exporting

    directory = export_dir(source_key, root)
    meta = read_meta(directory, source_key)
    if meta is None:
        meta = exporting.export(build(), directory, source_key)
    if PRECISIONS[precision] == "int8" and "int8" not in meta["files"]:
        meta = exporting.quantize(directory, meta)
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


def parity_summary(runtime: str, parity: dict[str, float], overlap: float | None = None) -> str:
    """What the user is told about an ONNX runtime's measured agreement with its reference:
    "agrees with PyTorch: cosine image 1.0000, text 1.0000" (int8 is compared with fp32,
    and says how many of fp32's top-10 results it keeps)."""
    reference = "ONNX fp32" if runtime == "onnx-int8" else "PyTorch"
    agreement = ", ".join(f"{tower} {cosine:.4f}" for tower, cosine in parity.items())
    kept = f"; {overlap:.0%} of its top-10 results the same" if overlap is not None else ""
    return f"agrees with {reference}: cosine {agreement}{kept}"
