"""GET /openapi.json covers every route of the app from the task table's models; GET /docs serves
Swagger UI from local assets; validation errors name the field in the one error body."""

from __future__ import annotations

import pytest

from edge_mm.api.openapi import openapi_path
from edge_mm.tasks.table import TASKS
from tests.api.test_errors import assert_error

SKIPPED = {"HEAD", "OPTIONS"}


@pytest.fixture
def doc(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_every_route_of_the_app_is_described(app, doc):
    assert doc["openapi"] == "3.1.0"
    seen = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        for method in rule.methods - SKIPPED:
            op = doc["paths"].get(openapi_path(rule.rule), {}).get(method.lower())
            assert op is not None, f"{method} {rule.rule} is missing from /openapi.json"
            assert not op.get("x-undescribed"), f"{method} {rule.rule}: add it to edge_mm/api/openapi.py ROUTES"
            assert "200" in op["responses"]
            seen += 1
    assert seen >= len(TASKS) + 6


def test_task_routes_come_from_the_task_models(doc):
    schemas = doc["components"]["schemas"]
    for task in TASKS:
        (route,) = task.routes
        op = doc["paths"][openapi_path(route)]["post"]
        body = op["requestBody"]["content"]
        ref = body["application/json"]["schema"]["$ref"].split("/")[-1]
        assert ref == f"{task.name}.Body"
        assert set(task.body.model_fields) <= set(schemas[ref]["properties"])
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        assert ok in schemas
        error = "DeepStackError" if task.dialect == "deepstack" else "Error"
        for status in ("400", "413", "415", "500", "503"):
            assert op["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith(error)
        assert ("422" in op["responses"]) == (task.dialect != "deepstack")
        if task.media:
            form = body["multipart/form-data"]["schema"]["properties"]
            for field in task.media:
                assert form[field] == {"type": "string", "format": "binary"}
        else:
            assert set(body) == {"application/json"}


def test_options_take_null_for_their_default(doc):
    props = doc["components"]["schemas"]["text-classification.Body"]["properties"]
    assert {"type": "null"} in props["top_k"]["anyOf"]
    assert doc["components"]["schemas"]["text-classification.Body"]["required"] == ["inputs"]


def test_the_error_body_is_the_one_body(doc):
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["status", "code", "message"]


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/v1/text-classification", {"inputs": "x", "top_k": 0}, "'top_k'"),
        ("/v1/text-classification", {"inputs": ["ok", 3]}, "'inputs'[1]"),
        ("/v1/zero-shot-classification", {"inputs": "x", "labels": ["a"], "temperature": "hot"}, "'temperature'"),
        ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, "'encoding_format'"),
        ("/v1/token-classification", {}, "'inputs'"),
    ],
)
def test_validation_errors_name_the_field(client, route, body, field):
    response = client.post(route, json=body)
    assert_error(response, 422, "unprocessable")
    assert field in response.get_json()["error"]["message"]


def test_docs_page_is_served_from_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http" not in html.replace("http-equiv", "")  # no CDN: every asset is relative
    for asset in ("docs/swagger-ui-bundle.js", "docs/swagger-ui.css"):
        assert asset in html
        with client.get("/" + asset) as served:  # a file response: closed here
            assert served.status_code == 200
            assert len(served.get_data()) > 10_000
    assert_error(client.get("/docs/../../etc/passwd"), 404)
    assert_error(client.get("/docs/index.html"), 404, "not_found")


def test_with_keys_the_document_says_which_routes_need_one(tiny_config, tiny_registry):
    from edge_mm.api import create_app
    from edge_mm.config import load_settings

    keyed = load_settings(tiny_config, env={"EDGE_MM_SERVER_API_KEYS": "k"})
    client = create_app(keyed, tiny_registry).test_client()
    doc = client.get("/openapi.json", headers={"X-API-Key": "k"}).get_json()
    emb = doc["paths"]["/v1/embeddings"]["post"]
    assert emb["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "401" in emb["responses"]
    assert doc["paths"]["/health/live"]["get"]["security"] == []
    assert doc["paths"]["/v1/vision/face"]["post"]["responses"]["401"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("DeepStackError")
