"""One model version out of a built artifacts folder: as a version folder, or as a signed update bundle.

A version folder holds a ``manifest.json`` with that one model, its files at the paths the manifest names
(relative to the folder) and, signed, ``manifest.sig`` (runtime/versions.py reads it). An update bundle
is that folder as an uncompressed tar of regular files (runtime/update_bundle.py checks and unpacks it):
``edge-mm build --only NAME --bundle OUT.tar --sign KEY``.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edge_mm.errors import ConfigError
from edge_mm.manifest import Manifest, read_manifest

Sign = Callable[[Path], object]  # signs a folder's manifest.json (build/signing.py signer)


def one_model(manifest: Manifest, name: str, as_name: str | None = None) -> Manifest:
    """``manifest`` cut down to model ``name`` (stored as ``as_name``: a test makes a version of one
    model from another's artifacts)."""
    if name not in manifest.models:
        raise ConfigError(f"model {name!r} is not in the artifacts; build it first ('edge-mm build --only {name}')")
    return replace(manifest, models={as_name or name: manifest.models[name]})


def write_version_folder(
    src_root: Path, name: str, dest: Path, *, as_name: str | None = None, sign: Sign | None = None
) -> Path:
    """Copy model ``name``'s files (hash-checked) from the built ``src_root`` into ``dest`` with its own
    manifest (and signature); returns ``dest``."""
    manifest = one_model(read_manifest(src_root), name, as_name)
    entry = next(iter(manifest.models.values()))
    dest.mkdir(parents=True, exist_ok=True)
    for ref in entry.all_files():
        target = dest / ref.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ref.resolve(src_root), target)
    manifest.write(dest)
    if sign is not None:
        sign(dest)
    return dest


def write_bundle(src_root: Path, name: str, out: Path, *, sign: Sign | None = None, as_name: str | None = None) -> Path:
    """The update bundle of model ``name`` (stored as ``as_name``) from the built ``src_root``, written
    atomically to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=out.parent) as tmp:
        folder = write_version_folder(src_root, name, Path(tmp) / "version", sign=sign, as_name=as_name)
        part = Path(tmp) / "bundle.tar"
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(path, "rb") as f:
                    tar.addfile(info, f)
        os.replace(part, out)
    return out
