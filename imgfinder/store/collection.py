"""A collection on disk: manifest, catalog, vector files and saved indexes in one folder."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from imgfinder.atomic import atomic_write_text, orphaned_temp_files
from imgfinder.classes import Labels
from imgfinder.errors import CatalogError, NotFoundError, StorageError
from imgfinder.store.catalog import Catalog
from imgfinder.store.lock import WriterLock
from imgfinder.store.vectors import VectorStore, vector_file_name

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
#: beside a saved index: the generation and embedder key it was built from
STAMP = "stamp.json"


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, refused with one sentence when it is unreadable, malformed or newer."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read {path}: {exc}") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CatalogError(
            f"{path} is not an imgfinder manifest (its format_version is {version!r}); the "
            f"collection is damaged: run imgfinder check"
        )
    if version > FORMAT_VERSION:
        raise CatalogError(
            f"{path.parent} was written by a newer imgfinder (format {version}); upgrade "
            f"imgfinder to open it"
        )
    if not isinstance(manifest.get("embedders", {}), dict):
        raise CatalogError(f"{path} lists its embedders wrongly; run imgfinder check")
    return manifest


def no_collection(directory: Path) -> NotFoundError:
    """The error for a collection that is not there, naming those beside it."""
    nearby = [path.name for path in list_collections(directory.parent)]
    known = f" (collections beside it: {', '.join(nearby)})" if nearby else ""
    return NotFoundError(
        f"no collection at {directory}{known}; create it with: imgfinder index PATH "
        f"--collection {directory}"
    )


def list_collections(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / MANIFEST).is_file())


class Collection:
    """Opens (or creates) the folder; everything inside is written atomically."""

    def __init__(self, directory: str | Path, *, create: bool = True) -> None:
        self.dir = Path(directory)
        manifest_path = self.dir / MANIFEST
        if self.dir.exists() and not self.dir.is_dir():
            raise CatalogError(
                f"{self.dir} is a file, not a collection folder; name another collection"
            )
        if not manifest_path.exists():
            if not create:
                raise no_collection(self.dir)
            self._create()
        else:
            self.manifest = read_manifest(manifest_path)
            self.catalog = Catalog(self.dir / CATALOG, create=False)

    def _create(self) -> None:
        """Make the catalog and the manifest. Two processes may create one collection at
        once: the catalog's schema is made in one transaction, and their manifests are alike."""
        self.manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "created": time.time(),
            "model": None,
            "embedders": {},
        }
        self.catalog = Catalog(self.dir / CATALOG)
        self.save_manifest()

    def writer(self) -> WriterLock:
        """A new handle on the collection's writer lock (each handle locks on its own, so two
        threads of one process exclude each other too)."""
        return WriterLock(self.dir)

    @property
    def name(self) -> str:
        return self.dir.name

    def save_manifest(self) -> None:
        self.manifest["updated"] = time.time()
        try:
            atomic_write_text(self.dir / MANIFEST, json.dumps(self.manifest, indent=2))
        except OSError as exc:
            raise StorageError(f"cannot write {self.dir / MANIFEST}: {exc}") from exc

    def sweep_temp_files(self) -> int:
        """Remove the temp files of writes that a killed process left behind (under the
        writer lock); returns how many."""
        orphans = orphaned_temp_files(self.dir)
        for orphan in orphans:
            orphan.unlink(missing_ok=True)
        return len(orphans)

    def register_embedder(
        self, model: str, embedder_key: str, dim: int, runtime: str | None = None
    ) -> None:
        """Record that vectors under `embedder_key` exist (or are about to). Called under the
        writer lock, on the manifest as it is on disk now: another process may have added an
        embedder since this one opened the collection."""
        self.manifest = read_manifest(self.dir / MANIFEST)
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

    def labels(self) -> Labels | None:
        """The labels this collection sorts its items into, as the manifest on disk has them
        now (another process may have set them)."""
        return Labels.from_manifest(read_manifest(self.dir / MANIFEST))

    def set_labels(self, labels: Labels | None) -> None:
        """Sort items into `labels` from now on (None: no classes)."""
        self._set_in_manifest("labels", None if labels is None else labels.to_manifest())

    def watched(self) -> bool:
        """Whether the collection's folders are to be watched for changes, as the manifest on
        disk says now (so a restarted server resumes the watch)."""
        return bool(read_manifest(self.dir / MANIFEST).get("watch", False))

    def set_watched(self, on: bool) -> None:
        self._set_in_manifest("watch", on)

    def _set_in_manifest(self, name: str, value: object) -> None:
        """Set (or, with None, drop) one entry of the manifest as it is on disk now, under the
        writer lock: another process may have changed other entries since this one read it."""
        with self.writer():
            self.manifest = read_manifest(self.dir / MANIFEST)
            if value is None:
                self.manifest.pop(name, None)
            else:
                self.manifest[name] = value
            self.save_manifest()

    def classes_file(self, embedder_key: str, labels: Labels) -> Path:
        return self.dir / "classes" / labels.file_name(embedder_key)

    def runtime_for(self, model: str, runtime: str) -> str:
        """`runtime`, except that "auto" means the runtime `model` last indexed this collection
        with, so that it finds the same vectors (an int8 collection searched with int8)."""
        if runtime != "auto":
            return runtime
        return self.runtime_of(model) or runtime

    def runtime_of(self, model: str) -> str | None:
        """The runtime `model` last indexed this collection with, if recorded."""
        key = self.latest_key(model)
        return self.manifest["embedders"][key].get("runtime") if key else None

    def latest_key(self, model: str) -> str | None:
        """The embedder key of the vectors `model` made here last, if any."""
        embedders = self.manifest.get("embedders", {})
        keys = [key for key, entry in embedders.items() if entry.get("model") == model]
        latest = self.manifest.get("embedder_key")
        return latest if latest in keys else (keys[-1] if keys else None)

    def vectors(self, embedder_key: str, dim: int) -> VectorStore:
        return VectorStore(self.dir / "vectors" / vector_file_name(embedder_key), dim)

    def index_dir(self, embedder_key: str, indexer: str, params: dict[str, Any]) -> Path:
        spec = json.dumps({"key": embedder_key, "params": params}, sort_keys=True)
        digest = hashlib.sha1(spec.encode("utf-8")).hexdigest()[:12]
        return self.dir / "index" / f"{indexer}-{digest}"

    def calibration_file(self, embedder_key: str) -> Path:
        """Where what unrelated queries find in this collection is kept, per embedder."""
        digest = hashlib.sha1(embedder_key.encode("utf-8")).hexdigest()[:12]
        return self.dir / "calibration" / f"{digest}.npz"

    def thumbs_dir(self) -> Path:
        return self.dir / "thumbs"

    def close(self) -> None:
        self.catalog.close()
