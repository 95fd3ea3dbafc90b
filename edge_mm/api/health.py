"""Liveness, readiness, the model list and /info."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from edge_mm.api.context import registry
from edge_mm.tasks.table import routes_for

bp = Blueprint("health", __name__)


@bp.get("/health/live")
def live():
    return jsonify({"status": "alive"})


@bp.get("/health/ready")
def ready():
    reg = registry()
    if reg.ready:
        return jsonify({"status": "ready", "models": list(reg.models)})
    body = {"status": "failed" if reg.failure else "loading", "detail": reg.failure or "models are loading"}
    response = jsonify(body)
    response.status_code = 503
    response.headers["Retry-After"] = "1"
    return response


@bp.get("/v1/models")
def models():
    tasks = current_app.extensions["edge_mm"]["tasks"]
    return jsonify(
        {
            "models": [
                {
                    **m.describe(),
                    "versions": sorted(registry().served_versions(m.name)),
                    "routes": [r.removeprefix("/v1/") for r in routes_for(m.kind, tasks)],
                }
                for m in registry().models.values()
            ]
        }
    )


@bp.get("/info")
def info():
    reg = registry()
    body = dict(reg.info)
    body["ready"] = reg.ready
    door = current_app.extensions["edge_mm"].get("door")
    if door is not None:
        body["door"] = door.stats()
    served = {reg.request_name(m): m for m in reg.every_version()}  # name@N for a version that is not the default
    body["admission"] = {name: m.admission.stats() for name, m in served.items()}
    body["batching"] = {
        name: {"batches": b.batches, "items": b.items, "mean_batch": round(b.items / b.batches, 2) if b.batches else 0}
        for name, m in served.items()
        if (b := getattr(m.runner, "batcher", None)) is not None
    }
    return jsonify(body)
