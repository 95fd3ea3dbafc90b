"""create_app(settings, registry): the Flask app. Loads nothing itself; no model code here."""

from __future__ import annotations

import logging

from flask import Flask, g

from edge_mm.api import errors, health, text
from edge_mm.api.auth import require_key
from edge_mm.config import Settings
from edge_mm.runtime.registry import Registry

log = logging.getLogger("edge_mm.api")


def create_app(settings: Settings, registry: Registry) -> Flask:
    app = Flask("edge_mm")
    app.config["MAX_CONTENT_LENGTH"] = settings["server.max_body_bytes"]
    app.extensions["edge_mm"] = {"settings": settings, "registry": registry}
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(text.bp)
    for bp in _optional_blueprints():
        app.register_blueprint(bp)
    keys = tuple(settings["server.api_keys"])
    app.before_request(lambda: require_key(keys))

    @app.after_request
    def device_headers(response):  # type: ignore[no-untyped-def]
        if "device" in g:
            response.headers["X-Edge-Device"] = g.device
            response.headers["X-Edge-Model"] = g.model
            response.headers["X-Inference-Time-Ms"] = f"{g.inference_ms:.2f}"
        return response

    return app


def _optional_blueprints() -> list:  # type: ignore[type-arg]
    try:
        from edge_mm.api.vision import blueprints
    except ImportError:
        return []
    return blueprints()
