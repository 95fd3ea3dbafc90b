"""Optional API keys: Bearer token or X-API-Key, compared in constant time.

Liveness and readiness probes (/health/*, /v2/health/*) the playground page and the API docs (/openapi.json, /docs) never need a key; /info and /metrics
do unless ``server.info_requires_key`` / ``server.metrics_requires_key`` is false. The multipart ``api_key`` form field is a DeepStack
convention, accepted on the DeepStack blueprint only.
"""

from __future__ import annotations

import hmac

from flask import current_app, request

from edge_mm.api.playground import OPEN_PATHS as PLAYGROUND_PATHS
from edge_mm.errors import Unauthorized

PROBE_PATHS = ("/health/", "/v2/health/")
DOC_PATHS = ("/openapi.json", "/docs")  # and /docs/<asset>: the API's description, no data
KEY_OPTIONAL = {"/info": "server.info_requires_key", "/metrics": "server.metrics_requires_key"}  # path -> setting
DEEPSTACK_BLUEPRINT = "deepstack"


def _presented() -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if "X-API-Key" in request.headers:
        return request.headers["X-API-Key"]
    if request.blueprint == DEEPSTACK_BLUEPRINT and request.mimetype == "multipart/form-data":
        return request.form.get("api_key")
    return None


def key_matches(presented: str | None, keys: tuple[str, ...]) -> bool:
    """True when ``presented`` equals one of ``keys``; every key is compared, in constant time."""
    if presented is None:
        return False
    given = presented.encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key.encode())
    return ok


def is_open(path: str) -> bool:
    """Paths served without a key even when keys are configured (the playground page holds no
    data: the API calls it makes carry the key typed into it)."""
    if path.startswith(PROBE_PATHS) or path in PLAYGROUND_PATHS or path in DOC_PATHS or path.startswith("/docs/"):
        return True
    setting = KEY_OPTIONAL.get(path)
    return setting is not None and not current_app.extensions["edge_mm"]["settings"][setting]


def require_key(keys: tuple[str, ...]) -> None:
    if not keys or is_open(request.path):
        return
    if not key_matches(_presented(), keys):
        raise Unauthorized("missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
