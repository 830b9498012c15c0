"""SQLite catalog of files, their contents, searchable items (images, video frames) and vector rows.

Files are keyed by path but point at a content row keyed by hash, so a renamed, moved or copied
file reuses its content's vectors instead of being embedded again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgfinder.errors import CatalogError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS contents (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('image', 'video')),
    width INTEGER,
    height INTEGER,
    duration REAL
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    root_id INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE,
    content_id INTEGER NOT NULL REFERENCES contents(id),
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_content ON files(content_id);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
    t REAL
);
CREATE INDEX IF NOT EXISTS items_content ON items(content_id, t);
CREATE TABLE IF NOT EXISTS vectors (
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    embedder_key TEXT NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (item_id, embedder_key)
);
CREATE TABLE IF NOT EXISTS embedded (
    content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
    embedder_key TEXT NOT NULL,
    PRIMARY KEY (content_id, embedder_key)
);
"""


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    content_id: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ItemRow:
    """A searchable thing: an image, or one frame of a video at time `t`."""

    id: int
    content_id: int
    kind: str
    t: float | None
    path: str | None
    content_hash: str


class Catalog:
    """Thread-safe wrapper around one SQLite database (WAL, busy timeout, foreign keys)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"cannot open catalog {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise CatalogError(
                    f"catalog {self.path} has schema {row[0]}, newer than this imgfinder "
                    f"({SCHEMA_VERSION}); upgrade imgfinder"
                )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; rolled back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else default

    def generation(self) -> int:
        """Bumped on every change to the searchable set; saved indexes compare against it."""
        return int(self.get_meta("generation", "0") or 0)

    @staticmethod
    def bump_generation(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    # -- roots and files --------------------------------------------------------------------

    def root_id(self, db: sqlite3.Connection, path: str) -> int:
        db.execute("INSERT OR IGNORE INTO roots(path) VALUES (?)", (path,))
        return int(db.execute("SELECT id FROM roots WHERE path=?", (path,)).fetchone()[0])

    def roots(self) -> list[str]:
        return [row[0] for row in self._query("SELECT path FROM roots ORDER BY path")]

    def files_under(self, root: str) -> dict[str, FileRow]:
        rows = self._query(
            "SELECT f.id, f.path, f.content_id, f.size, f.mtime_ns FROM files f "
            "JOIN roots r ON r.id = f.root_id WHERE r.path = ?",
            (root,),
        )
        return {row[1]: FileRow(*row) for row in rows}

    def content_by_hash(self, content_hash: str) -> int | None:
        rows = self._query("SELECT id FROM contents WHERE hash=?", (content_hash,))
        return int(rows[0][0]) if rows else None

    def is_embedded(self, content_id: int, embedder_key: str) -> bool:
        rows = self._query(
            "SELECT 1 FROM embedded WHERE content_id=? AND embedder_key=?",
            (content_id, embedder_key),
        )
        return bool(rows)

    def counts(self) -> dict[str, int]:
        return {
            "files": self._query("SELECT COUNT(*) FROM files")[0][0],
            "images": self._query("SELECT COUNT(*) FROM contents WHERE kind='image'")[0][0],
            "videos": self._query("SELECT COUNT(*) FROM contents WHERE kind='video'")[0][0],
            "items": self._query("SELECT COUNT(*) FROM items")[0][0],
        }

    # -- items and vectors ------------------------------------------------------------------

    def vector_rows(self, embedder_key: str) -> list[tuple[int, int]]:
        """(item_id, row) of every live item embedded under `embedder_key`."""
        return [
            (int(item), int(row))
            for item, row in self._query(
                "SELECT v.item_id, v.row FROM vectors v JOIN items i ON i.id = v.item_id "
                "WHERE v.embedder_key = ? ORDER BY v.item_id",
                (embedder_key,),
            )
        ]

    def embedder_keys(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT embedder_key FROM embedded")]

    def items(self, item_ids: Iterable[int]) -> dict[int, ItemRow]:
        """Items with one live path each (the first by name when a content has copies)."""
        ids = [int(i) for i in item_ids]
        result: dict[int, ItemRow] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT i.id, i.content_id, c.kind, i.t, "
                f"(SELECT MIN(f.path) FROM files f WHERE f.content_id = i.content_id), c.hash "
                f"FROM items i JOIN contents c ON c.id = i.content_id WHERE i.id IN ({marks})",
                chunk,
            )
            for row in rows:
                result[int(row[0])] = ItemRow(int(row[0]), int(row[1]), *row[2:])
        return result

    def item_ids_for_path(self, path: str) -> list[int]:
        rows = self._query(
            "SELECT i.id FROM items i JOIN files f ON f.content_id = i.content_id "
            "WHERE f.path = ? ORDER BY i.t",
            (path,),
        )
        return [int(r[0]) for r in rows]

    def all_paths(self) -> list[str]:
        return [r[0] for r in self._query("SELECT path FROM files ORDER BY path")]
