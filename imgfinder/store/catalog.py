"""SQLite catalog of files, their contents, searchable items (images, video frames) and vector rows.

Files are keyed by path but point at a content row keyed by hash, so a renamed, moved or copied
file reuses its content's vectors instead of being embedded again. Every SQL statement of
imgfinder lives in this module; the schema grows by numbered migrations, applied atomically.

Paths are stored losslessly: a name that is valid UTF-8 is TEXT, any other (old archives,
Windows-1251 disks) is a BLOB of its exact bytes, and both read back as the `str` that
`os.fsdecode` gives, so such files are indexed, shown and served like any other.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgfinder.errors import CatalogError, StorageError
from imgfinder.filters import Filter

log = logging.getLogger(__name__)


def _mark(content: str) -> str:
    """Trigger statements that mark a content as changed in a generation not yet known."""
    return (
        f"DELETE FROM changed WHERE content_id = {content}; "
        f"INSERT INTO changed VALUES ({content}, NULL);"
    )


#: schema step by step; a catalog at version N runs every step after N in one transaction
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS roots (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE)",
        "CREATE TABLE IF NOT EXISTS contents (id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, "
        "kind TEXT NOT NULL CHECK (kind IN ('image', 'video')), width INTEGER, height INTEGER, "
        "duration REAL)",
        "CREATE TABLE IF NOT EXISTS files (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, "
        "root_id INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE, "
        "content_id INTEGER NOT NULL REFERENCES contents(id), size INTEGER NOT NULL, "
        "mtime_ns INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS files_content ON files(content_id)",
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, "
        "content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE, t REAL)",
        "CREATE INDEX IF NOT EXISTS items_content ON items(content_id, t)",
        "CREATE TABLE IF NOT EXISTS vectors (item_id INTEGER NOT NULL REFERENCES items(id) "
        "ON DELETE CASCADE, embedder_key TEXT NOT NULL, row INTEGER NOT NULL, "
        "PRIMARY KEY (item_id, embedder_key))",
        "CREATE TABLE IF NOT EXISTS embedded (content_id INTEGER NOT NULL REFERENCES "
        "contents(id) ON DELETE CASCADE, embedder_key TEXT NOT NULL, "
        "PRIMARY KEY (content_id, embedder_key))",
    ),
    # 2: a snapshot reads every row of one embedder key
    ("CREATE INDEX IF NOT EXISTS vectors_row ON vectors(embedder_key, row)",),
    # 3: when a photo was taken by its EXIF (ISO text, local time), for date filters; contents
    # without it are dated by their files' modification time
    ("ALTER TABLE contents ADD COLUMN taken TEXT",),
    # 4: the generation at which each content's files (paths, times) or date last changed, so
    # an index that keeps them beside the vectors (Qdrant's payload) updates only those; NULL
    # until the transaction's generation is known
    (
        "CREATE TABLE IF NOT EXISTS changed (content_id INTEGER PRIMARY KEY, generation INTEGER)",
        "CREATE INDEX IF NOT EXISTS changed_generation ON changed(generation)",
        # (a trigger's own OR REPLACE gives way to the outer statement's conflict policy)
        f"CREATE TRIGGER IF NOT EXISTS file_added AFTER INSERT ON files BEGIN "
        f"{_mark('NEW.content_id')} END",
        f"CREATE TRIGGER IF NOT EXISTS file_changed AFTER UPDATE ON files BEGIN "
        f"{_mark('OLD.content_id')} {_mark('NEW.content_id')} END",
        f"CREATE TRIGGER IF NOT EXISTS file_removed AFTER DELETE ON files BEGIN "
        f"{_mark('OLD.content_id')} END",
        f"CREATE TRIGGER IF NOT EXISTS date_changed AFTER UPDATE OF taken ON contents BEGIN "
        f"{_mark('NEW.id')} END",
        "CREATE TRIGGER IF NOT EXISTS content_removed AFTER DELETE ON contents BEGIN "
        "DELETE FROM changed WHERE content_id = OLD.id; END",
    ),
)
#: the modification time of a file as the same local ISO text as an EXIF date
_MTIME_TAKEN = "strftime('%Y-%m-%dT%H:%M:%S', f.mtime_ns / 1000000000, 'unixepoch', 'localtime')"
SCHEMA_VERSION = len(MIGRATIONS)


def to_db(path: str | os.PathLike[str]) -> str | bytes:
    """A path as stored: TEXT when it is valid UTF-8, else a BLOB of its exact bytes."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def from_db(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _prefix_bounds(folder: str) -> tuple[tuple[str, str], tuple[bytes, bytes]]:
    """[low, high) of the paths under `folder`, as TEXT and as the BLOB form of paths that
    are not UTF-8: every such path starts with folder + separator, which sorts below the
    folder followed by the next character after the separator."""
    inside = folder.rstrip(os.sep) + os.sep
    after = inside[:-1] + chr(ord(os.sep) + 1)
    raw = (os.fsencode(inside), os.fsencode(after))
    if isinstance(to_db(inside), bytes):
        return ("", ""), raw  # a folder that is not UTF-8 holds no path stored as TEXT
    return (inside, after), raw


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    content_id: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FileRecord:
    """What a served file must still be: the indexed size, mtime and content hash."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class ItemRow:
    """A searchable thing: an image, or one frame of a video at time `t`."""

    id: int
    content_id: int
    kind: str
    t: float | None
    path: str | None
    content_hash: str
    #: when it was taken by its EXIF, else its file's modification time (local ISO text)
    taken: str | None = None


@dataclass(frozen=True)
class Placement:
    """An item's kind, content, time in a video and EXIF date (local ISO text, or None), and
    the (path, mtime_ns) of each file holding it."""

    kind: str
    content_id: int
    t: float | None
    taken: str | None
    files: list[tuple[str, int]]


@dataclass(frozen=True)
class FileFacts:
    """What a viewer shows of a file besides its pixels: bytes on disk, when it was taken
    (EXIF, else its modification time; local ISO text) and a video's length in seconds."""

    size: int
    taken: str
    duration: float | None


@dataclass(frozen=True)
class Snapshot:
    """The live vector rows of one embedder key and the generation they belong to, read in one
    transaction, so an index built from them can be stamped with that generation and no other.
    Arrays, not a dict: 16 bytes an item, where a dict of 10^6 items takes over 100 MB."""

    generation: int
    #: item ids, ascending, and the vector row of each
    ids: np.ndarray
    row_numbers: np.ndarray

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(-1, np.zeros(0, np.int64), np.zeros(0, np.int64))

    @property
    def rows(self) -> dict[int, int]:
        """item id -> vector row, for callers that look up items one by one."""
        return dict(zip(self.ids.tolist(), self.row_numbers.tolist(), strict=True))

    def row(self, item_id: int) -> int | None:
        """The vector row of one item, or None when it has none."""
        at = int(np.searchsorted(self.ids, item_id))
        if at < len(self.ids) and self.ids[at] == item_id:
            return int(self.row_numbers[at])
        return None

    def changes_from(self, old: Snapshot) -> tuple[np.ndarray, np.ndarray]:
        """(ids gone or moved to another row since `old`, ids new or moved): what an index
        holding `old` must drop and add to hold this."""
        _, in_old, in_new = np.intersect1d(
            old.ids, self.ids, assume_unique=True, return_indices=True
        )
        same = old.row_numbers[in_old] == self.row_numbers[in_new]
        kept_old = np.zeros(len(old.ids), dtype=bool)
        kept_old[in_old[same]] = True
        kept_new = np.zeros(len(self.ids), dtype=bool)
        kept_new[in_new[same]] = True
        return old.ids[~kept_old], self.ids[~kept_new]


@dataclass(frozen=True)
class NewFile:
    """A file to record: its scanned path, root and stat, and its content hash."""

    path: str
    root_id: int
    size: int
    mtime_ns: int
    content_hash: str


def _storage_error(path: Path, exc: sqlite3.Error) -> StorageError | CatalogError:
    text = str(exc)
    if "full" in text or "disk I/O" in text or "readonly" in text:
        return StorageError(f"cannot write the catalog {path}: {text}; nothing was lost")
    return CatalogError(f"the catalog {path} cannot be used: {text}")


def _switch_to_wal(db: sqlite3.Connection, patience: float = 30.0) -> None:
    """Turn on WAL; SQLite answers "locked" at once, without waiting, while another process
    creating the same catalog holds it, so wait here."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Catalog:
    """Thread-safe wrapper around one SQLite database (WAL, busy timeout, foreign keys).

    `create=False` refuses a missing file: a deleted catalog must never read as an empty
    collection.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise CatalogError(
                f"the catalog {self.path} is missing, so this collection's vectors cannot be "
                f"matched to files; index its folders again into a new collection"
            )
        self._lock = threading.RLock()
        try:
            self._db = self._connect()
        except sqlite3.OperationalError as exc:
            self._db = self._open_immutable(exc, create)
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc) from exc

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        except OSError as exc:
            raise StorageError(f"cannot open the catalog {self.path}: {exc}") from exc
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                _switch_to_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            self._db = db
            self._migrate()
        except BaseException:
            db.close()
            raise
        return db

    def _open_immutable(self, error: sqlite3.OperationalError, create: bool) -> sqlite3.Connection:
        """On a full disk SQLite cannot make the files a WAL reader needs; a catalog that was
        closed cleanly (no WAL left) is then read as immutable, so search still answers."""
        wal = self.path.with_name(self.path.name + "-wal")
        full = "disk I/O" in str(error) or "full" in str(error)
        if create or not full or (wal.exists() and wal.stat().st_size > 0):
            raise _storage_error(self.path, error) from error
        log.warning("cannot write beside %s (%s): reading it as it is", self.path, error)
        db = sqlite3.connect(
            f"{self.path.absolute().as_uri()}?immutable=1", uri=True, check_same_thread=False
        )
        self._db = db
        try:
            if self._schema_version() != SCHEMA_VERSION:
                raise _storage_error(self.path, error) from error
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self) -> None:
        version = self._schema_version()
        if version == SCHEMA_VERSION:
            return
        with self.transaction() as db:
            version = self._schema_version()  # another process may have migrated meanwhile
            for step in MIGRATIONS[version:]:
                for statement in step:
                    db.execute(statement)
            db.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    def _schema_version(self) -> int:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not has_meta:
            return 0
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            return 0
        try:
            version = int(row[0])
        except (TypeError, ValueError):
            version = -1
        if version < 0:
            raise CatalogError(
                f"the catalog {self.path} has a malformed schema version {row[0]!r}; it is "
                f"damaged or was not written by imgfinder: run imgfinder check"
            )
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"the catalog {self.path} has schema {version}, newer than this imgfinder "
                f"understands ({SCHEMA_VERSION}); upgrade imgfinder to open it"
            )
        return version

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; rolled back on any exception (a full disk included)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _storage_error(self.path, exc) from exc
            try:
                yield self._db
                self._db.commit()
            except sqlite3.Error as exc:
                self._db.rollback()
                raise _storage_error(self.path, exc) from exc
            except BaseException:
                self._db.rollback()
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent view over several statements (WAL readers never wait for a writer)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.rollback()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(self.path, exc) from exc

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else default

    def generation(self) -> int:
        """Bumped on every change to the searchable set; saved indexes compare against it."""
        return int(self.get_meta("generation", "0") or 0)

    @staticmethod
    def _bump_generation(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )
        db.execute(
            "UPDATE changed SET generation = (SELECT CAST(value AS INTEGER) FROM meta "
            "WHERE key = 'generation') WHERE generation IS NULL"
        )

    # -- roots and files --------------------------------------------------------------------

    def ensure_roots(self, paths: Iterable[str]) -> dict[str, int]:
        """Root path -> id, adding the roots not known yet."""
        with self.transaction() as db:
            ids = {}
            for path in paths:
                db.execute("INSERT OR IGNORE INTO roots(path) VALUES (?)", (to_db(path),))
                found = db.execute("SELECT id FROM roots WHERE path=?", (to_db(path),)).fetchone()
                ids[path] = int(found[0])
            return ids

    def roots(self) -> list[str]:
        return [from_db(row[0]) for row in self._query("SELECT path FROM roots ORDER BY path")]

    def files_under(self, root: str) -> dict[str, FileRow]:
        rows = self._query(
            "SELECT f.id, f.path, f.content_id, f.size, f.mtime_ns FROM files f "
            "JOIN roots r ON r.id = f.root_id WHERE r.path = ?",
            (to_db(root),),
        )
        return {from_db(row[1]): FileRow(row[0], from_db(row[1]), *row[2:]) for row in rows}

    def file_record(self, path: str) -> FileRecord | None:
        """The indexed size, mtime and hash of a file path, if the path is in the catalog."""
        rows = self._query(
            "SELECT f.size, f.mtime_ns, c.hash FROM files f JOIN contents c "
            "ON c.id = f.content_id WHERE f.path = ?",
            (to_db(path),),
        )
        return FileRecord(path, *rows[0]) if rows else None

    def embedded_content(self, content_hash: str, embedder_key: str) -> int | None:
        """The content id of a hash already embedded under `embedder_key`, else None."""
        rows = self._query(
            "SELECT c.id FROM contents c JOIN embedded e ON e.content_id = c.id "
            "WHERE c.hash = ? AND e.embedder_key = ?",
            (content_hash, embedder_key),
        )
        return int(rows[0][0]) if rows else None

    def is_embedded(self, content_id: int, embedder_key: str) -> bool:
        rows = self._query(
            "SELECT 1 FROM embedded WHERE content_id=? AND embedder_key=?",
            (content_id, embedder_key),
        )
        return bool(rows)

    def facts(self, path: str) -> FileFacts | None:
        """A file's size, date and length, if the path is in the catalog."""
        rows = self._query(
            f"SELECT f.size, COALESCE(c.taken, {_MTIME_TAKEN}), c.duration FROM files f "
            "JOIN contents c ON c.id = f.content_id WHERE f.path = ?",
            (to_db(path),),
        )
        return FileFacts(*rows[0]) if rows else None

    def copies_of(self, path: str) -> list[str]:
        """The other files holding the same content as `path`, by name."""
        rows = self._query(
            "SELECT g.path FROM files f JOIN files g ON g.content_id = f.content_id "
            "WHERE f.path = ? AND g.id != f.id ORDER BY g.path",
            (to_db(path),),
        )
        return [from_db(row[0]) for row in rows]

    def unembedded(self, embedder_key: str | None) -> tuple[int, int]:
        """(files' contents not yet embedded by `embedder_key`, all contents that have a file):
        what an index run with that embedder still has to do (everything, for None: no
        stored vector has a NULL key)."""
        rows = self._query(
            "SELECT COUNT(*), SUM(NOT EXISTS (SELECT 1 FROM embedded e WHERE e.content_id = c.id "
            "AND e.embedder_key = ?)) FROM contents c "
            "WHERE EXISTS (SELECT 1 FROM files f WHERE f.content_id = c.id)",
            (embedder_key,),
        )
        total, left = rows[0]
        return int(left or 0), int(total or 0)

    def counts(self) -> dict[str, int]:
        with self._read() as db:
            return {
                "files": db.execute("SELECT COUNT(*) FROM files").fetchone()[0],
                "images": db.execute("SELECT COUNT(*) FROM contents WHERE kind='image'").fetchone()[
                    0
                ],
                "videos": db.execute("SELECT COUNT(*) FROM contents WHERE kind='video'").fetchone()[
                    0
                ],
                "items": db.execute("SELECT COUNT(*) FROM items").fetchone()[0],
            }

    # -- writing (always under the collection's writer lock) -------------------------------

    def link_file(self, file: NewFile, content_id: int) -> bool:
        """Point a path at content already embedded; True when the path is new to the catalog.
        The generation moves only when what a search shows changes (a new path, other
        content), not when a touched file turns out unchanged."""
        with self.transaction() as db:
            found = db.execute("SELECT content_id FROM files WHERE path=?", (to_db(file.path),))
            previous = found.fetchone()
            self._upsert_file(db, file, content_id)
            if previous is None or previous[0] != content_id:
                self._bump_generation(db)
        return previous is None

    def add_images(
        self,
        files: Sequence[NewFile],
        rows: Sequence[int],
        embedder_key: str,
        taken: Sequence[str | None] | None = None,
    ) -> None:
        """Record embedded images (vector `rows[i]` for `files[i]`, taken at `taken[i]` by
        its EXIF, if known) in one transaction."""
        dates = [None] * len(files) if taken is None else taken
        with self.transaction() as db:
            for file, row, when in zip(files, rows, dates, strict=True):
                content_id = self._content_id(db, file.content_hash, "image")
                if when is not None:
                    db.execute("UPDATE contents SET taken=? WHERE id=?", (when, content_id))
                existing = db.execute(
                    "SELECT id FROM items WHERE content_id=? LIMIT 1", (content_id,)
                ).fetchone()
                if existing is None:
                    item_id = db.execute(
                        "INSERT INTO items(content_id, t) VALUES (?, NULL)", (content_id,)
                    ).lastrowid
                else:
                    item_id = existing[0]
                self._store_vector(db, int(item_id), content_id, int(row), embedder_key)
                self._upsert_file(db, file, content_id)
            self._bump_generation(db)

    def add_video(
        self,
        file: NewFile,
        size: tuple[int | None, int | None, float | None],
        times: Sequence[float],
        rows: Sequence[int],
        embedder_key: str,
    ) -> None:
        """Record a video's sampled frames (replacing any older frames of that content)."""
        width, height, duration = size
        with self.transaction() as db:
            content_id = self._content_id(db, file.content_hash, "video")
            db.execute(
                "UPDATE contents SET width=?, height=?, duration=? WHERE id=?",
                (width, height, duration, content_id),
            )
            db.execute("DELETE FROM items WHERE content_id=?", (content_id,))
            for t, row in zip(times, rows, strict=True):
                item_id = db.execute(
                    "INSERT INTO items(content_id, t) VALUES (?, ?)", (content_id, float(t))
                ).lastrowid
                self._store_vector(db, int(item_id), content_id, int(row), embedder_key)
            self._upsert_file(db, file, content_id)
            self._bump_generation(db)

    def remove_files(self, paths: Sequence[str]) -> list[tuple[str, str]]:
        """Forget paths; drop contents no path points at any more. Returns the (hash, kind) of
        each dropped content, so its frame thumbnails can go too."""
        with self.transaction() as db:
            for path in paths:
                db.execute("DELETE FROM files WHERE path=?", (to_db(path),))
            orphans = db.execute(
                "SELECT c.id, c.hash, c.kind FROM contents c WHERE NOT EXISTS "
                "(SELECT 1 FROM files f WHERE f.content_id = c.id)"
            ).fetchall()
            for content_id, _, _ in orphans:
                db.execute("DELETE FROM contents WHERE id=?", (content_id,))
            if paths or orphans:
                self._bump_generation(db)
        return [(content_hash, kind) for _, content_hash, kind in orphans]

    def forget_vectors(self, embedder_key: str, item_ids: Sequence[int]) -> int:
        """Drop damaged vectors and mark their contents as not embedded, so the next run
        embeds exactly those again. Returns how many contents will be re-embedded."""
        with self.transaction() as db:
            contents: set[int] = set()
            for item_id in item_ids:
                found = db.execute("SELECT content_id FROM items WHERE id=?", (int(item_id),))
                row = found.fetchone()
                if row is not None:
                    contents.add(int(row[0]))
            for content_id in contents:
                db.execute(
                    "DELETE FROM vectors WHERE embedder_key=? AND item_id IN "
                    "(SELECT id FROM items WHERE content_id=?)",
                    (embedder_key, content_id),
                )
                db.execute(
                    "DELETE FROM embedded WHERE content_id=? AND embedder_key=?",
                    (content_id, embedder_key),
                )
            if contents:
                self._bump_generation(db)
        return len(contents)

    @staticmethod
    def _upsert_file(db: sqlite3.Connection, file: NewFile, content_id: int) -> None:
        db.execute(
            "INSERT INTO files(path, root_id, content_id, size, mtime_ns) VALUES (?,?,?,?,?) "
            "ON CONFLICT(path) DO UPDATE SET content_id=excluded.content_id, "
            "size=excluded.size, mtime_ns=excluded.mtime_ns",
            (to_db(file.path), file.root_id, content_id, file.size, file.mtime_ns),
        )

    @staticmethod
    def _store_vector(
        db: sqlite3.Connection, item_id: int, content_id: int, row: int, embedder_key: str
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO vectors(item_id, embedder_key, row) VALUES (?,?,?)",
            (item_id, embedder_key, row),
        )
        db.execute(
            "INSERT OR IGNORE INTO embedded(content_id, embedder_key) VALUES (?, ?)",
            (content_id, embedder_key),
        )

    @staticmethod
    def _content_id(db: sqlite3.Connection, content_hash: str, kind: str) -> int:
        row = db.execute("SELECT id FROM contents WHERE hash=?", (content_hash,)).fetchone()
        if row is not None:
            return int(row[0])
        return int(
            db.execute(
                "INSERT INTO contents(hash, kind) VALUES (?, ?)", (content_hash, kind)
            ).lastrowid
        )

    # -- items and vectors ------------------------------------------------------------------

    def snapshot(self, embedder_key: str) -> Snapshot:
        """The live rows of `embedder_key` with the generation they belong to."""
        with self._read() as db:
            generation = db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
            cursor = db.execute(
                "SELECT v.item_id, v.row FROM vectors v JOIN items i ON i.id = v.item_id "
                "WHERE v.embedder_key = ? ORDER BY v.item_id",
                (embedder_key,),
            )
            pairs = np.fromiter(itertools.chain.from_iterable(cursor), np.int64).reshape(-1, 2)
        return Snapshot(
            int(generation[0]) if generation else 0, pairs[:, 0].copy(), pairs[:, 1].copy()
        )

    def matching_items(self, embedder_key: str, only: Filter) -> np.ndarray:
        """The ids, ascending, of items with vectors under `embedder_key` that pass `only`:
        of its kind, with a file under its folder and taken within its dates."""
        sql = [
            "SELECT v.item_id FROM vectors v JOIN items i ON i.id = v.item_id "
            "JOIN contents c ON c.id = i.content_id WHERE v.embedder_key = ?"
        ]
        params: list[object] = [embedder_key]
        if only.kind is not None:
            sql.append("AND c.kind = ?")
            params.append(only.kind)
        per_file = []
        if only.folder is not None:
            text, raw = _prefix_bounds(only.folder)
            per_file.append("((f.path >= ? AND f.path < ?) OR (f.path >= ? AND f.path < ?))")
            params.extend([*text, *raw])
        # an EXIF date compares as text; without one, the file's time compares as a number
        # (no date arithmetic per file: 10^6 files are filtered in well under a second)
        taken, mtime = only.taken_bounds(), only.mtime_bounds()
        for bound, since_epoch, operator in ((taken[0], mtime[0], ">="), (taken[1], mtime[1], "<")):
            if bound is not None:
                per_file.append(
                    f"(c.taken {operator} ? OR (c.taken IS NULL AND f.mtime_ns {operator} ?))"
                )
                params.extend([bound, since_epoch])
        if per_file:  # a folder is a range of the path index: the files come first
            sql.append(
                "AND c.id IN (SELECT f.content_id FROM files f JOIN contents c "
                "ON c.id = f.content_id WHERE " + " AND ".join(per_file) + ")"
            )
        rows = self._query(" ".join(sql) + " ORDER BY v.item_id", params)
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def changed_items(self, embedder_key: str, since: int) -> np.ndarray:
        """The ids, ascending, of items with vectors under `embedder_key` whose files or date
        changed after generation `since` (or in a change that moved no generation)."""
        # from the few changed contents out (CROSS JOIN keeps SQLite's planner from starting
        # at the vectors, which would read every row of the embedder)
        rows = self._query(
            "SELECT v.item_id FROM (SELECT content_id FROM changed WHERE generation > ? "
            "UNION ALL SELECT content_id FROM changed WHERE generation IS NULL) ch "
            "CROSS JOIN items i ON i.content_id = ch.content_id "
            "CROSS JOIN vectors v ON v.item_id = i.id AND v.embedder_key = ? ORDER BY v.item_id",
            (since, embedder_key),
        )
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def placements(self, item_ids: Sequence[int]) -> dict[int, Placement]:
        """Where each item is: its kind, content, time in a video, EXIF date and every file
        (path and modification time) holding it; what a filter asks of it."""
        found: dict[int, Placement] = {}
        ids = [int(i) for i in item_ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._query(
                "SELECT i.id, c.kind, i.content_id, i.t, c.taken, f.path, f.mtime_ns "
                "FROM items i JOIN contents c ON c.id = i.content_id "
                "LEFT JOIN files f ON f.content_id = c.id "
                f"WHERE i.id IN ({','.join('?' * len(chunk))}) ORDER BY i.id, f.path",
                chunk,
            )
            for item_id, kind, content_id, t, taken, path, mtime_ns in rows:
                placement = found.get(item_id)
                if placement is None:
                    placement = found[item_id] = Placement(kind, content_id, t, taken, [])
                if path is not None:  # a content no file holds any more is still its kind
                    placement.files.append((from_db(path), int(mtime_ns)))
        return found

    def taken_span(self) -> tuple[str, str] | None:
        """The first and last time anything was taken (ISO text, as filters compare), or None
        for an empty catalog."""
        rows = self._query(
            f"SELECT MIN(t), MAX(t) FROM (SELECT COALESCE(c.taken, {_MTIME_TAKEN}) AS t "
            "FROM files f JOIN contents c ON c.id = f.content_id)"
        )
        return None if not rows or rows[0][0] is None else (rows[0][0], rows[0][1])

    def embedder_keys(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT embedder_key FROM embedded")]

    def items(self, item_ids: Iterable[int]) -> dict[int, ItemRow]:
        """Items with one live path each (the first by name when a content has copies)."""
        ids = [int(i) for i in item_ids if 0 <= int(i) < 2**63]  # what SQLite can hold
        result: dict[int, ItemRow] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT i.id, i.content_id, c.kind, i.t, f.path, c.hash, "
                f"COALESCE(c.taken, {_MTIME_TAKEN}) "
                f"FROM items i JOIN contents c ON c.id = i.content_id "
                f"LEFT JOIN files f ON f.id = (SELECT g.id FROM files g "
                f"WHERE g.content_id = i.content_id ORDER BY g.path LIMIT 1) "
                f"WHERE i.id IN ({marks})",
                chunk,
            )
            for item_id, content_id, kind, t, path, content_hash, taken in rows:
                path = None if path is None else from_db(path)
                result[int(item_id)] = ItemRow(
                    int(item_id), int(content_id), kind, t, path, content_hash, taken
                )
        return result

    def all_paths(self) -> list[str]:
        return [from_db(r[0]) for r in self._query("SELECT path FROM files ORDER BY path")]

    # -- checks -----------------------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """SQLite's own integrity and foreign-key checks, as sentences (empty when sound)."""
        problems = [
            f"SQLite integrity: {row[0]}"
            for row in self._query("PRAGMA integrity_check")
            if row[0] != "ok"
        ]
        broken = self._query("PRAGMA foreign_key_check")
        if broken:
            problems.append(f"{len(broken)} rows point at rows that do not exist")
        return problems
