"""The DeepStack response dialect: ``{success, predictions: [{label, confidence, x_min, y_min, x_max, y_max}]}``.

Boxes in integer pixels, predictions sorted by confidence (highest first) and capped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_mm.errors import Unprocessable
from edge_mm.tasks.face_pipeline import Face

MAX_PREDICTIONS = 20


def min_confidence(form: Mapping[str, Any], default: float) -> float:
    value = form.get("min_confidence", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise Unprocessable("'min_confidence' must be a number between 0 and 1")
    return float(value)


def face_predictions(faces: list[Face], threshold: float, limit: int = MAX_PREDICTIONS) -> list[dict[str, Any]]:
    preds = [
        {
            "label": "face",
            "confidence": round(f.confidence, 6),
            "x_min": int(round(f.box[0])),
            "y_min": int(round(f.box[1])),
            "x_max": int(round(f.box[2])),
            "y_max": int(round(f.box[3])),
        }
        for f in faces
        if f.confidence >= threshold
    ]
    return sorted(preds, key=lambda p: p["confidence"], reverse=True)[:limit]


def success(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"success": True, "predictions": predictions}
