"""`edge-mm build --only NAME --bundle OUT.tar --sign KEY`: one model version as a signed tar of regular files."""

from __future__ import annotations

import shutil
import tarfile

from edge_mm.build.signing import keygen
from edge_mm.cli import main
from edge_mm.manifest import read_manifest
from edge_mm.runtime.update_bundle import check_version_folder


def test_build_writes_a_signed_bundle_of_one_model(tiny_config, tiny_settings, tmp_path, capsys):
    # a private copy: signing writes manifest.sig beside the manifest it signs
    root = tmp_path / "artifacts"
    shutil.copytree(tiny_settings.path("runtime.artifacts_dir"), root)
    config = tmp_path / "settings.toml"
    config.write_text(tiny_config.read_text().replace(str(tiny_settings.path("runtime.artifacts_dir")), str(root)))
    private, public = keygen(tmp_path / "keys" / "build")
    out = tmp_path / "out" / "sentiment.tar"
    argv = ["--config", str(config), "build", "--only", "tiny-sentiment", "--bundle", str(out), "--sign", str(private)]
    assert main(argv) == 0
    assert f"wrote the update bundle {out}" in capsys.readouterr().out
    with tarfile.open(out) as tar:
        members = tar.getmembers()
        assert all(m.isreg() and not m.name.startswith(("/", "..")) for m in members)
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert check_version_folder(tmp_path / "unpacked", public) == "tiny-sentiment"
    assert list(read_manifest(tmp_path / "unpacked").models) == ["tiny-sentiment"]


def test_a_bundle_needs_exactly_one_model(tiny_config, tmp_path, capsys):
    assert main(["--config", str(tiny_config), "build", "--bundle", str(tmp_path / "x.tar")]) == 2
    assert "--bundle writes one model version" in capsys.readouterr().err
    assert not (tmp_path / "x.tar").exists()
