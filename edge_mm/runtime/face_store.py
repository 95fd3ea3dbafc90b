"""The registered faces: 128-d descriptors in SQLite (embeddings only, never photos), all held in memory too.

One table, ``faces(id, userid, descriptor BLOB)``; a user may have several descriptors. The database
runs in WAL mode with ``synchronous=FULL``, so a registration answered 200 has reached the disk and
survives the process being killed (tests/tasks/test_face_recognition.py kills it mid-burst).
Writes go through one connection under a lock; the in-memory matrix is replaced only after the
commit, so :meth:`FaceStore.nearest` never sees a row the database does not hold. Nearest is one
numpy pass over every stored descriptor (10,000 identities: about a millisecond). A commit by
another connection (a second server process on the same file, ``edge-mm faces import``) is seen
at the next read: SQLite's ``PRAGMA data_version`` changes, and the rows are read again.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIM = 128
MAX_USERID_CHARS = 256


@dataclass(frozen=True)
class Match:
    userid: str
    distance: float


class FaceStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS faces (id INTEGER PRIMARY KEY, userid TEXT NOT NULL, descriptor BLOB NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS faces_userid ON faces (userid)")
        self._version = self._data_version()
        # (vectors, userids) replaced as one tuple: a reader never pairs new vectors with old userids
        self._rows: tuple[np.ndarray, list[str]] = self._read_rows()

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _read_rows(self) -> tuple[np.ndarray, list[str]]:
        rows = self._db.execute("SELECT userid, descriptor FROM faces ORDER BY id").fetchall()
        vectors = np.stack([np.frombuffer(r[1], np.float32) for r in rows]) if rows else np.zeros((0, DIM), np.float32)
        return vectors, [r[0] for r in rows]

    def _current(self) -> tuple[np.ndarray, list[str]]:
        """The rows, read again first when another connection has committed since they were read."""
        with self._lock:
            version = self._data_version()
            if version != self._version:
                self._version, self._rows = version, self._read_rows()
            return self._rows

    def add(self, userid: str, descriptors: list[np.ndarray]) -> None:
        """Store ``descriptors`` for ``userid``; returns once they are committed (durable)."""
        vecs = [np.asarray(d, np.float32).reshape(DIM) for d in descriptors]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO faces (userid, descriptor) VALUES (?, ?)", [(userid, v.tobytes()) for v in vecs]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            vectors, userids = self._rows
            self._rows = (np.concatenate([vectors, np.stack(vecs)]), [*userids, *([userid] * len(vecs))])

    def delete(self, userid: str) -> int:
        """Remove every descriptor of ``userid``; how many there were (0: unknown user)."""
        with self._lock:
            n = self._db.execute("DELETE FROM faces WHERE userid = ?", (userid,)).rowcount
            if n:
                vectors, userids = self._rows
                keep = [i for i, u in enumerate(userids) if u != userid]
                self._rows = (vectors[keep], [userids[i] for i in keep])
            return int(n)

    def users(self) -> dict[str, int]:
        """Each registered userid with its descriptor count, in order of first registration."""
        counts: dict[str, int] = {}
        for u in self._current()[1]:
            counts[u] = counts.get(u, 0) + 1
        return counts

    def nearest(self, descriptor: np.ndarray) -> Match | None:
        """The stored descriptor nearest ``descriptor`` (Euclidean), or None when none is stored."""
        vectors, userids = self._current()  # one consistent snapshot
        if not userids:
            return None
        d = np.linalg.norm(vectors - np.asarray(descriptor, np.float32).reshape(1, DIM), axis=1)
        i = int(np.argmin(d))
        return Match(userids[i], float(d[i]))

    def export_rows(self) -> list[tuple[str, np.ndarray]]:
        """Every (userid, descriptor) in the database, in order of registration (read in one statement)."""
        with self._lock:
            rows = self._db.execute("SELECT userid, descriptor FROM faces ORDER BY id").fetchall()
        return [(u, np.frombuffer(d, np.float32).copy()) for u, d in rows]

    def import_rows(self, rows: list[tuple[str, np.ndarray]], replace: bool = False) -> int:
        """Add ``rows`` in one transaction (all or none), skipping a (userid, descriptor) already stored;
        ``replace`` deletes every stored row first. Returns how many rows were added."""
        items = [(u, np.asarray(d, np.float32).reshape(DIM).tobytes()) for u, d in rows]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if replace:
                    self._db.execute("DELETE FROM faces")
                have = set(self._db.execute("SELECT userid, descriptor FROM faces").fetchall())
                new = [row for row in dict.fromkeys(items) if row not in have]
                self._db.executemany("INSERT INTO faces (userid, descriptor) VALUES (?, ?)", new)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._version, self._rows = self._data_version(), self._read_rows()
            return len(new)

    def close(self) -> None:
        with self._lock:
            self._db.close()
