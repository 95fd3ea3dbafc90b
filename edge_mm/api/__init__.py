"""create_app(settings, registry): the Flask app. Loads nothing itself; no model code here.

Routes come from the task table (edge_mm/tasks/table.py): the edge-mm dialect's on one
blueprint, DeepStack's on its own with its own error body.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flask import Flask, Response, g

from edge_mm.api import deepstack, errors, health, json_provider, metrics, open_inference, streams
from edge_mm.api import repository as repository_api
from edge_mm.api.auth import require_key
from edge_mm.api.cors import install as install_cors
from edge_mm.api.openapi import bp as openapi_bp
from edge_mm.api.playground import bp as playground_bp
from edge_mm.api.routes import task_blueprint
from edge_mm.config import Settings
from edge_mm.runtime.door import Door
from edge_mm.runtime.registry import Registry
from edge_mm.runtime.swap import Repository
from edge_mm.streams.manager import StreamManager
from edge_mm.tasks.payload import Limits
from edge_mm.tasks.table import LOADERS, OPTIONS, TASKS
from edge_mm.tasks.task import Task

log = logging.getLogger("edge_mm.api")


def create_app(
    settings: Settings,
    registry: Registry,
    tasks: Sequence[Task] = TASKS,
    door: Door | None = None,
    stream_manager: StreamManager | None = None,
) -> Flask:
    """``door``: the HTTP server's queue for worker threads, shown in /info and /metrics (None in tests);
    ``stream_manager``: the camera streams behind /v1/streams (None: those routes answer 404)."""
    app = Flask("edge_mm")
    app.config["MAX_CONTENT_LENGTH"] = settings["server.max_body_bytes"]
    app.extensions["edge_mm"] = {
        "settings": settings,
        "registry": registry,
        "limits": Limits.from_settings(settings),
        "tasks": tuple(tasks),
        "door": door,
        # loads, swaps and unloads model versions while serving (runtime/swap.py); loads nothing now
        "repository": Repository(settings, registry, LOADERS, OPTIONS),
    }
    json_provider.install(app)
    errors.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi_bp)  # /openapi.json, /docs
    app.register_blueprint(task_blueprint(t for t in tasks if t.dialect == "edge-mm"))
    app.register_blueprint(deepstack.blueprint(t for t in tasks if t.dialect == deepstack.NAME))
    app.register_blueprint(open_inference.bp)
    app.register_blueprint(repository_api.bp)  # /v2/repository: versions, hot swap, rollback
    app.register_blueprint(playground_bp)  # GET /: the browser playground
    metrics.install(app, registry, door)  # first hook: requests answered by auth are counted too
    streams.install(app, stream_manager)
    install_cors(app, settings["server.cors_origins"])  # before the key check: preflights carry no key
    keys = tuple(settings["server.api_keys"])
    app.before_request(lambda: require_key(keys))
    app.after_request(model_headers)
    return app


def model_headers(response: Response) -> Response:
    """Which models served the request, on which device, and their time inside the model slots."""
    uses = g.get("model_uses")
    if uses:
        response.headers["X-Edge-Device"] = ",".join(dict.fromkeys(u.device for u in uses))
        response.headers["X-Edge-Model"] = ",".join(dict.fromkeys(u.model for u in uses))
        response.headers["X-Inference-Time-Ms"] = f"{sum(u.ms for u in uses):.2f}"
    return response
