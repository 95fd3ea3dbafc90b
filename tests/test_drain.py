"""The drain's pieces in-process: readiness while draining, the shutdown deadline, the exit code."""

from __future__ import annotations

import threading

import pytest
from werkzeug.test import Client


@pytest.fixture
def draining_client(app):  # type: ignore[no-untyped-def]
    """(client over the app behind the drain's readiness wrapper, the draining event)."""
    from edge_mm.serving.drain import ready_503_while_draining

    draining = threading.Event()
    return Client(ready_503_while_draining(app, draining)), draining


def test_both_readiness_routes_answer_503_while_draining(draining_client):
    """Issue 18: /v2/health/ready (Open Inference) stayed 200 during the drain."""
    client, draining = draining_client
    assert client.get("/health/ready").status_code == 200
    v2 = client.get("/v2/health/ready")
    assert (v2.status_code, v2.get_json()) == (200, {"ready": True})
    draining.set()
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.get_json()["status"] == "draining"
    v2 = client.get("/v2/health/ready")
    assert v2.status_code == 503
    assert v2.get_json() == {"ready": False}  # the protocol's body, as when models are not ready
    assert client.get("/health/live").status_code == 200  # liveness is not readiness
