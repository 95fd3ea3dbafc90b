"""Routes from the task table: one POST view per task route; no task code here.

A view takes the request's deadline (started when the server accepted it), reads the payload, lets the task parse and
run it, and records which models ran (for the X-Edge-* headers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Response, g, jsonify

from edge_mm.api.context import limits, registry, request_deadline
from edge_mm.api.request_body import read_payload
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks.task import Task


def task_view(task: Task) -> Callable[[], Response]:
    def view(**path: str) -> Response:
        deadline = request_deadline()
        lim = limits()
        payload = read_payload(bool(task.media), lim, forms=task.dialect == "deepstack")
        if path:  # a route's path fields (/v1/vision/custom/<model>) win over the body's
            payload = dataclasses.replace(payload, fields={**payload.fields, **path})
        models = Models(registry())
        try:
            request = task.parse(payload, lim, models)
            body: dict[str, Any] = task.run(models, request, deadline)
        finally:
            g.model_uses = models.used
        return jsonify(body)

    view.__name__ = task.name.replace("-", "_")
    view.__doc__ = task.summary
    return view


def add_task_routes(bp: Blueprint, tasks: Iterable[Task]) -> None:
    for task in tasks:
        view = task_view(task)
        for route in task.routes:
            bp.add_url_rule(route, endpoint=task.name, view_func=view, methods=["POST"])


def task_blueprint(tasks: Iterable[Task]) -> Blueprint:
    """The edge-mm dialect's task routes (DeepStack's are in api/deepstack.py)."""
    bp = Blueprint("tasks", __name__)
    add_task_routes(bp, tasks)
    return bp
