"""Text routes end to end over tiny real artifacts (random weights: plumbing, not accuracy)."""

from __future__ import annotations

import math

import pytest


def test_health_and_info(client):
    assert client.get("/health/live").get_json() == {"status": "alive"}
    assert client.get("/health/ready").status_code == 200
    info = client.get("/info").get_json()
    assert info["device"] == "cpu"
    assert info["ready"] is True
    assert set(info["models"]) == {"tiny-embed", "tiny-sentiment", "tiny-ner", "tiny-sentiment-distil", "tiny-ner-bert"}
    for model in info["models"].values():
        assert all(len(h) == 64 for h in model["files"].values())
    assert info["limits"]["server.max_items"] == 8
    assert info["limits"]["server.max_image_pixels"] > 0  # media limits are shown too
    names = [m["name"] for m in client.get("/v1/models").get_json()["models"]]
    assert names == ["tiny-embed", "tiny-sentiment", "tiny-ner", "tiny-sentiment-distil", "tiny-ner-bert"]


def test_embeddings_one_or_many(client):
    one = client.post("/v1/embeddings", json={"inputs": "the man plays a guitar"})
    assert one.status_code == 200
    assert one.headers["X-Edge-Device"] == "cpu"
    assert float(one.headers["X-Inference-Time-Ms"]) > 0
    body = one.get_json()
    assert body["dim"] == 32
    assert len(body["data"]) == 1
    vec = body["data"][0]["embedding"]
    assert math.isclose(sum(x * x for x in vec), 1.0, abs_tol=1e-4)
    many = client.post(
        "/v1/embeddings", json={"inputs": ["a", "the man plays a guitar", "b c d"], "model": "tiny-embed"}
    )
    data = many.get_json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    # batching must not change an item's vector beyond int8 noise: dynamic int8 picks its
    # activation scale per batch, so batch-mates move values by ~1e-4
    assert data[1]["embedding"] == pytest.approx(vec, abs=2e-3)


def test_embeddings_truncation_is_reported(client):
    data = client.post("/v1/embeddings", json={"inputs": ["short", "word " * 100]}).get_json()["data"]
    assert [d["truncated"] for d in data] == [False, True]
    assert data[1]["tokens"] == 32


def test_zero_shot_scores_sum_to_one(client):
    body = client.post(
        "/v1/zero-shot-classification",
        json={
            "inputs": ["the man plays a guitar", "paris"],
            "labels": ["music", "city", "sport"],
            "hypothesis_template": "about {}",
        },
    ).get_json()
    assert len(body["results"]) == 2
    for ranked in body["results"]:
        assert {r["label"] for r in ranked} == {"music", "city", "sport"}
        assert sum(r["score"] for r in ranked) == pytest.approx(1.0, abs=1e-4)
        assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)


@pytest.mark.parametrize("model", ["tiny-sentiment", "tiny-sentiment-distil"])
def test_text_classification_labels_from_checkpoint(client, model):
    body = client.post(
        "/v1/text-classification", json={"inputs": ["good", "bad"], "top_k": 2, "model": model}
    ).get_json()
    assert len(body["results"]) == 2
    for r in body["results"]:
        assert len(r["labels"]) == 2
        assert {x["label"] for x in r["labels"]} <= {"negative", "neutral", "positive"}
    full = client.post("/v1/text-classification", json={"inputs": "good", "model": model}).get_json()["results"][0][
        "labels"
    ]
    assert sum(x["score"] for x in full) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("model", ["tiny-ner", "tiny-ner-bert"])
@pytest.mark.parametrize(
    "text",
    [
        "John Smith works at Acme in Paris",
        "café  au   lait in 東京 and Berlin",  # unicode and repeated spaces
        " ".join(["john smith works at acme in paris"] * 12),  # many windows at max_length 16
    ],
)
def test_ner_offsets_slice_the_original_text(client, model, text):
    body = client.post("/v1/token-classification", json={"inputs": [text], "model": model}).get_json()
    result = body["results"][0]
    assert result["entities"], "the tiny NER models tag every one of these texts"
    for e in result["entities"]:
        assert text[e["start"] : e["end"]] == e["text"]
        assert e["text"] == e["text"].strip()
        assert e["label"] in {"PER", "LOC", "ORG"}
        assert 0 < e["score"] <= 1


def test_api_keys(tiny_settings, tiny_registry):
    from edge_mm.api import create_app

    app = create_app(tiny_settings.replace(server__api_keys=["k1", "s3cret"]), tiny_registry)
    c = app.test_client()
    body = {"inputs": "hello"}
    r = c.post("/v1/embeddings", json=body)
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "unauthorized"
    assert c.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.post("/v1/embeddings", json=body, headers={"X-API-Key": "k1"}).status_code == 200
    assert c.get("/v1/models").status_code == 401
    assert c.get("/health/ready").status_code == 200  # probes stay open
