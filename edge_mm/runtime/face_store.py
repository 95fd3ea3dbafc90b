"""The registered faces: 128-d descriptors in SQLite (embeddings only, never photos), all held in memory too.

Two tables: ``faces(id, userid, descriptor BLOB)`` (a user may have several descriptors) and
``meta(key, value)``, whose ``generation`` every write raises by one in its own transaction. The
database runs in WAL mode with ``synchronous=FULL``, so a registration answered 200 has reached the
disk and survives the process being killed (tests/tasks/test_face_recognition.py kills it mid-burst).

Writes go through one connection under a lock; the in-memory rows are replaced only after the
commit, so :meth:`FaceStore.nearest` never sees a row the database does not hold. Reads never take
that lock: a recognize does not wait behind a registration's durable commit. Each read asks a second,
read-only connection for the generation (WAL readers do not wait for writers) and reads the rows again
only when another writer has committed since: a second server process on the same file, or
``edge-mm faces import``. The store's own writes update the in-memory rows directly. Nearest is one
numpy pass over every stored descriptor (10,000 identities: about a millisecond). Writers other than
edge-mm (the sqlite3 shell) do not raise the generation, so a running server sees their rows only after
its next restart or write.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

DIM = 128
MAX_USERID_CHARS = 256
T = TypeVar("T")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS faces (id INTEGER PRIMARY KEY, userid TEXT NOT NULL, descriptor BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS faces_userid ON faces (userid)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0)",
)


@dataclass(frozen=True)
class Match:
    userid: str
    distance: float


@dataclass(frozen=True)
class Rows:
    """The rows as of one generation, replaced as a whole: a reader never pairs new vectors with old userids."""

    generation: int
    vectors: np.ndarray
    userids: list[str]


def _generation(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])


def _read(db: sqlite3.Connection) -> Rows:
    """The generation and every row, from one snapshot of the database."""
    db.execute("BEGIN")
    try:
        generation = _generation(db)
        rows = db.execute("SELECT userid, descriptor FROM faces ORDER BY id").fetchall()
    finally:
        db.execute("COMMIT")
    vectors = np.stack([np.frombuffer(r[1], np.float32) for r in rows]) if rows else np.zeros((0, DIM), np.float32)
    return Rows(generation, vectors, [r[0] for r in rows])


class FaceStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # the writer connection
        self._read_lock = threading.Lock()  # the reader connection
        self._swap = threading.Lock()  # self._rows: held for an assignment, never across I/O
        self._applying = -1  # the generation this store's write in progress commits (its rows follow)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            self._db.execute(statement)
        self._db.execute("COMMIT")
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._reader.execute("PRAGMA query_only=1")
        self._rows = _read(self._db)

    def _keep(self, rows: Rows) -> None:
        """Make ``rows`` current unless rows of a later generation already are."""
        with self._swap:
            if rows.generation > self._rows.generation:
                self._rows = rows

    def _current(self) -> Rows:
        """The rows, read again first when another writer has committed since they were read."""
        with self._read_lock:
            # In this order: a write of ours that committed ``committed`` set _applying before its commit and
            # clears it only once its rows are current, so one of the two tests below holds for it.
            committed = _generation(self._reader)
            applying = self._applying
            rows = self._rows
            if rows.generation >= committed or (committed == applying and rows.generation == committed - 1):
                return rows  # up to date, or one write of ours behind: its caller has not been answered yet
            fresh = _read(self._reader)
        self._keep(fresh)
        return self._rows

    def _write(self, change: Callable[[sqlite3.Connection], T], apply: Callable[[Rows], Rows] | None) -> T:
        """``change(db)`` in one durable transaction that raises the generation, then the in-memory rows:
        ``apply(rows)`` when they were this transaction's starting point, else read again. A change that
        touched no row (an unknown userid, an import of rows already stored) leaves the generation alone,
        so other stores on the file do not read every row again for nothing."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                start = _generation(self._db)
                before = self._db.total_changes
                result = change(self._db)
                if self._db.total_changes == before:
                    self._db.execute("ROLLBACK")
                    return result
                self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
                self._applying = start + 1
                self._db.execute("COMMIT")
            except BaseException:
                self._applying = -1
                self._db.execute("ROLLBACK")
                raise
            try:
                rows = self._rows
                self._keep(apply(rows) if apply is not None and rows.generation == start else _read(self._db))
            finally:
                self._applying = -1
            return result

    def add(self, userid: str, descriptors: list[np.ndarray]) -> None:
        """Store ``descriptors`` for ``userid``; returns once they are committed (durable)."""
        vecs = [np.asarray(d, np.float32).reshape(DIM) for d in descriptors]

        def insert(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO faces (userid, descriptor) VALUES (?, ?)", [(userid, v.tobytes()) for v in vecs]
            )

        def apply(rows: Rows) -> Rows:
            vectors = np.concatenate([rows.vectors, np.stack(vecs)])
            return Rows(rows.generation + 1, vectors, [*rows.userids, *([userid] * len(vecs))])

        self._write(insert, apply)

    def delete(self, userid: str) -> int:
        """Remove every descriptor of ``userid``; how many there were (0: unknown user)."""

        def remove(db: sqlite3.Connection) -> int:
            return int(db.execute("DELETE FROM faces WHERE userid = ?", (userid,)).rowcount)

        def apply(rows: Rows) -> Rows:
            keep = [i for i, u in enumerate(rows.userids) if u != userid]
            return Rows(rows.generation + 1, rows.vectors[keep], [rows.userids[i] for i in keep])

        return self._write(remove, apply)

    def users(self) -> dict[str, int]:
        """Each registered userid with its descriptor count, in order of first registration."""
        counts: dict[str, int] = {}
        for u in self._current().userids:
            counts[u] = counts.get(u, 0) + 1
        return counts

    def nearest(self, descriptor: np.ndarray) -> Match | None:
        """The stored descriptor nearest ``descriptor`` (Euclidean), or None when none is stored."""
        rows = self._current()  # one consistent snapshot
        if not rows.userids:
            return None
        d = np.linalg.norm(rows.vectors - np.asarray(descriptor, np.float32).reshape(1, DIM), axis=1)
        i = int(np.argmin(d))
        return Match(rows.userids[i], float(d[i]))

    def export_rows(self) -> list[tuple[str, np.ndarray]]:
        """Every (userid, descriptor) in the database, in order of registration (read in one statement)."""
        with self._read_lock:
            rows = self._reader.execute("SELECT userid, descriptor FROM faces ORDER BY id").fetchall()
        return [(u, np.frombuffer(d, np.float32).copy()) for u, d in rows]

    def import_rows(self, rows: list[tuple[str, np.ndarray]], replace: bool = False) -> int:
        """Add ``rows`` in one transaction (all or none), skipping a (userid, descriptor) already stored;
        ``replace`` deletes every stored row first. Returns how many rows were added."""
        items = [(u, np.asarray(d, np.float32).reshape(DIM).tobytes()) for u, d in rows]

        def merge(db: sqlite3.Connection) -> int:
            if replace:
                db.execute("DELETE FROM faces")
            have = set(db.execute("SELECT userid, descriptor FROM faces").fetchall())
            new = [row for row in dict.fromkeys(items) if row not in have]
            db.executemany("INSERT INTO faces (userid, descriptor) VALUES (?, ?)", new)
            return len(new)

        return self._write(merge, None)

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()
