"""The face store (runtime/face_store.py): several connections on one file, export and import rows."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_mm.runtime import face_store
from edge_mm.runtime.face_store import DIM, FaceStore


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_a_second_connection_sees_the_first_ones_commits(tmp_path: Path) -> None:
    """Two servers on one file (pods on one node's volume), or `edge-mm faces import` beside a running server."""
    a, b = FaceStore(tmp_path / "f.db"), FaceStore(tmp_path / "f.db")
    assert a.nearest(_unit(1)) is None
    b.add("ada", [_unit(1)])
    match = a.nearest(_unit(1))
    assert match is not None
    assert match.userid == "ada"
    assert match.distance < 1e-6
    assert a.users() == {"ada": 1}
    a.add("bob", [_unit(2)])  # on a's own rows, which now hold ada too
    assert b.users() == a.users() == {"ada": 1, "bob": 1}
    assert b.delete("ada") == 1
    assert a.users() == {"bob": 1}
    assert a.nearest(_unit(1)).userid == "bob"  # type: ignore[union-attr]


def test_export_then_import_elsewhere_is_the_same_store_and_adds_nothing_twice(tmp_path: Path) -> None:
    here = FaceStore(tmp_path / "here.db")
    here.add("ada", [_unit(1), _unit(2)])
    here.add("bob", [_unit(3)])
    rows = here.export_rows()
    assert [u for u, _ in rows] == ["ada", "ada", "bob"]
    there = FaceStore(tmp_path / "there.db")
    there.add("cy", [_unit(4)])
    assert there.import_rows(rows) == 3
    assert there.import_rows(rows) == 0  # the same rows again: nothing new
    assert there.users() == {"cy": 1, "ada": 2, "bob": 1}
    assert there.import_rows(rows, replace=True) == 3
    assert there.users() == {"ada": 2, "bob": 1}
    for (u1, v1), (u2, v2) in zip(rows, there.export_rows(), strict=True):
        assert u1 == u2
        assert v1.tobytes() == v2.tobytes()


def test_a_failed_import_changes_nothing(tmp_path: Path) -> None:
    store = FaceStore(tmp_path / "f.db")
    store.add("ada", [_unit(1)])
    with pytest.raises(ValueError, match="reshape"):
        store.import_rows([("bob", _unit(2)), ("cy", np.zeros(3, np.float32))], replace=True)
    assert store.users() == {"ada": 1}
    assert FaceStore(tmp_path / "f.db").users() == {"ada": 1}


def test_a_recognize_does_not_wait_for_a_registration_being_committed(tmp_path: Path) -> None:
    """A registration holds the writer (its durable commit can take milliseconds); reads go around it."""
    store = FaceStore(tmp_path / "f.db")
    store.add("ada", [_unit(1)])
    found: list[object] = []
    with store._lock:  # a registration in progress: the writer's lock and an open write transaction
        store._db.execute("BEGIN IMMEDIATE")
        store._db.execute("INSERT INTO faces (userid, descriptor) VALUES ('bob', ?)", (_unit(2).tobytes(),))
        reader = threading.Thread(target=lambda: found.append(store.nearest(_unit(2))), daemon=True)
        reader.start()
        reader.join(timeout=20)
        waited = reader.is_alive()
        store._db.execute("ROLLBACK")
    reader.join()
    assert not waited, "nearest() waited for the writer"
    assert [m.userid for m in found] == ["ada"]  # type: ignore[attr-defined]  # not the uncommitted row


def test_the_stores_own_writes_are_applied_without_reading_every_row_again(tmp_path: Path, monkeypatch) -> None:
    store = FaceStore(tmp_path / "f.db")
    reads = []
    monkeypatch.setattr(face_store, "_read", lambda db: reads.append(db) or pytest.fail("rows read again"))
    for i in range(20):
        store.add(f"user-{i}", [_unit(i)])
        assert store.nearest(_unit(i)).userid == f"user-{i}"  # type: ignore[union-attr]
    assert store.delete("user-3") == 1
    assert store.delete("nobody") == 0
    assert len(store.users()) == 19
    assert reads == []


def test_a_write_that_changes_no_row_does_not_make_other_stores_read_again(tmp_path: Path, monkeypatch) -> None:
    """Deleting an unknown userid, or importing rows already stored, leaves the generation as it was."""
    a, b = FaceStore(tmp_path / "f.db"), FaceStore(tmp_path / "f.db")
    a.add("ada", [_unit(1)])
    rows = a.export_rows()
    assert b.users() == {"ada": 1}  # b is current
    reads = []
    monkeypatch.setattr(face_store, "_read", lambda db: reads.append(db) or pytest.fail("rows read again"))
    assert a.delete("nobody") == 0
    assert a.import_rows(rows) == 0
    assert b.users() == {"ada": 1}
    assert b.nearest(_unit(1)).userid == "ada"  # type: ignore[union-attr]
    assert reads == []


def test_a_write_on_rows_another_writer_has_changed_keeps_both_changes(tmp_path: Path) -> None:
    a, b = FaceStore(tmp_path / "f.db"), FaceStore(tmp_path / "f.db")
    a.add("ada", [_unit(1)])
    b.add("bob", [_unit(2)])  # a has not read since
    a.add("cy", [_unit(3)])
    assert a.users() == b.users() == {"ada": 1, "bob": 1, "cy": 1}
    assert b.delete("ada") == 1
    assert a.delete("bob") == 1  # a's rows still held ada until this write read them again
    assert a.users() == b.users() == {"cy": 1}
    assert a.nearest(_unit(1)).userid == "cy"  # type: ignore[union-attr]


def test_a_store_written_before_generations_opens_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE faces (id INTEGER PRIMARY KEY, userid TEXT NOT NULL, descriptor BLOB NOT NULL)")
    db.execute("INSERT INTO faces (userid, descriptor) VALUES ('ada', ?)", (_unit(1).tobytes(),))
    db.commit()
    db.close()
    a, b = FaceStore(path), FaceStore(path)
    assert a.users() == {"ada": 1}
    b.add("bob", [_unit(2)])
    assert a.users() == {"ada": 1, "bob": 1}


def test_reads_beside_the_stores_own_writes_never_read_every_row_again(tmp_path: Path, monkeypatch) -> None:
    """A read that lands between a write's commit and its in-memory update answers from the rows before it."""
    store = FaceStore(tmp_path / "f.db")
    store.add("seed", [_unit(0)])
    reads = []
    monkeypatch.setattr(face_store, "_read", lambda db: reads.append(db) or pytest.fail("rows read again"))
    writer = threading.Thread(target=lambda: [store.add(f"user-{i}", [_unit(i)]) for i in range(1, 301)])
    writer.start()
    seen = 0
    while writer.is_alive():
        seen = max(seen, len(store.users()))
    writer.join()
    assert reads == []
    assert seen > 1  # the reads overlapped the writes
    assert len(store.users()) == 301
