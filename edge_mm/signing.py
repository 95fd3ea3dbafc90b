"""Check that manifest.json was signed by the holder of the build key (Ed25519).

sha256 in the manifest catches a corrupt artifact; it does not stop someone who can write the
artifacts folder from replacing a model and its hash. The signature closes that gap: the build
signs the exact bytes of manifest.json (which hold every file's sha256) into ``manifest.sig``
beside it, and with ``runtime.verify_key`` set the runtime checks it before parsing.

A detached signature over the file's bytes, rather than one embedded in the JSON, needs no
canonical JSON, leaves the manifest format unchanged, and can be made or checked with openssl::

    openssl pkeyutl -sign -rawin -inkey key.pem -in manifest.json | base64 -w0 > manifest.sig

``manifest.sig`` holds the 64-byte signature in base64. ``cryptography`` is imported only when
a key is set.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from edge_mm.errors import ConfigError

SIGNATURE_NAME = "manifest.sig"


def _cryptography() -> tuple[Any, Any, Any]:
    """(serialization, Ed25519PublicKey, InvalidSignature); a ConfigError when the package is missing."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:  # a runtime dependency: only a broken install lacks it
        raise ConfigError("runtime.verify_key is set but the 'cryptography' package is missing") from None
    return serialization, Ed25519PublicKey, InvalidSignature


def load_public_key(path: Path) -> Any:
    """The Ed25519 public key in ``path`` (PEM); a ConfigError says what is wrong with the file."""
    serialization, Ed25519PublicKey, _ = _cryptography()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"runtime.verify_key: cannot read {path} ({exc.strerror or exc})") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        hint = " (that is a private key: use the .pub file)" if b"PRIVATE KEY" in data else ""
        raise ConfigError(
            f"runtime.verify_key: {path} is not a PEM public key{hint}; make a key pair with 'edge-mm keygen'"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"runtime.verify_key: {path} is not an Ed25519 key; make one with 'edge-mm keygen'")
    return key


def verify_manifest(data: bytes, root: Path, key_path: Path) -> None:
    """Raise ConfigError unless ``root/manifest.sig`` is a valid signature of ``data`` under ``key_path``.

    ``data``: the manifest bytes that will be parsed (read once, so what is checked is what is used).
    """
    _, _, InvalidSignature = _cryptography()
    key = load_public_key(key_path)
    sig_path = root / SIGNATURE_NAME
    try:
        text = sig_path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{root / 'manifest.json'} is not signed (no {SIGNATURE_NAME}) and runtime.verify_key is set; "
            "sign it on the build machine with 'edge-mm build --sign KEY' (a bundle: 'edge-mm package --sign KEY')"
        ) from None
    try:
        signature = base64.b64decode(b"".join(text.split()), validate=True)
        key.verify(signature, data)
    except (binascii.Error, ValueError, InvalidSignature):
        raise ConfigError(
            f"{sig_path} is not a valid signature of manifest.json for the key {key_path}: the manifest "
            "was changed after signing, or signed with another key; these artifacts are not served"
        ) from None
