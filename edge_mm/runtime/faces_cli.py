"""`edge-mm faces export FILE` and `edge-mm faces import FILE`: move the registered faces between boxes.

The file is JSON: the descriptor network it was made with (file name and sha256, from the manifest of
the configured face-recognition model), then each user's 128-d descriptors (float32, little-endian,
base64). Descriptors are only comparable when made by the same network, so an import is refused
unless the file names the network this box serves. Export reads the store in one statement and import
writes it in one transaction, both safe while the server runs (it sees an import at its next request).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edge_mm.config import Settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import read_manifest
from edge_mm.runtime.face_store import DIM, MAX_USERID_CHARS, FaceStore

FORMAT = "edge-mm-faces"
VERSION = 1
TASK = "face-recognition"
MAX_FILE_BYTES = 256 * 2**20  # about 400,000 descriptors


def descriptor_model(settings: Settings) -> dict[str, str]:
    """The configured face-recognition model's descriptor network: its file name and sha256."""
    spec = next((m for m in settings.models if m.task == TASK), None)
    if spec is None:
        raise ConfigError(f"no {TASK} model is configured in settings: nothing uses runtime.faces_db")
    manifest = read_manifest(
        settings.path("runtime.artifacts_dir"), verify_key=settings.optional_path("runtime.verify_key")
    )
    entry = manifest.models.get(spec.name)
    if entry is None:
        raise ConfigError(f"model {spec.name!r} is not built: run 'edge-mm build' first")
    ref = entry.variants["cpu"].files["model"]
    return {"file": Path(ref.path).name, "sha256": ref.sha256}


def export_faces(settings: Settings, path: Path) -> int:
    """Write every registered face to ``path`` (replaced whole); how many descriptors."""
    store = FaceStore(settings.path("runtime.faces_db"))
    try:
        rows = store.export_rows()
    finally:
        store.close()
    users: dict[str, list[str]] = {}
    for userid, vector in rows:
        users.setdefault(userid, []).append(base64.b64encode(vector.astype("<f4").tobytes()).decode())
    document = {
        "format": FORMAT,
        "version": VERSION,
        "dim": DIM,
        "descriptor_model": descriptor_model(settings),
        "users": [{"userid": u, "descriptors": d} for u, d in users.items()],
    }
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(document), encoding="utf-8")
    part.replace(path)
    return len(rows)


def read_export(path: Path, expected_model: dict[str, str]) -> list[tuple[str, np.ndarray]]:
    """The (userid, descriptor) rows of an export file, every field checked first; ConfigError naming
    the first problem."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{path} is {path.stat().st_size} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not an edge-mm faces export (JSON): {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        raise ConfigError(f"{path} is not an edge-mm faces export (format {FORMAT!r}, version {VERSION})")
    if document.get("dim") != DIM:
        raise ConfigError(f"{path}: descriptors of {document.get('dim')} values; this store holds {DIM}")
    theirs = document.get("descriptor_model")
    if not isinstance(theirs, dict) or theirs.get("sha256") != expected_model["sha256"]:
        raise ConfigError(
            f"{path} was made with descriptor network {theirs}, this box serves {expected_model}: "
            "descriptors of different networks cannot be compared"
        )
    users = document.get("users")
    if not isinstance(users, list):
        raise ConfigError(f"{path}: 'users' must be a list")
    return [row for i, user in enumerate(users) for row in _user_rows(path, i, user)]


def _user_rows(path: Path, i: int, user: Any) -> list[tuple[str, np.ndarray]]:
    where = f"{path}: users[{i}]"
    if not isinstance(user, dict):
        raise ConfigError(f"{where} must be an object")
    userid, descriptors = user.get("userid"), user.get("descriptors")
    if not isinstance(userid, str) or not userid.strip() or len(userid) > MAX_USERID_CHARS:
        raise ConfigError(f"{where}.userid must be a non-empty string of at most {MAX_USERID_CHARS} characters")
    if not isinstance(descriptors, list) or not descriptors:
        raise ConfigError(f"{where}.descriptors must be a non-empty list")
    rows = []
    for j, text in enumerate(descriptors):
        try:
            raw = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
        except ValueError:
            raw = b""
        vector = np.frombuffer(raw, "<f4") if len(raw) == DIM * 4 else None
        if vector is None or not np.isfinite(vector).all():
            raise ConfigError(f"{where}.descriptors[{j}] is not {DIM} finite float32 values in base64")
        rows.append((userid, vector.astype(np.float32)))
    return rows


def faces_command(
    settings: Settings, action: str, path: Path, *, replace: bool = False, out: TextIO = sys.stdout
) -> int:
    """0 on success; 1 (with the reason) when an import is refused: the store is then unchanged."""
    if action == "export":
        n = export_faces(settings, path)
        print(f"edge-mm: wrote {n} face descriptor(s) to {path}", file=out)
        return 0
    try:
        rows = read_export(path, descriptor_model(settings))
    except (ConfigError, OSError) as exc:
        print(f"edge-mm: import refused, nothing changed: {exc}", file=out)
        return 1
    store = FaceStore(settings.path("runtime.faces_db"))
    try:
        added = store.import_rows(rows, replace=replace)
        total = sum(store.users().values())
    finally:
        store.close()
    print(
        f"edge-mm: imported {added} new face descriptor(s) of {len(rows)} in {path}"
        f"{' (the store was emptied first)' if replace else ''}; the store holds {total}",
        file=out,
    )
    return 0
