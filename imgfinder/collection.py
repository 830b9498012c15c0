"""A collection on disk: manifest, catalog, vector files and saved indexes in one folder."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from imgfinder.atomic import atomic_write_text
from imgfinder.catalog import Catalog
from imgfinder.errors import CatalogError
from imgfinder.vectorstore import VectorStore, vector_file_name

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def default_indexes_dir() -> Path:
    """Where named collections live: $IMGFINDER_INDEXES or ./indexes."""
    return Path(os.environ.get("IMGFINDER_INDEXES", "indexes"))


def resolve_collection(name_or_path: str | Path) -> Path:
    """A bare name means a folder under the indexes dir; anything with a slash is a path."""
    text = str(name_or_path)
    if os.sep in text or "/" in text or text.startswith("."):
        return Path(text)
    return default_indexes_dir() / text


def list_collections(indexes_dir: Path | None = None) -> list[Path]:
    base = indexes_dir or default_indexes_dir()
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / MANIFEST).is_file())


class Collection:
    """Opens (or creates) the folder; everything inside is written atomically."""

    def __init__(self, directory: str | Path, *, create: bool = True) -> None:
        self.dir = Path(directory)
        manifest_path = self.dir / MANIFEST
        if not manifest_path.exists():
            if not create:
                nearby = [path.name for path in list_collections(self.dir.parent)]
                known = f" (collections beside it: {', '.join(nearby)})" if nearby else ""
                raise CatalogError(
                    f"no collection at {self.dir}{known}; create it with: imgfinder index PATH "
                    f"--collection {self.dir}"
                )
            self.dir.mkdir(parents=True, exist_ok=True)
            self.manifest: dict[str, Any] = {
                "format_version": FORMAT_VERSION,
                "created": time.time(),
                "model": None,
                "embedders": {},
            }
            self.save_manifest()
        else:
            try:
                self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CatalogError(f"cannot read {manifest_path}: {exc}") from exc
            if int(self.manifest.get("format_version", 0)) > FORMAT_VERSION:
                raise CatalogError(
                    f"{self.dir} was written by a newer imgfinder (format "
                    f"{self.manifest['format_version']}); upgrade imgfinder"
                )
        self.catalog = Catalog(self.dir / "catalog.sqlite")

    @property
    def name(self) -> str:
        return self.dir.name

    def save_manifest(self) -> None:
        self.manifest["updated"] = time.time()
        atomic_write_text(self.dir / MANIFEST, json.dumps(self.manifest, indent=2))

    def register_embedder(
        self, model: str, embedder_key: str, dim: int, runtime: str | None = None
    ) -> None:
        """Record that vectors under `embedder_key` exist (or are about to)."""
        embedders = self.manifest.setdefault("embedders", {})
        known = embedders.get(embedder_key)
        if known and int(known["dim"]) != dim:
            raise CatalogError(f"embedder {embedder_key} changed its dimension")
        embedders[embedder_key] = {"model": model, "dim": dim}
        if runtime is not None:
            embedders[embedder_key]["runtime"] = runtime
        self.manifest["model"] = model
        self.manifest["embedder_key"] = embedder_key
        self.save_manifest()

    def runtime_for(self, model: str, runtime: str) -> str:
        """`runtime`, except that "auto" means the runtime `model` last indexed this collection
        with, so that it finds the same vectors (an int8 collection searched with int8)."""
        if runtime != "auto":
            return runtime
        return self.runtime_of(model) or runtime

    def runtime_of(self, model: str) -> str | None:
        """The runtime `model` last indexed this collection with, if recorded."""
        embedders = self.manifest.get("embedders", {})
        keys = [key for key, entry in embedders.items() if entry.get("model") == model]
        latest = self.manifest.get("embedder_key")
        key = latest if latest in keys else (keys[-1] if keys else None)
        return embedders[key].get("runtime") if key else None

    def vectors(self, embedder_key: str, dim: int) -> VectorStore:
        return VectorStore(self.dir / "vectors" / vector_file_name(embedder_key), dim)

    def index_dir(self, embedder_key: str, indexer: str, params: dict[str, Any]) -> Path:
        spec = json.dumps({"key": embedder_key, "params": params}, sort_keys=True)
        digest = hashlib.sha1(spec.encode("utf-8")).hexdigest()[:12]
        return self.dir / "index" / f"{indexer}-{digest}"

    def thumbs_dir(self) -> Path:
        return self.dir / "thumbs"

    def close(self) -> None:
        self.catalog.close()
