"""CORS for browser pages on other origins (``server.cors_origins``; off when empty), by flask-cors.

A preflight (OPTIONS with Access-Control-Request-Method) carries no credentials, so it is
answered before the API key check; flask-cors then adds its headers. Every other request
still needs its key, and error answers carry the CORS headers too so the page can read them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from flask import Flask, Response, current_app, request
from flask_cors import CORS

from edge_mm.errors import ConfigError

# What a browser sends as Origin: scheme://host[:port], no path and no trailing slash.
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s*?#]+$", re.IGNORECASE)
METHODS = ["GET", "HEAD", "POST", "OPTIONS"]  # all the API answers
EXPOSED = ("X-Edge-Device", "X-Edge-Model", "X-Inference-Time-Ms", "Retry-After")


def check_origins(origins: Sequence[str]) -> list[str]:
    bad = [o for o in origins if o != "*" and not _ORIGIN.match(o)]
    if bad:
        raise ConfigError(
            f"server.cors_origins: {bad} are not origins; write each as scheme://host[:port] "
            "(e.g. 'http://192.168.1.20:3000', no path or trailing slash), or '*' for any"
        )
    return list(origins)


def install(app: Flask, origins: Sequence[str]) -> None:
    """Register the preflight answer (call before the API key hook) and flask-cors; nothing when empty."""
    if not origins:
        return
    allowed = check_origins(origins)
    CORS(app, origins=allowed, send_wildcard="*" in allowed, methods=METHODS, expose_headers=list(EXPOSED), max_age=600)
    app.before_request(answer_preflight)


def answer_preflight() -> Response | None:
    preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
    if preflight and request.routing_exception is None:  # an unknown path keeps its 404 (or 401)
        return current_app.make_default_options_response()
    return None
