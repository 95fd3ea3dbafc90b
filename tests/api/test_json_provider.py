"""JSON answers through orjson: the same JSON as Flask's encoder, and short floats in embeddings."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import pytest
from flask import Flask

from edge_mm.api.json_provider import OrjsonProvider, install


@pytest.fixture
def provider() -> OrjsonProvider:
    app = Flask("t")
    install(app)
    assert isinstance(app.json, OrjsonProvider)
    return app.json


@dataclasses.dataclass
class Point:
    x: int
    y: float


def test_same_json_as_flask_for_api_shapes(provider):
    body = {"object": "list", "data": [{"embedding": [0.057937, -1e-06, 3.0], "tokens": 3, "truncated": False}]}
    body |= {"sizes": {1: 4, 8: 2}, "none": None, "point": Point(1, 2.5), "day": date(2026, 12, 1)}
    flask = Flask("reference")
    expected = json.loads(flask.json.dumps(body))
    assert json.loads(provider.dump_bytes(body)) == expected
    assert list(json.loads(provider.dump_bytes(body))) == list(body)  # keys in the order built


def test_what_orjson_refuses_falls_back_to_flask(provider):
    odd = {"message": "abc \ud800", "big": 2**70}
    assert json.loads(provider.dump_bytes(odd)) == {"message": "abc \ud800", "big": 2**70}


def test_embedding_floats_print_with_at_most_six_decimals(client):
    raw = client.post("/v1/embeddings", json={"inputs": ["a short sentence"]}).get_data(as_text=True)
    numbers = raw.split('"embedding":[')[1].split("]")[0].split(",")
    assert max(len(n.lstrip("-")) for n in numbers) <= 9  # "0.123456", not "0.12345600128173828"
