"""GET /: the browser playground, one page that calls the public API only (no CDN, no build step).

The page and its assets are package data (edge_mm/api/static/playground.*), read with
importlib.resources so the frozen executable serves them too. They hold no secrets: the
page asks for the API key and sends it with each API call.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response

bp = Blueprint("playground", __name__)

ASSET_PREFIX = "/playground/"
# Paths served without an API key: the page and its two assets (auth.is_open uses this).
OPEN_PATHS = ("/", ASSET_PREFIX + "playground.js", ASSET_PREFIX + "playground.css")
_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}


def _asset(suffix: str) -> Response:
    body = resources.files("edge_mm.api").joinpath(f"static/playground.{suffix}").read_bytes()
    response = Response(body, mimetype=_TYPES[suffix])
    response.headers["Cache-Control"] = "no-cache"  # revalidate: a new server version brings a new page
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/")
def page() -> Response:
    return _asset("html")


@bp.get(ASSET_PREFIX + "playground.js")
def script() -> Response:
    return _asset("js")


@bp.get(ASSET_PREFIX + "playground.css")
def style() -> Response:
    return _asset("css")
