"""One exception hierarchy, so the CLI and the app can turn any failure into one sentence."""


class ImgFinderError(Exception):
    """Base of every error imgfinder raises on purpose."""


class ConfigError(ImgFinderError):
    """Bad settings or arguments."""


class NotFoundError(ConfigError):
    """A collection, item or job that does not exist was asked for."""


class ModelError(ImgFinderError):
    """A model is missing, cannot load, or does not match a collection."""


class MediaError(ImgFinderError):
    """A media file cannot be read or decoded."""


class IndexerError(ImgFinderError):
    """An indexer cannot be built, loaded or queried."""


class CatalogError(ImgFinderError):
    """The catalog on disk is missing, damaged or from another version."""


class StorageError(CatalogError):
    """A write failed (a full disk, a read-only folder); what was on disk before is intact."""


class BusyError(CatalogError):
    """Another process is indexing the same collection."""


class MissingExtraError(ImgFinderError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'imgfinder[{extra}]'"
        )
        self.package = package
        self.extra = extra
