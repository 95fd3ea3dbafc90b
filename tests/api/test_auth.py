"""API keys: which paths stay open, /info behind the key unless server.info_requires_key is off,
and the multipart ``api_key`` field accepted on the DeepStack routes only."""

from __future__ import annotations

import io

import pytest

KEYS = ["k1", "s3cret"]


def keyed_client(tiny_settings, tiny_registry, **overrides):  # type: ignore[no-untyped-def]
    from edge_mm.api import create_app

    app = create_app(tiny_settings.replace(server__api_keys=KEYS, **overrides), tiny_registry)
    app.config["TESTING"] = True
    return app.test_client()


def test_info_needs_the_key_by_default(tiny_settings, tiny_registry):
    c = keyed_client(tiny_settings, tiny_registry)
    r = c.get("/info")
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "unauthorized"
    assert c.get("/info", headers={"X-API-Key": "k1"}).status_code == 200
    assert c.get("/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_info_open_when_the_setting_is_off(tiny_settings, tiny_registry):
    c = keyed_client(tiny_settings, tiny_registry, server__info_requires_key=False)
    assert c.get("/info").status_code == 200
    assert c.get("/v1/models").status_code == 401  # only /info is opened
    assert c.post("/v1/embeddings", json={"inputs": "hello"}).status_code == 401


@pytest.mark.parametrize("info_requires_key", [True, False])
def test_probes_stay_open(tiny_settings, tiny_registry, info_requires_key):
    c = keyed_client(tiny_settings, tiny_registry, server__info_requires_key=info_requires_key)
    assert c.get("/health/live").status_code == 200
    assert c.get("/health/ready").status_code == 200


def test_no_keys_no_checks(client):
    assert client.get("/info").status_code == 200
    assert client.post("/v1/embeddings", json={"inputs": "hello"}).status_code == 200


def _form(key: str) -> dict:  # type: ignore[type-arg]
    return {"api_key": key, "image": (io.BytesIO(b"not an image"), "x.jpg")}


def test_form_field_key_accepted_on_deepstack_routes(tiny_settings, tiny_registry):
    c = keyed_client(tiny_settings, tiny_registry)
    r = c.post("/v1/vision/scene", data=_form("wrong"), content_type="multipart/form-data")
    assert r.status_code == 401
    assert r.get_json()["success"] is False  # the DeepStack dialect
    r = c.post("/v1/vision/scene", data=_form("s3cret"), content_type="multipart/form-data")
    assert r.status_code != 401  # past the key check (no scene model here: its own answer)


def test_form_field_key_refused_elsewhere(tiny_settings, tiny_registry):
    c = keyed_client(tiny_settings, tiny_registry)
    r = c.post("/v1/embeddings", data={"api_key": "s3cret", "inputs": "hello"}, content_type="multipart/form-data")
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "unauthorized"
    r = c.post("/info", data={"api_key": "s3cret"}, content_type="multipart/form-data")
    assert r.status_code == 401


def test_playground_page_is_open_but_its_api_calls_need_the_key(tiny_settings, tiny_registry):
    c = keyed_client(tiny_settings, tiny_registry)
    page = c.get("/")
    assert page.status_code == 200
    assert b"<html" in page.data.lower()
    assert c.get("/playground/playground.js").status_code == 200
    assert c.get("/v1/models").status_code == 401
    assert c.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200


def test_v2_probes_stay_open_and_metrics_follow_their_setting(tiny_settings, tiny_registry):
    c = keyed_client(tiny_settings, tiny_registry)
    assert c.get("/v2/health/live").status_code == 200
    assert c.get("/metrics").status_code == 401
    opened = keyed_client(tiny_settings, tiny_registry, server__metrics_requires_key=False)
    assert opened.get("/metrics").status_code == 200


def test_api_docs_are_open(tiny_settings, tiny_registry):
    c = keyed_client(tiny_settings, tiny_registry)
    assert c.get("/openapi.json").status_code == 200
    assert c.get("/docs").status_code == 200
