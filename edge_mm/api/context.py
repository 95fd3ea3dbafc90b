"""What the app was created with: the settings and the registry (see create_app)."""

from __future__ import annotations

from flask import current_app, request

from edge_mm.config import Settings
from edge_mm.errors import DeadlineExceeded
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.door import ACCEPTED_AT, CLIENT_GONE
from edge_mm.runtime.registry import Registry
from edge_mm.tasks.payload import Limits


def registry() -> Registry:
    return current_app.extensions["edge_mm"]["registry"]


def settings() -> Settings:
    return current_app.extensions["edge_mm"]["settings"]


def limits() -> Limits:
    return current_app.extensions["edge_mm"]["limits"]


def request_deadline() -> Deadline:
    """The request's deadline: ``runtime.request_timeout_s`` from when the server accepted it (the time
    it waited for a worker thread counts), and a way to learn that its client has gone."""
    budget = settings()["runtime.request_timeout_s"]
    deadline = Deadline.after(
        budget, start=request.environ.get(ACCEPTED_AT), client_gone=request.environ.get(CLIENT_GONE)
    )
    if deadline.expired():
        raise DeadlineExceeded(f"the request waited past its {budget:g} s deadline for a worker thread")
    return deadline
