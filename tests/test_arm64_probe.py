"""tests/arm64_probe.py's comparison of an arm64 answer with the x86-64 one: strict where both serve the
same int8 forms, held to the build gates where one CPU serves another form (an x86 CPU without VNNI
serves the 7-bit forms, Arm the 8-bit ones)."""

import math

import pytest

from tests.arm64_probe import assert_same_answers


def _report(embedding, score, forms):
    return {
        "served_routes": ["embeddings", "image-classification"],
        "answers": {
            "embeddings": {"status": 200, "answer": {"data": [{"embedding": embedding}]}, "s": 1.0},
            "image-classification": {
                "status": 200,
                "answer": {"predictions": [{"label": "tabby", "score": score}], "inference_ms": 3.0},
                "s": 1.0,
            },
        },
        "forms": forms,
    }


SAME = {"minilm": "cpu-onnxruntime", "efficientnet": "cpu-onnxruntime"}
AVX2 = {"minilm": "cpu-onnxruntime-7bit", "efficientnet": "cpu-onnxruntime-7bit"}
E = [1.0, 0.0, 0.0]
NEAR = [1.0, 0.12, 0.0]  # cosine 0.9929 to E: as far apart as MiniLM's 7-bit and 8-bit forms may be


def test_same_forms_are_held_to_int8_rounding():
    assert_same_answers(_report(E, 0.80, SAME), _report(E, 0.82, SAME))
    with pytest.raises(AssertionError, match="cosine"):
        assert_same_answers(_report(NEAR, 0.80, SAME), _report(E, 0.80, SAME))
    with pytest.raises(AssertionError):
        assert_same_answers(_report(E, 0.70, SAME), _report(E, 0.80, SAME))


def test_other_forms_are_held_to_the_build_gates():
    assert math.isclose(sum(a * b for a, b in zip(NEAR, E, strict=True)) / math.hypot(*NEAR), 0.99287, abs_tol=1e-4)
    assert_same_answers(_report(NEAR, 0.70, SAME), _report(E, 0.80, AVX2))
    with pytest.raises(AssertionError, match="cosine"):
        assert_same_answers(_report([1.0, 0.3, 0.0], 0.80, SAME), _report(E, 0.80, AVX2))
    with pytest.raises(AssertionError):
        assert_same_answers(_report(E, 0.50, SAME), _report(E, 0.80, AVX2))


def test_labels_and_statuses_must_match_whatever_the_forms():
    arm = _report(E, 0.80, SAME)
    arm["answers"]["image-classification"]["answer"]["predictions"][0]["label"] = "tiger cat"
    with pytest.raises(AssertionError):
        assert_same_answers(arm, _report(E, 0.80, AVX2))
    arm = _report(E, 0.80, SAME)
    arm["answers"]["embeddings"]["status"] = 500
    with pytest.raises(AssertionError):
        assert_same_answers(arm, _report(E, 0.80, AVX2))
