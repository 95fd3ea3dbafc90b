"""Open Inference Protocol (KServe v2): health, metadata, JSON and binary tensors, the protocol's
error shape; `tritonclient.http` against a live server; the media models' contracts on real models.
Every answer equals what the model's own /v1 route says."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from tests.conftest import need_import
from tests.serving import running_server
from tests.vision_fixtures import *  # noqa: F403

TEXTS = ["the man plays a guitar", "paris is a city"]


def text_input(texts=TEXTS, name="text", datatype="BYTES", shape=None):
    return {"name": name, "datatype": datatype, "shape": shape or [len(texts)], "data": texts}


def infer(client, model, inputs, **extra):
    return client.post(f"/v2/models/{model}/infer", json={"inputs": inputs, **extra})


def assert_v2_error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert body["error"]
    return body["error"]


def outputs(response) -> dict[str, dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return {o["name"]: o for o in response.get_json()["outputs"]}


def test_server_health_and_metadata(client):
    assert client.get("/v2").get_json() == {
        "name": "edge-mm",
        "version": client.get("/info").get_json()["edge_mm_version"],
        "extensions": ["binary_tensor_data"],
    }
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2/models/tiny-embed").get_json()
    assert meta["name"] == "tiny-embed"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}]
    assert meta["edge_mm"]["route"] == "/v1/embeddings"
    assert client.get("/v2/models/tiny-embed/versions/1").get_json() == meta
    cls = client.get("/v2/models/tiny-sentiment").get_json()
    assert [o["name"] for o in cls["outputs"]] == ["labels", "scores"]
    assert client.get("/v2/models/tiny-ner/ready").get_json() == {"name": "tiny-ner", "ready": True}
    assert_v2_error(client.get("/v2/models/nope"), 404)
    assert_v2_error(client.get("/v2/models/tiny-embed/versions/2"), 404)
    assert_v2_error(client.get("/v2/models/nope/ready"), 404)


def test_not_ready_is_400_per_the_protocol(client, tiny_registry, monkeypatch):
    monkeypatch.setattr(tiny_registry._ready, "is_set", lambda: False)
    assert client.get("/v2/health/ready").status_code == 400
    assert client.get("/v2/models/tiny-embed/ready").get_json() == {"name": "tiny-embed", "ready": False}
    assert client.get("/v2/health/live").status_code == 200


def test_embeddings_equal_the_v1_route(client):
    out = outputs(infer(client, "tiny-embed", [text_input()], id="req-1"))
    own = client.post("/v1/embeddings", json={"inputs": TEXTS}).get_json()
    emb = out["embedding"]
    assert emb["datatype"] == "FP32"
    assert emb["shape"] == [2, own["dim"]]
    want = np.array([d["embedding"] for d in own["data"]], dtype=np.float32)
    np.testing.assert_array_equal(np.array(emb["data"], dtype=np.float32).reshape(emb["shape"]), want)
    body = infer(client, "tiny-embed", [text_input(shape=[2, 1])], parameters={"encoding_format": "base64"})
    assert body.get_json()["model_name"] == "tiny-embed"
    assert "id" not in body.get_json()
    assert infer(client, "tiny-embed", [text_input()], id="req-1").get_json()["id"] == "req-1"


def test_text_and_token_classification_equal_the_v1_routes(client):
    out = outputs(infer(client, "tiny-sentiment", [text_input()], parameters={"top_k": 2}))
    own = client.post("/v1/text-classification", json={"inputs": TEXTS, "model": "tiny-sentiment", "top_k": 2})
    rows = own.get_json()["results"]
    assert out["labels"]["shape"] == out["scores"]["shape"] == [2, 2]
    assert out["labels"]["data"] == [x["label"] for r in rows for x in r["labels"]]
    assert out["scores"]["data"] == pytest.approx([x["score"] for r in rows for x in r["labels"]], abs=1e-6)
    ner = outputs(infer(client, "tiny-ner", [text_input(["John Smith works at Acme in Paris."])]))
    own_ner = client.post(
        "/v1/token-classification", json={"inputs": "John Smith works at Acme in Paris.", "model": "tiny-ner"}
    )
    assert ner["entities"]["datatype"] == "BYTES"
    assert ner["entities"]["shape"] == [1]
    assert json.loads(ner["entities"]["data"][0]) == own_ner.get_json()["results"][0]["entities"]


def binary_request(texts, requested=("embedding",)):
    raw = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    header = {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "parameters": {"binary_data_size": len(raw)}}
        ],
        "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in requested],
    }
    head = json.dumps(header).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def test_binary_tensor_data_in_and_out(client):
    body, headers = binary_request(TEXTS)
    response = client.post(
        "/v2/models/tiny-embed/infer", data=body, headers=headers, content_type="application/octet-stream"
    )
    assert response.status_code == 200, response.get_data()
    length = int(response.headers["Inference-Header-Content-Length"])
    raw = response.get_data()
    header = json.loads(raw[:length])
    (emb,) = header["outputs"]
    assert "data" not in emb
    vectors = np.frombuffer(raw[length:], dtype="<f4").reshape(emb["shape"])
    assert emb["parameters"]["binary_data_size"] == vectors.nbytes == len(raw) - length
    as_json = outputs(infer(client, "tiny-embed", [text_input()]))["embedding"]
    np.testing.assert_array_equal(vectors, np.array(as_json["data"], dtype=np.float32).reshape(as_json["shape"]))
    assert response.headers["X-Edge-Model"] == "tiny-embed"


@pytest.mark.parametrize(
    ("inputs", "extra", "status", "words"),
    [
        pytest.param([text_input(datatype="FP32")], {}, 400, "BYTES", id="wrong-datatype"),
        pytest.param([text_input(shape=[1, 2])], {}, 400, "shape", id="wrong-shape"),
        pytest.param([text_input(shape=[3])], {}, 400, "elements", id="shape-vs-data"),
        pytest.param([text_input(name="texts")], {}, 400, "unknown input", id="unknown-input"),
        pytest.param([text_input(), text_input()], {}, 400, "twice", id="input-twice"),
        pytest.param([text_input([1, 2])], {}, 400, "strings", id="numbers-as-bytes"),
        pytest.param([], {}, 400, "inputs", id="no-inputs"),
        pytest.param([text_input()], {"outputs": [{"name": "logits"}]}, 400, "unknown output", id="unknown-output"),
        pytest.param([text_input()], {"parameters": [1]}, 400, "parameters", id="parameters-not-object"),
        pytest.param([text_input(["", "x"])], {}, 422, "empty", id="empty-text"),
        pytest.param([text_input(["x"] * 9)], {}, 413, "limit", id="too-many"),
        pytest.param([text_input()], {"parameters": {"dimensions": 3}}, 422, "dimensions", id="task-option"),
    ],
)
def test_errors_in_the_protocol_shape(client, inputs, extra, status, words):
    assert words in assert_v2_error(infer(client, "tiny-embed", inputs, **extra), status)


def test_malformed_bodies(client):
    post = client.post
    assert_v2_error(post("/v2/models/tiny-embed/infer", data=b"{nope", content_type="application/json"), 400)
    assert_v2_error(post("/v2/models/tiny-embed/infer", data=b"[1]", content_type="application/json"), 400)
    assert_v2_error(post("/v2/models/nope/infer", json={"inputs": [text_input()]}), 404)
    assert_v2_error(post("/v2/models/tiny-embed/versions/7/infer", json={"inputs": [text_input()]}), 404)
    body, headers = binary_request(TEXTS)
    assert_v2_error(post("/v2/models/tiny-embed/infer", data=body[:-3], headers=headers), 400)  # cut short
    assert_v2_error(post("/v2/models/tiny-embed/infer", data=body + b"xx", headers=headers), 400)  # extra bytes
    bad = {"Inference-Header-Content-Length": str(len(body) + 1)}
    assert_v2_error(post("/v2/models/tiny-embed/infer", data=body, headers=bad), 400)
    deep = '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ' + "[" * 5000 + "]" * 5000 + "}]}"
    assert_v2_error(post("/v2/models/tiny-embed/infer", data=deep, content_type="application/json"), 400)


@pytest.fixture(scope="module")
def v2_server(tiny_config):
    with running_server(tiny_config) as base:
        yield base


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient(v2_server, client, binary):
    httpclient = need_import("tritonclient.http", "tritonclient is not installed: pip install -r requirements/dev.txt")
    from tritonclient.utils import InferenceServerException

    triton = httpclient.InferenceServerClient(v2_server.removeprefix("http://"))
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("tiny-embed")
    assert triton.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = triton.get_model_metadata("tiny-sentiment")
    assert [o["name"] for o in meta["outputs"]] == ["labels", "scores"]

    texts = np.array([t.encode() for t in TEXTS], dtype=np.object_)
    inp = httpclient.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(texts, binary_data=binary)
    result = triton.infer(
        "tiny-embed", [inp], outputs=[httpclient.InferRequestedOutput("embedding", binary_data=binary)]
    )
    own = client.post("/v1/embeddings", json={"inputs": TEXTS}).get_json()
    want = np.array([d["embedding"] for d in own["data"]], dtype=np.float32)
    np.testing.assert_allclose(result.as_numpy("embedding"), want, atol=1e-6)

    cls = triton.infer("tiny-sentiment", [inp], parameters={"top_k": 2})  # no outputs named: all, binary
    labels, scores = cls.as_numpy("labels"), cls.as_numpy("scores")
    assert labels.shape == scores.shape == (2, 2)
    assert scores.dtype == np.float32
    rows = client.post("/v1/text-classification", json={"inputs": TEXTS, "model": "tiny-sentiment", "top_k": 2})
    assert [[x.decode() for x in row] for row in labels] == [
        [x["label"] for x in r["labels"]] for r in rows.get_json()["results"]
    ]

    wrong = httpclient.InferInput("text", [2], "FP32")
    wrong.set_data_from_numpy(np.array([1.0, 2.0], dtype=np.float32), binary_data=binary)
    with pytest.raises(InferenceServerException, match="must be BYTES") as err:
        triton.infer("tiny-embed", [wrong])
    assert err.value.status() == "400"
    squashed = httpclient.InferInput("text", [1, 2], "BYTES")
    squashed.set_data_from_numpy(texts.reshape(1, 2), binary_data=binary)
    with pytest.raises(InferenceServerException, match="shape") as err:
        triton.infer("tiny-embed", [squashed])
    assert err.value.status() == "400"
    with pytest.raises(InferenceServerException) as err:
        triton.infer("nope", [inp])
    assert err.value.status() == "404"


def encoded(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.mark.real_models
def test_image_models_equal_the_v1_routes(vision_client, photos):
    files = [photos / "chelsea.png", photos / "coffee.png"]
    image = {"name": "image", "datatype": "BYTES", "shape": [2], "data": [encoded(p) for p in files]}
    out = outputs(infer(vision_client, "efficientnet", [image], parameters={"top_k": 3}))
    own = vision_client.post("/v1/image-classification", json={"images": [encoded(p) for p in files], "top_k": 3})
    rows = own.get_json()["results"]
    assert out["labels"]["shape"] == [2, 3]
    assert out["labels"]["data"] == [x["label"] for r in rows for x in r]
    assert out["scores"]["data"] == pytest.approx([x["score"] for r in rows for x in r], abs=1e-6)

    astronaut = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [encoded(photos / "astronaut.png")]}
    faces = outputs(infer(vision_client, "mtcnn", [astronaut]))
    own_faces = vision_client.post("/v1/face-detection", json={"image": encoded(photos / "astronaut.png")})
    want = own_faces.get_json()["results"][0]["faces"]
    assert faces["boxes"]["shape"] == [len(want), 4]
    assert len(want) >= 1
    assert faces["boxes"]["data"][:4] == pytest.approx(list(want[0]["box"].values()), abs=1e-3)
    assert faces["landmarks"]["shape"] == [len(want), 5, 2]
    assert faces["image_index"]["data"] == [0] * len(want)

    labels = {"name": "candidate_labels", "datatype": "BYTES", "shape": [2], "data": ["a cat", "a car"]}
    chelsea = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [encoded(photos / "chelsea.png")]}
    zs = outputs(infer(vision_client, "conse", [chelsea, labels]))
    assert zs["labels"]["data"][0] == "a cat"


@pytest.mark.real_models
def test_voice_activity_binary(vision_client, speech_wav):
    wav = speech_wav[0]
    raw = struct.pack("<I", len(wav)) + wav
    head = json.dumps(
        {"inputs": [{"name": "audio", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(raw)}}]}
    ).encode()
    response = vision_client.post(
        "/v2/models/silero-vad/infer", data=head + raw, headers={"Inference-Header-Content-Length": str(len(head))}
    )
    out = outputs(response)
    own = vision_client.post("/v1/voice-activity", data=wav, content_type="audio/wav").get_json()
    assert out["segments"]["data"] == pytest.approx(
        [v for s in own["segments"] for v in (s["start_s"], s["end_s"])], abs=1e-5
    )
    assert out["speech_ratio"]["data"] == pytest.approx([own["speech_ratio"]], abs=1e-6)
    two = {"name": "audio", "datatype": "BYTES", "shape": [2], "data": ["AA==", "AA=="]}
    assert "one element" in assert_v2_error(infer(vision_client, "silero-vad", [two]), 400)
