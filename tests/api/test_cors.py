"""CORS (server.cors_origins): off by default; an allowed origin gets the headers on preflights, on
answers and on error answers; another origin gets none; preflights need no API key, requests do.

HTTP plumbing only: an app over an empty, ready registry (no model is built or loaded)."""

from __future__ import annotations

import pytest

from edge_mm.config import load_settings
from edge_mm.errors import ConfigError
from edge_mm.runtime.registry import Registry

ALLOWED = "http://192.168.1.20:3000"
OTHER = "http://evil.example"
KEYS = ["k1"]
ORIGIN = "Access-Control-Allow-Origin"


def cors_client(**overrides):  # type: ignore[no-untyped-def]
    from edge_mm.api import create_app

    registry = Registry()
    registry.mark_ready()
    app = create_app(load_settings(None, env={}).replace(**overrides), registry)
    app.config["TESTING"] = True
    return app.test_client()


def preflight(client, origin: str, path: str = "/v1/models", method: str = "GET"):  # type: ignore[no-untyped-def]
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_off_by_default():
    client = cors_client()
    assert client.application.extensions["edge_mm"]["settings"]["server.cors_origins"] == []
    r = preflight(client, ALLOWED)
    assert ORIGIN not in r.headers
    r = client.get("/v1/models", headers={"Origin": ALLOWED})
    assert r.status_code == 200
    assert not [k for k, _ in r.headers.items() if k.lower().startswith("access-control-")]


def test_allowed_origin_gets_the_headers():
    c = cors_client(server__cors_origins=[ALLOWED], server__api_keys=KEYS)
    r = preflight(c, ALLOWED, "/v1/embeddings", "POST")
    assert r.status_code == 200  # no key on a preflight: browsers never send one
    assert r.headers[ORIGIN] == ALLOWED
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert {"authorization", "content-type"} <= {
        h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert "DELETE" not in r.headers["Access-Control-Allow-Methods"]

    r = c.get("/v1/models", headers={"Origin": ALLOWED, "Authorization": "Bearer k1"})
    assert r.status_code == 200
    assert r.headers[ORIGIN] == ALLOWED
    exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-edge-model", "x-edge-device", "x-inference-time-ms"} <= exposed

    r = c.get("/v1/models", headers={"Origin": ALLOWED})
    assert r.status_code == 401  # the key is still needed, and the page can read why
    assert r.headers[ORIGIN] == ALLOWED
    assert r.get_json()["error"]["code"] == "unauthorized"


def test_other_origin_gets_none():
    c = cors_client(server__cors_origins=[ALLOWED])
    r = preflight(c, OTHER)
    assert ORIGIN not in r.headers
    assert "Access-Control-Allow-Methods" not in r.headers
    r = c.get("/v1/models", headers={"Origin": OTHER})
    assert r.status_code == 200  # CORS is the browser's check: the server answers, without the grant
    assert ORIGIN not in r.headers


def test_any_origin():
    c = cors_client(server__cors_origins=["*"])
    r = c.get("/v1/models", headers={"Origin": OTHER})
    assert r.headers[ORIGIN] == "*"


def test_preflight_to_an_unknown_path_is_not_answered():
    c = cors_client(server__cors_origins=[ALLOWED], server__api_keys=KEYS)
    assert preflight(c, ALLOWED, "/v1/nothing-here").status_code in (401, 404)


@pytest.mark.parametrize("origin", ["http://host:3000/", "http://host/app", "host:3000", ""])
def test_a_malformed_origin_stops_start_up(origin):
    with pytest.raises(ConfigError, match="cors_origins"):
        cors_client(server__cors_origins=[origin])
