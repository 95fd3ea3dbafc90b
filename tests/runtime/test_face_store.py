"""The face store (runtime/face_store.py): several connections on one file, export and import rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
