"""The DeepStack dialect's HTTP side: its routes, its error body, and 400 where edge-mm says 422.

DeepStack clients (NVRs, home-automation hubs) expect ``{success: false, error, code}``
and know 400, not 422. The tasks are in tasks/deepstack.py; the ``api_key`` form field,
a DeepStack convention, is accepted on this blueprint only (api/auth.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Blueprint

from edge_mm.api import errors
from edge_mm.api.routes import add_task_routes
from edge_mm.tasks.task import Task

NAME = "deepstack"


def error_body(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    if status == 422:  # semantic errors: DeepStack clients know 400
        status = 400
    return status, {"success": False, "error": message, "code": status}


def blueprint(tasks: Iterable[Task]) -> Blueprint:
    bp = Blueprint(NAME, __name__)
    add_task_routes(bp, tasks)
    errors.register(bp, error_body)
    return bp
