"""The drain's pieces in-process: readiness while draining, the shutdown deadline, the exit code."""

from __future__ import annotations

import dataclasses
import threading
import time

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


class BrokenRunner:
    def warm(self) -> float:
        raise RuntimeError("no kernel for this CPU")


@pytest.fixture
def broken_registry(tiny_registry):  # type: ignore[no-untyped-def]
    """One model whose warm-up raises, loaded as the real one (entry, admission) otherwise."""
    from edge_mm.runtime.registry import Registry

    served = dataclasses.replace(tiny_registry.models["tiny-embed"], name="broken", runner=BrokenRunner())
    return Registry(models={"broken": served}, info=tiny_registry.info)


def serve_in_thread(settings, registry, monkeypatch, drain=None):  # type: ignore[no-untyped-def]
    """(thread running server.serve(settings), its result dict: "code" once serve returned)."""
    from edge_mm import server

    monkeypatch.setattr(server, "load_registry", lambda *_a, **_k: registry)
    monkeypatch.setattr(server.gc, "freeze", lambda: None)  # the test process keeps collecting
    result: dict[str, object] = {}
    kwargs = {} if drain is None else {"drain": drain}
    thread = threading.Thread(
        target=lambda: result.setdefault("code", server.serve(settings.replace(server__port=0), **kwargs)),
        daemon=True,
    )
    thread.start()
    return thread, result


def test_a_failed_warm_up_stops_the_server_with_exit_code_3(tiny_settings, broken_registry, monkeypatch, caplog):
    """Issue 18: a failed warm-up left a process that was live and never ready."""
    thread, result = serve_in_thread(tiny_settings, broken_registry, monkeypatch)
    thread.join(20)
    assert not thread.is_alive(), "the server kept running after its warm-up failed"
    assert result["code"] == 3
    assert broken_registry.failed_model == "broken"
    stopping = [r.getMessage() for r in caplog.records if "stopping" in r.getMessage()]
    assert stopping, caplog.text
    assert "'broken'" in stopping[0]
    assert "RuntimeError" in stopping[0]


def test_serve_sets_the_interpreter_switch_interval(tiny_settings, broken_registry, monkeypatch):
    """server.gil_switch_interval_ms reaches sys.setswitchinterval, and /info's threads say so."""
    import sys

    seen: list[float] = []  # the test process keeps its own interval
    monkeypatch.setattr(sys, "setswitchinterval", seen.append)
    monkeypatch.setattr(sys, "getswitchinterval", lambda: seen[-1])
    thread, result = serve_in_thread(
        tiny_settings.replace(server__gil_switch_interval_ms=0.25), broken_registry, monkeypatch
    )
    thread.join(20)
    assert result["code"] == 3  # the broken warm-up ends the run; the interval was set before
    assert seen == [pytest.approx(0.00025)]
    assert broken_registry.info["threads"]["gil_switch_interval_ms"] == 0.25


def test_serve_after_failed_warmup_keeps_serving_not_ready(tiny_settings, broken_registry, monkeypatch):
    from edge_mm.serving.drain import Drain

    drain = Drain()
    settings = tiny_settings.replace(runtime__serve_after_failed_warmup=True)
    thread, result = serve_in_thread(settings, broken_registry, monkeypatch, drain)
    deadline = time.monotonic() + 20
    while broken_registry.failure is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert thread.is_alive()
    assert not broken_registry.ready
    drain.stop("test")
    thread.join(20)
    assert result["code"] == 0


def test_warm_up_join_shares_the_drain_deadline():
    """Issue 18: after a drain that used its whole timeout, the warm-up got a second one."""
    from edge_mm.server import exit_code_after_drain
    from edge_mm.serving.drain import Drain

    drain = Drain()
    drain.deadline = time.monotonic() - 0.1  # the drain used it all
    warm_up = threading.Thread(target=time.sleep, args=(3,), daemon=True)
    warm_up.start()
    t0 = time.monotonic()
    assert exit_code_after_drain(drain, 0, warm_up, warm_up_failed=False) == 0
    assert time.monotonic() - t0 < 0.5
    assert exit_code_after_drain(drain, 2, warm_up, warm_up_failed=False) == 1  # requests were cut
    assert exit_code_after_drain(drain, 0, warm_up, warm_up_failed=True) == 3
