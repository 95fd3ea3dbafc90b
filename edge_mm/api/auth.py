"""Optional API keys: Bearer token or X-API-Key, compared in constant time."""

from __future__ import annotations

import hmac

from flask import request

from edge_mm.errors import Unauthorized

OPEN_PATHS = ("/health/", "/info")  # liveness and readiness probes work without a key


def _presented() -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("X-API-Key") or (
        request.form.get("api_key") if request.mimetype == "multipart/form-data" else None
    )


def key_matches(presented: str | None, keys: tuple[str, ...]) -> bool:
    """True when ``presented`` equals one of ``keys``; every key is compared, in constant time."""
    if presented is None:
        return False
    given = presented.encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key.encode())
    return ok


def require_key(keys: tuple[str, ...]) -> None:
    if not keys or request.path.startswith(OPEN_PATHS):
        return
    if not key_matches(_presented(), keys):
        raise Unauthorized("missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
