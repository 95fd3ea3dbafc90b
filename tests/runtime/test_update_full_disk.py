"""A pull that fills the disk while it unpacks: refused, nothing left behind, the serving version unchanged.

The artifacts folder is a small tmpfs (room for the download, not for the unpacked copy beside it), so the
write really fails with ENOSPC. Where mounting is not allowed (not root, no CAP_SYS_ADMIN), the unpack's
writes fail with ENOSPC past the same point instead.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_mm.build.signing import signer
from edge_mm.runtime import update_bundle
from edge_mm.runtime.swap import Repository
from edge_mm.runtime.update_bundle import INCOMING, UpdateRefused, pull
from edge_mm.runtime.versions import Catalog
from edge_mm.tasks.table import LOADERS, OPTIONS
from tests.conftest import warm_registry
from tests.runtime import test_update_bundle as bundles
from tests.runtime.test_update_bundle import _bundle, _snapshot
from tests.runtime.versions_fixtures import MODEL, with_policy

keys, source = bundles.keys, bundles.source  # fixtures: the signing keys, a LAN source


def _mount_tmpfs(folder: Path, size: int) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, check=False
    )
    return done.returncode == 0


def _free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def full_disk_box(tiny_settings, keys, tmp_path, monkeypatch) -> Iterator[tuple[object, Path, int, str]]:
    """(settings, artifacts root, the bundle's bytes, how the disk fills): the signed tiny artifacts on a disk
    with room for the bundle's download and about half of it again."""
    (private, public), _ = keys
    bundle = _bundle(tiny_settings, tmp_path, private)
    root = tmp_path / "disk"
    root.mkdir()
    used = sum(p.stat().st_size for p in tiny_settings.path("runtime.artifacts_dir").rglob("*") if p.is_file())
    mounted = _mount_tmpfs(root, 2 * used + 8 * len(bundle))
    try:
        shutil.copytree(tiny_settings.path("runtime.artifacts_dir"), root, dirs_exist_ok=True)
        signer(private)(root)
        (root / INCOMING).mkdir()
        room = len(bundle) + len(bundle) // 2  # the download fits; the unpacked copy beside it does not
        if mounted:
            pages = (os.statvfs(root).f_blocks - os.statvfs(root).f_bfree) * os.statvfs(root).f_frsize
            subprocess.run(["mount", "-o", f"remount,size={pages + room}", str(root)], check=True)
            assert _free_bytes(root) < 2 * len(bundle)
            how = "tmpfs"
        else:
            _fill_after(monkeypatch, room)
            how = "simulated"
        settings = with_policy(tiny_settings, root, runtime__verify_key=str(public))
        yield settings, root, len(bundle), how
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], check=False)


def _fill_after(monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    """Without a small disk: the unpack's writes fail with ENOSPC once ``room`` bytes (download included)
    were written."""
    written = [0]
    real_download = update_bundle.download

    def download(*args, **kwargs):  # type: ignore[no-untyped-def]
        dest, digest = real_download(*args, **kwargs)
        written[0] += dest.stat().st_size
        return dest, digest

    def copy(src, dst, length=0):  # type: ignore[no-untyped-def]
        while chunk := src.read(64 * 1024):
            if written[0] + len(chunk) > room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            dst.write(chunk)
            written[0] += len(chunk)

    monkeypatch.setattr(update_bundle, "download", download)
    monkeypatch.setattr(update_bundle.shutil, "copyfileobj", copy)


def test_a_disk_full_while_unpacking_changes_nothing(tiny_settings, full_disk_box, keys, source, tmp_path):
    settings, root, size, how = full_disk_box
    (private, _), _ = keys
    registry = warm_registry(settings)
    repo = Repository(settings, registry, LOADERS, OPTIONS)
    source.files["/v2.tar"] = _bundle(tiny_settings, tmp_path, private)
    before = _snapshot(root)
    with pytest.raises(UpdateRefused, match="cannot unpack the bundle .*No space left on device"):
        pull(settings, source.url("/v2.tar"))
    assert _snapshot(root) == before, how
    assert not any((root / INCOMING).iterdir())  # the download and the partial unpack are gone
    assert _free_bytes(root) >= size  # their space is free again
    assert Catalog(root, settings.optional_path("runtime.verify_key")).selected(MODEL, "latest") == [1]
    assert repo.load(MODEL)["loaded"] == []  # a load now finds nothing new: version 1 serves on
    assert registry.models[MODEL].version == 1
