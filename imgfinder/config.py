"""One settings object for every IMGFINDER_* variable, and what a collection name means.

Collections live in one data folder (the platform's convention: ~/.local/share/imgfinder on
Linux, ~/Library/Application Support/imgfinder on macOS, %LOCALAPPDATA%\\imgfinder on Windows;
IMGFINDER_DATA_DIR moves it), so `-c photos` is the same collection from any folder and in
every shell. A folder elsewhere is used only when it is given as a path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imgfinder.errors import ConfigError

#: a collection name: what the page, the CLI and the API accept as a bare name
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = "letters, digits, '-', '_' or '.', up to 64 characters"
#: "module:function" of an embedder factory `(model_key, runtime) -> Embedder`, to run the
#: shells with a model of one's own
EMBEDDER_FACTORY_ENV = "IMGFINDER_EMBEDDER_FACTORY"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("imgfinder", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """What a process runs with; frozen and hashable, so a page can cache on it."""

    data_dir: str = ""
    #: where named collections live (IMGFINDER_INDEXES; default: <data dir>/indexes)
    indexes_dir: str = ""
    #: the collection a page opens first (IMGFINDER_COLLECTION: a name or a path)
    collection: str | None = None
    #: where downloaded models live (IMGFINDER_MODEL_DIR; None: the registry's default)
    model_dir: str | None = None
    embedder_factory: str | None = None
    #: folders the page and the API may index (and below them); empty means the home folder
    #: and the indexes folder (where the demo keeps its media)
    allowed_roots: tuple[str, ...] = ()
    #: every API request must carry it when set; required off loopback
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    #: the Qdrant server the qdrant indexer uses when it is given no location of its own
    qdrant_url: str | None = None

    def __post_init__(self) -> None:
        data = self.data_dir or str(default_data_dir())
        object.__setattr__(self, "data_dir", data)
        if not self.indexes_dir:
            object.__setattr__(self, "indexes_dir", str(Path(data) / "indexes"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """IMGFINDER_DATA_DIR, _INDEXES, _COLLECTION, _MODEL_DIR, _ALLOWED_ROOTS (folders
        separated by the platform's path separator), _API_KEY, _HOST, _PORT, _QDRANT_URL and
        the embedder factory."""
        allowed = environ.get("IMGFINDER_ALLOWED_ROOTS", "")
        port = environ.get("IMGFINDER_PORT", "8000")
        if not port.isdigit():
            raise ConfigError(f"IMGFINDER_PORT must be a port number, not {port!r}")
        return cls(
            data_dir=environ.get("IMGFINDER_DATA_DIR", ""),
            indexes_dir=environ.get("IMGFINDER_INDEXES", ""),
            collection=environ.get("IMGFINDER_COLLECTION") or None,
            model_dir=environ.get("IMGFINDER_MODEL_DIR") or None,
            embedder_factory=environ.get(EMBEDDER_FACTORY_ENV) or None,
            allowed_roots=tuple(part for part in allowed.split(os.pathsep) if part),
            api_key=environ.get("IMGFINDER_API_KEY") or None,
            host=environ.get("IMGFINDER_HOST") or "127.0.0.1",
            port=int(port),
            qdrant_url=environ.get("IMGFINDER_QDRANT_URL") or None,
        )

    def collection_path(self, name_or_path: str | os.PathLike[str], *, paths: bool = True) -> Path:
        """A bare name is a folder in the indexes folder; a path must look like one
        (absolute, or starting with ./ or ~) and is refused when `paths` is False (names that
        come over HTTP). Anything else is refused, so no name can climb out of the data
        folder."""
        if isinstance(name_or_path, Path) and paths:
            return name_or_path
        text = os.fspath(name_or_path)
        if paths and (text.startswith(("/", "./", "~")) or os.path.isabs(text)):
            try:
                return Path(text).expanduser()
            except RuntimeError:  # ~user of no such user
                raise ConfigError(f"there is no home folder for {text!r}") from None
        if COLLECTION_NAME.match(text) and text not in (".", ".."):
            return Path(self.indexes_dir) / text
        elsewhere = "; to use a folder elsewhere, give its path from / or ./" if paths else ""
        raise ConfigError(f"{text!r} is not a collection name ({NAME_RULE}){elsewhere}")

    def indexable_roots(self) -> list[Path]:
        """Real paths of the folders the page and the API may index."""
        roots = self.allowed_roots or (str(Path.home()), self.indexes_dir)
        return [Path(os.path.realpath(Path(root).expanduser())) for root in roots]

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK


def resolve_collection(name_or_path: str | os.PathLike[str]) -> Path:
    """`Settings.collection_path` with the settings of this process's environment."""
    return Settings.from_env().collection_path(name_or_path)
