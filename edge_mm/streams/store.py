"""Streams added at run time, in SQLite: table ``streams(id, spec JSON)`` in the face store's file
(``runtime.faces_db``), WAL with ``synchronous=FULL`` like the faces (an answered add survives a kill)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


class StreamStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS streams (id TEXT PRIMARY KEY, spec TEXT NOT NULL)")

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT spec FROM streams ORDER BY rowid").fetchall()
        return [json.loads(r[0]) for r in rows]

    def put(self, stream_id: str, spec: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO streams (id, spec) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET spec = excluded.spec",
                (stream_id, json.dumps(spec)),
            )

    def delete(self, stream_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
