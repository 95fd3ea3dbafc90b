"""OpenAI-compatible embeddings: the request and response shape over the Flask client, then the
official `openai` client against a live server (API key on), in both encodings, single and batch."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.api.test_errors import assert_error
from tests.conftest import need_import
from tests.serving import running_server

KEY = "openai-test-key"


def floats(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<f4")


def test_openai_request_shape_answers_both_shapes(client):
    body = client.post("/v1/embeddings", json={"input": ["a", "the man plays a guitar"], "model": "tiny-embed"})
    assert body.status_code == 200, body.get_data(as_text=True)
    out = body.get_json()
    assert out["object"] == "list"
    assert out["model"] == "tiny-embed"
    assert [(d["object"], d["index"]) for d in out["data"]] == [("embedding", 0), ("embedding", 1)]
    tokens = [d["tokens"] for d in out["data"]]
    assert out["usage"] == {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}
    assert all(len(d["embedding"]) == out["dim"] for d in out["data"])
    own = client.post("/v1/embeddings", json={"inputs": ["a", "the man plays a guitar"]}).get_json()
    assert own == out  # the edge-mm shape carries the OpenAI fields too; same vectors


def test_base64_is_little_endian_float32_of_the_same_values(client):
    texts = ["one sentence", "and another one"]
    plain = client.post("/v1/embeddings", json={"input": texts}).get_json()
    packed = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"}).get_json()
    for p, b in zip(plain["data"], packed["data"], strict=True):
        assert isinstance(b["embedding"], str)
        np.testing.assert_array_equal(floats(b["embedding"]), np.asarray(p["embedding"], dtype=np.float32))


def test_dimensions_and_user(client):
    dim = client.post("/v1/embeddings", json={"input": "x"}).get_json()["dim"]
    ok = client.post("/v1/embeddings", json={"input": "x", "dimensions": dim, "user": "someone"})
    assert ok.status_code == 200
    short = client.post("/v1/embeddings", json={"input": "x", "dimensions": dim // 2})
    assert_error(short, 422, "unprocessable")
    assert "'dimensions'" in short.get_json()["error"]["message"]
    assert f"{dim}-dimensional" in short.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"input": "x", "inputs": "x"}, 422, id="both-input-names"),
        pytest.param({"input": "x", "encoding_format": "int8"}, 422, id="unknown-encoding"),
        pytest.param({"input": "x", "encoding_format": 3}, 422, id="encoding-not-string"),
        pytest.param({"input": "x", "dimensions": "8"}, 422, id="dimensions-not-int"),
        pytest.param({"input": "x", "dimensions": 0}, 422, id="dimensions-zero"),
        pytest.param({"input": [1, 2, 3]}, 422, id="token-ids"),
        pytest.param({"input": ""}, 422, id="empty"),
        pytest.param({"input": ["ok"] * 9}, 413, id="over-item-limit"),
        pytest.param({"input": "x", "model": "text-embedding-3-small"}, 404, id="unknown-model"),
    ],
)
def test_openai_bad_input(client, body, status):
    assert_error(client.post("/v1/embeddings", json=body), status)


@pytest.fixture(scope="module")
def openai_server(tiny_config):
    with running_server(tiny_config, ("EDGE_MM_SERVER_API_KEYS", KEY)) as base:
        yield base


def test_official_openai_client(openai_server, client):
    openai = need_import("openai", "the openai client is not installed: pip install -r requirements/dev.txt")
    api = openai.OpenAI(base_url=openai_server + "/v1", api_key=KEY, max_retries=0)
    texts = ["the man plays a guitar", "a woman slices an onion", "paris"]
    own = client.post("/v1/embeddings", json={"inputs": texts, "model": "tiny-embed"}).get_json()
    own_single = client.post("/v1/embeddings", json={"inputs": texts[0]}).get_json()

    batch_float = api.embeddings.create(model="tiny-embed", input=texts, encoding_format="float")
    assert batch_float.model == "tiny-embed"
    assert [d.index for d in batch_float.data] == [0, 1, 2]
    assert batch_float.usage.prompt_tokens == sum(d["tokens"] for d in own["data"])
    for got, want in zip(batch_float.data, own["data"], strict=True):
        assert got.embedding == pytest.approx(want["embedding"], abs=2e-3)  # int8: batch-mates move values ~1e-4

    batch_b64 = api.embeddings.create(model="tiny-embed", input=texts, encoding_format="base64")
    for got, want in zip(batch_b64.data, batch_float.data, strict=True):
        assert isinstance(got.embedding, str)
        np.testing.assert_array_equal(floats(got.embedding), np.asarray(want.embedding, dtype=np.float32))

    # the client's default asks for base64 and decodes it itself
    single_default = api.embeddings.create(model="tiny-embed", input=texts[0])
    single_float = api.embeddings.create(model="tiny-embed", input=texts[0], encoding_format="float")
    assert len(single_default.data) == len(single_float.data) == 1
    np.testing.assert_array_equal(
        np.asarray(single_default.data[0].embedding, dtype=np.float32),
        np.asarray(single_float.data[0].embedding, dtype=np.float32),
    )
    assert single_float.data[0].embedding == pytest.approx(own_single["data"][0]["embedding"], abs=1e-6)

    with pytest.raises(openai.UnprocessableEntityError, match="dimensions"):
        api.embeddings.create(model="tiny-embed", input="x", dimensions=3)
    with pytest.raises(openai.NotFoundError):
        api.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=openai_server + "/v1", api_key="wrong", max_retries=0).embeddings.create(
            model="tiny-embed", input="x"
        )
