"""imgfinder: semantic search over your own photos and videos, offline on a CPU.

Heavy modules load lazily, so `import imgfinder` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "Collection",
    "Hit",
    "ImgFinderError",
    "Query",
    "SearchModel",
    "Selection",
    "Service",
    "Settings",
    "open_collection",
]

if TYPE_CHECKING:
    from imgfinder.config import Settings
    from imgfinder.errors import ImgFinderError
    from imgfinder.search import Hit, SearchModel
    from imgfinder.service import Query, Selection, Service
    from imgfinder.store.collection import Collection

_LAZY = {
    "SearchModel": "imgfinder.search",
    "Hit": "imgfinder.search",
    "Collection": "imgfinder.store.collection",
    "ImgFinderError": "imgfinder.errors",
    "Service": "imgfinder.service",
    "Query": "imgfinder.service",
    "Selection": "imgfinder.service",
    "Settings": "imgfinder.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


def open_collection(name_or_path: str, model: Any = None, **options: Any) -> SearchModel:
    """Open (or create) a collection by name or path, ready to index and search."""
    from imgfinder.search import SearchModel

    return SearchModel(name_or_path, model, **options)
