"""The real all-MiniLM-L6-v2 (int8, traced), served through the API: behaviour, not plumbing."""

from __future__ import annotations

import dataclasses

import pytest

from edge_mm.manifest import read_manifest
from tests.conftest import needs_minilm

pytestmark = [needs_minilm, pytest.mark.real_models]


@pytest.fixture(scope="module")
def minilm_client(minilm_config):
    from edge_mm.api import create_app
    from edge_mm.config import load_settings
    from edge_mm.runtime.registry import load_registry
    from edge_mm.tasks.table import LOADERS, OPTIONS

    settings = load_settings(minilm_config, env={})
    settings = dataclasses.replace(settings, models=tuple(m for m in settings.models if m.name == "minilm"))
    registry = load_registry(settings, LOADERS, options=OPTIONS)
    registry.warm_all()
    return create_app(settings, registry).test_client()


def embed(client, texts):
    body = client.post("/v1/embeddings", json={"model": "minilm", "inputs": texts}).get_json()
    return [d["embedding"] for d in body["data"]]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_related_pair_scores_higher_than_unrelated(minilm_client):
    a, b, c = embed(
        minilm_client,
        ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."],
    )
    assert len(a) == 384
    assert cos(a, b) > 0.55  # fp32 reference: 0.667
    assert cos(a, c) < 0.1  # fp32 reference: -0.054
    assert cos(a, b) > cos(a, c) + 0.4


@pytest.mark.parametrize(
    ("text", "labels", "want"),
    [
        ("The striker scored twice in the final minutes of the match.", ["sports", "cooking", "finance"], "sports"),
        ("Preheat the oven and whisk the eggs with sugar.", ["sports", "cooking", "finance"], "cooking"),
        (
            "Shares dropped after the bank reported lower quarterly earnings.",
            ["sports", "cooking", "finance"],
            "finance",
        ),
        ("My flight to Tokyo was delayed by four hours.", ["travel", "weather", "music"], "travel"),
        ("It will rain heavily tomorrow with strong winds.", ["travel", "weather", "music"], "weather"),
    ],
)
def test_label_classifier_picks_the_obvious_label(minilm_client, text, labels, want):
    body = minilm_client.post("/v1/zero-shot-classification", json={"inputs": text, "labels": labels}).get_json()
    assert body["results"][0][0]["label"] == want


def test_hypothesis_template_and_label_cache(minilm_client):
    body = {
        "inputs": ["The guitarist played a long solo."],
        "labels": ["music", "politics"],
        "hypothesis_template": "This text is about {}.",
    }
    first = minilm_client.post("/v1/zero-shot-classification", json=body).get_json()
    second = minilm_client.post("/v1/zero-shot-classification", json=body).get_json()
    assert first["results"][0][0]["label"] == "music"
    assert first == second


def test_int8_fidelity_recorded_in_manifest(minilm_config):
    from edge_mm.config import load_settings

    root = load_settings(minilm_config, env={}).path("runtime.artifacts_dir")
    entry = read_manifest(root).models["minilm"]
    assert entry.variants["cpu"].dtype == "int8-dynamic"
    fid = entry.verification["int8_vs_fp32"]
    assert fid["mean_cosine"] >= 0.995
    assert fid["min_cosine"] >= 0.98
    assert entry.verification["int8_samples"] >= 300
    assert entry.verification["traced_vs_eager_fp32_max_abs"] <= 1e-4
    assert entry.preprocessing["pooling"] == "mean"
