"""Streams added at run time, in SQLite: table ``streams(id, spec JSON)`` in the face store's file
(``runtime.faces_db``), WAL with ``synchronous=FULL`` like the faces (an answered add survives a kill).
The file is opened when it exists, and made by the first add: a server with no run-time streams
writes nothing next to its settings."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


class StreamStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = self._connect() if path.exists() else None

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS streams (id TEXT PRIMARY KEY, spec TEXT NOT NULL)")
        return db

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            if self._db is None:
                return []
            rows = self._db.execute("SELECT spec FROM streams ORDER BY rowid").fetchall()
        return [json.loads(r[0]) for r in rows]

    def put(self, stream_id: str, spec: dict[str, Any]) -> None:
        with self._lock:
            if self._db is None:
                self._db = self._connect()
            self._db.execute(
                "INSERT INTO streams (id, spec) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET spec = excluded.spec",
                (stream_id, json.dumps(spec)),
            )

    def delete(self, stream_id: str) -> None:
        with self._lock:
            if self._db is not None:
                self._db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
