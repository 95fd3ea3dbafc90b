"""Make an Ed25519 key pair and sign manifest.json (the runtime side is edge_mm/signing.py).

``edge-mm keygen KEY`` writes ``KEY`` (private, PKCS#8 PEM, mode 0600: stays on the build
machine) and ``KEY.pub`` (public, PEM: goes to the edge machines as ``runtime.verify_key``).
openssl makes the same files: ``openssl genpkey -algorithm ed25519 -out KEY`` and
``openssl pkey -in KEY -pubout -out KEY.pub``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_mm.errors import ConfigError
from edge_mm.manifest import MANIFEST_NAME
from edge_mm.signing import SIGNATURE_NAME


def keygen(out: Path) -> tuple[Path, Path]:
    """Write a new key pair to ``out`` and ``out.pub``; refuses to overwrite either."""
    pub = out.with_name(out.name + ".pub")
    for path in (out, pub):
        if path.exists():
            raise ConfigError(f"{path} exists; remove it first or choose another name (keys are never overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pub.write_bytes(public)
    return out, pub


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--sign: cannot read {path} ({exc.strerror or exc})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted
        raise ConfigError(f"--sign: {path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"--sign: {path} is not an Ed25519 key; make one with 'edge-mm keygen'")
    return key


def sign_manifest(root: Path, key_path: Path) -> Path:
    """Sign ``root/manifest.json`` with the private key in ``key_path``; returns ``root/manifest.sig``."""
    return signer(key_path)(root)


def signer(key_path: Path) -> Callable[[Path], Path]:
    """Load the key now (a bad key fails before a long build, not after); the result signs a folder."""
    key = load_private_key(key_path)
    return lambda root: _sign(root, key)


def _sign(root: Path, key: Ed25519PrivateKey) -> Path:
    manifest = root / MANIFEST_NAME
    try:
        data = manifest.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no {MANIFEST_NAME} in {root} to sign; run 'edge-mm build' first") from None
    sig = root / SIGNATURE_NAME
    tmp = sig.with_name(sig.name + ".tmp")
    tmp.write_text(base64.b64encode(key.sign(data)).decode() + "\n", encoding="ascii")
    tmp.replace(sig)
    return sig
