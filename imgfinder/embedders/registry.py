"""Models as data: `models.toml` lists what imgfinder can run; this module reads it and builds them.

Nothing here imports torch or open_clip: listing models, checking which are present and
explaining what a download would fetch all stay cheap, so the app can show them at start-up.
Weights are only ever downloaded by an explicit `pull`; loading never touches the network.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from imgfinder.embedders.base import Embedder
from imgfinder.embedders.runtimes import CHOICES
from imgfinder.errors import ConfigError, ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REGISTRY_FILE = Path(__file__).with_name("models.toml")
#: a user's own entries, in the models folder
USER_REGISTRY = "models.toml"
FAMILIES = ("open_clip", "ruclip", "demo", "immich")
#: what a model may be asked to run on
RUNTIMES = CHOICES
HF_ENDPOINT = "https://huggingface.co"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
#: the open_clip loader's prefix for "build from this folder's own config"
LOCAL_DIR = "local-dir:"
#: loaders are imported by path, on use, so importing the registry stays cheap
LOADERS = {
    "demo": "imgfinder.embedders.families.demo:DemoEmbedder",
    "open_clip": "imgfinder.embedders.families.openclip:OpenClipEmbedder",
    "ruclip": "imgfinder.embedders.families.ruclip:RuClipEmbedder",
    "immich": "imgfinder.embedders.families.immich:ImmichEmbedder",
}
#: an open_clip repository's own description of its architecture and preprocessing
REPO_CONFIG = "open_clip_config.json"
#: seconds to wait for the hub before saying the machine is offline
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry, plus where it stands on this machine (`present`, `path`)."""

    key: str
    family: str
    architecture: str
    description: str
    languages: tuple[str, ...]
    licence: str
    size_mb: int
    #: cosine similarity the app's threshold slider starts at
    threshold: float
    image_size: int | None = None
    #: Hugging Face repository holding the weights (None for the bundled demo)
    hf_repo: str | None = None
    #: open_clip pretrained tag, when the weights are a known open_clip release
    pretrained: str | None = None
    #: files needed from `hf_repo`; each item may list alternatives as "a.safetensors|a.bin"
    files: tuple[str, ...] = ()
    #: extra Python packages the model needs beyond imgfinder's own
    requires: tuple[str, ...] = ()
    #: other repositories whose files go into the Hugging Face cache (configs, tokenizers)
    extra_files: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: for bundled models: folder, relative to the repository, holding `files`
    local_dir: str | None = None
    #: zero-shot ImageNet-1k top-1 (%) as published, for choosing between models
    imagenet_top1: float | None = None
    #: images/s of the image tower per precision ("fp32", "int8") on a 2-core CPU, as
    #: `make bench` measured them
    images_per_s: tuple[tuple[str, float], ...] = ()
    present: bool = False
    path: Path | None = field(default=None, compare=False)

    def speed(self, runtime: str) -> float | None:
        """Measured images/s for a runtime ("onnx-int8" runs int8, the others fp32)."""
        return dict(self.images_per_s).get("int8" if runtime == "onnx-int8" else "fp32")

    @property
    def url(self) -> str | None:
        """Web page of the weights, for humans."""
        return f"{HF_ENDPOINT}/{self.hf_repo}" if self.hf_repo else None


# --------------------------------------------------------------------------- locations


def models_dir() -> Path:
    """Where downloaded weights and exported ONNX files live: IMGFINDER_MODEL_DIR, else the
    data folder's models/ (the same for every shell, wherever it runs from)."""
    override = os.environ.get("IMGFINDER_MODEL_DIR")
    if override:
        return Path(override).expanduser()
    from imgfinder.config import Settings

    return Path(Settings.from_env().data_dir) / "models"


def repo_dir(repo_id: str, model_dir: Path | None = None) -> Path:
    """Plain folder holding one Hugging Face repository's files, easy to fill by hand."""
    return Path(model_dir or models_dir()) / repo_id.replace("/", "--")


@contextlib.contextmanager
def hub_offline(cache_dir: Path | None = None) -> Iterator[None]:
    """Make huggingface_hub (and libraries on top of it) use only their caches, failing fast.

    Loading a model must never wait on the network: without this, a missing file costs
    five retries and about half a minute before an error. With `cache_dir`, that Hugging
    Face cache is read instead of the user's default one (see `hub_cache_dir`).
    """
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub comes with open_clip
        constants = None
    saved_flag = getattr(constants, "HF_HUB_OFFLINE", False)
    saved_cache = getattr(constants, "HF_HUB_CACHE", None)
    # transformers 4 keeps its own copy of the cache location, taken at import
    transformers_hub = sys.modules.get("transformers.utils.hub")
    saved_transformers = getattr(transformers_hub, "TRANSFORMERS_CACHE", None)
    for name in names:
        os.environ[name] = "1"
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
        if cache_dir is not None:
            constants.HF_HUB_CACHE = str(cache_dir)
    if cache_dir is not None and saved_transformers is not None:
        transformers_hub.TRANSFORMERS_CACHE = str(cache_dir)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_flag
            constants.HF_HUB_CACHE = saved_cache
        if saved_transformers is not None:
            transformers_hub.TRANSFORMERS_CACHE = saved_transformers


def hub_cache_dir(model_dir: Path | None = None) -> Path:
    """Where files from other repositories (a text tower's config and tokenizer) are pulled:
    a Hugging Face cache inside the model dir, so that one folder holds everything a model
    needs and `--model-dir` is honoured."""
    return Path(model_dir or models_dir()) / "hub"


# --------------------------------------------------------------------------- the registry


def _registry(model_dir: Path | None = None) -> tuple[str, tuple[ModelInfo, ...]]:
    """(default key, entries): the bundled models.toml, then the models folder's own entries."""
    user = Path(model_dir or models_dir()) / USER_REGISTRY
    try:
        stamp = user.stat().st_mtime_ns
    except OSError:
        stamp = None
    return _parse_registries(user if stamp is not None else None, stamp)


@functools.lru_cache(maxsize=8)
def _parse_registries(user: Path | None, _stamp: int | None) -> tuple[str, tuple[ModelInfo, ...]]:
    """Parsed once per process and per version of the user's file (`_stamp`)."""
    data = _read_registry(REGISTRY_FILE)
    entries = tuple(_parse_entry(raw, REGISTRY_FILE) for raw in data.get("model", []))
    if user is not None:
        entries += tuple(_parse_entry(raw, user) for raw in _read_registry(user).get("model", []))
    keys = [entry.key for entry in entries]
    if len(set(keys)) != len(keys):
        twice = sorted({key for key in keys if keys.count(key) > 1})
        raise ConfigError(f"model keys listed twice in {REGISTRY_FILE} or {user}: {twice}")
    default = str(data.get("default", keys[0] if keys else ""))
    if default not in keys:
        raise ConfigError(f"the default model {default!r} is not in {REGISTRY_FILE}")
    return default, entries


def _read_registry(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the model registry {path}: {exc}") from exc


def _parse_entry(raw: dict[str, Any], source: Path) -> ModelInfo:
    try:
        info = ModelInfo(
            key=str(raw["key"]),
            family=str(raw["family"]),
            architecture=str(raw["architecture"]),
            description=str(raw["description"]),
            languages=tuple(raw["languages"]),
            licence=str(raw["licence"]),
            size_mb=int(raw["size_mb"]),
            threshold=float(raw["threshold"]),
            image_size=raw.get("image_size"),
            hf_repo=raw.get("hf_repo"),
            pretrained=raw.get("pretrained"),
            files=tuple(raw.get("files", ())),
            requires=tuple(raw.get("requires", ())),
            extra_files=tuple(
                (str(extra["repo"]), tuple(extra["files"])) for extra in raw.get("extra_files", ())
            ),
            local_dir=raw.get("local_dir"),
            imagenet_top1=float(raw["imagenet_top1"]) if "imagenet_top1" in raw else None,
            images_per_s=tuple(
                (str(precision), float(speed))
                for precision, speed in raw.get("images_per_s", {}).items()
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"bad entry {raw.get('key', '?')!r} in {source}: {exc}") from exc
    if info.family not in FAMILIES:
        raise ConfigError(f"model {info.key!r} has unknown family {info.family!r}")
    if info.hf_repo is None and info.local_dir is None:
        raise ConfigError(f"model {info.key!r} needs hf_repo or local_dir")
    if not 0.0 <= info.threshold < 1.0:
        raise ConfigError(f"model {info.key!r} has a threshold outside [0, 1): {info.threshold}")
    if info.family == "open_clip" and info.pretrained is None and REPO_CONFIG not in info.files:
        raise ConfigError(
            f"model {info.key!r} needs an open_clip `pretrained` tag, or {REPO_CONFIG} "
            "among its files to be built from"
        )
    return info


def default_model_key() -> str:
    """The model used when none is named: the bundled demo, which needs no download."""
    return _registry()[0]


def get_model(key: str, model_dir: Path | None = None) -> ModelInfo:
    """The registry entry for `key` (without the presence check), or a ConfigError listing keys."""
    entries = _registry(model_dir)[1]
    for info in entries:
        if info.key == key:
            return info
    known = ", ".join(info.key for info in entries)
    raise ConfigError(f"unknown model {key!r}; known models: {known}")


def list_models(model_dir: Path | None = None) -> list[ModelInfo]:
    """Every registry entry, with `present` and `path` saying whether its files are here."""
    return [locate(info, model_dir) for info in _registry(model_dir)[1]]


def folder(info: ModelInfo, model_dir: Path | None = None) -> Path:
    """Where the entry's files belong on this machine."""
    if info.local_dir is not None:
        return PACKAGE_ROOT / info.local_dir
    return repo_dir(str(info.hf_repo), model_dir)


def locate(info: ModelInfo, model_dir: Path | None = None) -> ModelInfo:
    """`info` with `present`/`path` filled in from the files on disk (no network, no torch).

    `path` is the folder holding the files: ours, or a Hugging Face cache snapshot.
    """
    directory = folder(info, model_dir)
    found = [_find_file(info, directory, item) for item in info.files]
    extras = [
        _hub_cached(repo, name, model_dir) for repo, names in info.extra_files for name in names
    ]
    if not all(found) or not all(extras):
        return replace(info, present=False, path=None)
    path = directory if all(f.is_relative_to(directory) for f in found if f) else found[0].parent
    return replace(info, present=True, path=path)


def _find_file(info: ModelInfo, directory: Path, item: str) -> Path | None:
    """The first alternative of `item` on disk: in `directory`, else the Hugging Face cache."""
    for name in item.split("|"):
        if (directory / name).is_file():
            return directory / name
    if info.hf_repo is not None:
        for name in item.split("|"):
            cached = _hub_cached(info.hf_repo, name)
            if cached is not None:
                return cached
    return None


def _hub_cached(repo_id: str, filename: str, model_dir: Path | None = None) -> Path | None:
    """A file of `repo_id` in the model dir's hub cache, else in the default one."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for cache_dir in (hub_cache_dir(model_dir), None):
        cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
        if isinstance(cached, str):
            return Path(cached)
    return None


def missing_message(info: ModelInfo, model_dir: Path | None = None) -> str:
    """One sentence saying what a download of `info` would fetch, and where it would go."""
    if info.local_dir is not None:
        return (
            f"the bundled model {info.key!r} is missing from {folder(info, model_dir)}; "
            "train it with: python -m imgfinder.demo.train"
        )
    names = [item.split("|")[0] for item in info.files]
    names += [f"{repo}/{name}" for repo, files in info.extra_files for name in files]
    return (
        f"{info.key} is not downloaded: pulling it fetches {', '.join(names)} "
        f"(about {info.size_mb} MB) from {info.url} into {folder(info, model_dir)}"
    )


# --------------------------------------------------------------------------- building


def create_embedder(key: str, *, model_dir: Path | None = None, runtime: str = "auto") -> Embedder:
    """Build the embedder for registry entry `key`; raises ModelError when it cannot load here.

    `runtime` is "auto" (ONNX Runtime when installed, else torch), "torch", "onnx" or
    "onnx-int8". Nothing heavy happens here: weights load on first use.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    info = locate(get_model(key, model_dir), model_dir)
    missing = [name for name in info.requires if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(
            f"{key} needs the Python package(s) {', '.join(missing)}: "
            f"pip install {' '.join(missing)}"
        )
    if not info.present:
        raise ModelError(missing_message(info, model_dir))
    embedder = _load(info, model_dir, runtime)
    embedder.languages = info.languages
    return embedder


def _load(info: ModelInfo, model_dir: Path | None, runtime: str) -> Embedder:
    loader = _import_loader(info.family)
    if info.family == "demo":
        return loader(folder(info), runtime="onnx" if runtime == "auto" else runtime)
    if info.family == "immich":
        return loader(info.path, runtime=runtime)
    if runtime == "auto":
        runtime = "onnx" if importlib.util.find_spec("onnxruntime") else "torch"
    onnx_dir = Path(model_dir) / "onnx" if model_dir else None
    if info.family == "ruclip":
        return loader(info.path, runtime=runtime, onnx_dir=onnx_dir)
    pretrained = info.pretrained or f"{LOCAL_DIR}{info.path}"
    return loader(
        info.architecture, pretrained, runtime=runtime, cache_dir=model_dir, onnx_dir=onnx_dir
    )


def _import_loader(family: str) -> Any:
    module_name, _, name = LOADERS[family].partition(":")
    return getattr(importlib.import_module(module_name), name)


# --------------------------------------------------------------------------- downloading


def pull(
    key: str,
    *,
    model_dir: Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ModelInfo:
    """Download the files of registry entry `key`; fails fast, in one sentence, when offline.

    `progress(done, total, name)` is told before each file and once at the end."""
    info = locate(get_model(key, model_dir), model_dir)
    if info.present:
        return info
    if info.local_dir is not None or info.hf_repo is None:
        raise ModelError(missing_message(info, model_dir))
    try:
        check_online()
    except ModelError as exc:
        raise ModelError(f"{exc}, so {missing_message(info, model_dir)}") from exc
    from huggingface_hub import hf_hub_download

    directory = folder(info, model_dir)
    tell = progress or (lambda _done, _total, _name: None)
    total = len(info.files) + sum(len(names) for _, names in info.extra_files)
    done = 0
    try:
        for item in info.files:
            tell(done, total, item.split("|")[0])
            if _find_file(info, directory, item) is None:
                _download_first(hf_hub_download, info.hf_repo, item.split("|"), directory)
            done += 1
        for repo, names in info.extra_files:
            for name in names:
                tell(done, total, f"{repo}/{name}")
                if _hub_cached(repo, name, model_dir) is None:
                    hf_hub_download(repo, name, cache_dir=hub_cache_dir(model_dir))
                done += 1
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"downloading {key} from {info.url} failed: {exc}") from exc
    tell(total, total, "")
    return locate(info, model_dir)


def _download_first(download: Any, repo_id: str, names: list[str], directory: Path) -> None:
    """Fetch the first alternative the repository has (safetensors before pickles)."""
    from huggingface_hub.errors import EntryNotFoundError

    for name in names:
        try:
            download(repo_id, name, local_dir=directory)
            return
        except EntryNotFoundError:
            continue
    raise ModelError(f"{repo_id} has none of {', '.join(names)}")


def check_online(timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise a one-sentence ModelError unless the Hugging Face hub answers within `timeout`.

    huggingface_hub retries unreachable hosts for about half a minute; this fails in seconds.
    """
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or HF_ENDPOINT
    if constants.HF_HUB_OFFLINE:
        raise ModelError("downloads are disabled by HF_HUB_OFFLINE")
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ModelError(f"cannot reach {endpoint} ({exc.strerror or exc})") from exc
