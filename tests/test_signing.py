"""Signed artifacts: with runtime.verify_key set, only a manifest signed by the build key loads."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from edge_mm.build.signing import keygen, sign_manifest
from edge_mm.cli import main
from edge_mm.errors import ConfigError
from edge_mm.manifest import read_manifest, sha256_file
from edge_mm.signing import SIGNATURE_NAME
from tests.conftest import tiny_settings_toml
from tests.test_manifest import settings_file, write_artifacts


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return keygen(tmp_path / "keys" / "build.key")


@pytest.fixture
def signed(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    root = tmp_path / "artifacts"
    write_artifacts(root)
    sign_manifest(root, keys[0])
    return root


def test_keygen_writes_a_private_key_only_the_owner_reads_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "k" / "edge.key"
    assert main(["keygen", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in out.read_bytes()
    assert b"BEGIN PUBLIC KEY" in (tmp_path / "k" / "edge.key.pub").read_bytes()
    before = out.read_bytes()
    assert main(["keygen", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_good_signature_loads(signed, keys):
    manifest = read_manifest(signed, verify_key=keys[1])
    assert set(manifest.models) == {"m"}
    assert len(base64.b64decode((signed / SIGNATURE_NAME).read_text())) == 64


def test_wrong_key_refuses(signed, tmp_path):
    _, other_pub = keygen(tmp_path / "other.key")
    with pytest.raises(ConfigError, match="not a valid signature of manifest.json"):
        read_manifest(signed, verify_key=other_pub)


def test_unsigned_manifest_refuses_when_a_key_is_set(signed, keys):
    (signed / SIGNATURE_NAME).unlink()
    assert read_manifest(signed).models  # no key set: not checked
    with pytest.raises(ConfigError, match=r"is not signed \(no manifest.sig\).*edge-mm build --sign"):
        read_manifest(signed, verify_key=keys[1])


def test_garbage_signature_refuses(signed, keys):
    (signed / SIGNATURE_NAME).write_text("not base64 !!")
    with pytest.raises(ConfigError, match="not a valid signature"):
        read_manifest(signed, verify_key=keys[1])


def test_tampered_artifact_with_its_hash_updated_refuses(signed, keys):
    """What sha256 alone cannot catch: a replaced file whose new hash is written into manifest.json."""
    model = signed / "m" / "cpu.pt"
    model.write_bytes(b"someone else's model")
    raw = json.loads((signed / "manifest.json").read_text())
    raw["models"]["m"]["variants"]["cpu"]["files"]["model"]["sha256"] = sha256_file(model)
    (signed / "manifest.json").write_text(json.dumps(raw, indent=2, sort_keys=True))
    assert read_manifest(signed).models["m"].variants["cpu"].files["model"].resolve(signed) == model  # hashes agree
    with pytest.raises(ConfigError, match="changed after signing"):
        read_manifest(signed, verify_key=keys[1])


def test_key_file_problems_are_named(signed, keys, tmp_path):
    with pytest.raises(ConfigError, match="that is a private key: use the .pub file"):
        read_manifest(signed, verify_key=keys[0])
    with pytest.raises(ConfigError, match=r"runtime.verify_key: cannot read .*missing.pub"):
        read_manifest(signed, verify_key=tmp_path / "missing.pub")


def test_cli_info_verifies_when_the_setting_is_set(signed, keys, tmp_path, capsys):
    config = settings_file(tmp_path, f'verify_key = "{keys[1]}"\n')
    assert main(["--config", str(config), "info"]) == 0
    assert json.loads(capsys.readouterr().out)["models"]["m"]["task"] == "embeddings"
    (signed / SIGNATURE_NAME).unlink()
    assert main(["--config", str(config), "info"]) == 2
    err = capsys.readouterr().err
    assert "is not signed" in err
    assert "Traceback" not in err


def test_cli_info_refuses_a_wrong_key_from_the_environment(signed, tmp_path, capsys, monkeypatch):
    _, other_pub = keygen(tmp_path / "other.key")
    monkeypatch.setenv("EDGE_MM_RUNTIME_VERIFY_KEY", str(other_pub))
    assert main(["--config", str(settings_file(tmp_path)), "info"]) == 2
    assert "not a valid signature" in capsys.readouterr().err


def test_build_sign_then_serve_side_verifies(tiny_checkpoints, tmp_path, keys, capsys, monkeypatch):
    """`edge-mm build --sign KEY` on a tiny model; `info` with the public key accepts it."""
    text = tiny_settings_toml(tiny_checkpoints, tmp_path / "artifacts").split("[[models]]")
    config = tmp_path / "settings.toml"
    first = text[1].replace('name = "tiny-embed"', 'name = "tiny-embed"\nquantization = "none"')  # fast
    config.write_text(text[0] + "[[models]]" + first)
    assert main(["--config", str(config), "build", "--sign", str(keys[0])]) == 0
    assert "signed" in capsys.readouterr().out
    monkeypatch.setenv("EDGE_MM_RUNTIME_VERIFY_KEY", str(keys[1]))
    assert main(["--config", str(config), "info"]) == 0
    assert "tiny-embed" in json.loads(capsys.readouterr().out)["models"]


def test_build_with_a_bad_key_fails_before_building(tmp_path, capsys):
    config = settings_file(tmp_path)
    (tmp_path / "not-a-key").write_text("hello")
    assert main(["--config", str(config), "build", "--sign", str(tmp_path / "not-a-key")]) == 2
    assert "not an unencrypted PEM private key" in capsys.readouterr().err
    assert not (tmp_path / "artifacts" / "manifest.json").exists()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_keys_and_signatures_interoperate(tmp_path):
    """The README's openssl commands make keys and signatures the runtime accepts."""
    root = tmp_path / "artifacts"
    write_artifacts(root)
    key, pub = tmp_path / "ossl.key", tmp_path / "ossl.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    sign_manifest(root, key)  # an openssl key signs with edge-mm
    assert read_manifest(root, verify_key=pub).models
    sig = subprocess.run(
        ["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", str(key), "-in", str(root / "manifest.json")],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    (root / SIGNATURE_NAME).write_bytes(base64.b64encode(sig))  # an openssl signature verifies in edge-mm
    assert read_manifest(root, verify_key=pub).models
