"""Tensor contracts of the Open Inference Protocol (KServe v2) surface, per model kind.

Each contract names the task (from the task table) whose ``parse`` and ``run`` serve the
model kind over ``/v2/models/{name}/infer``, the BYTES input tensors and the payload fields
they fill, and how the task's JSON body becomes output tensors. No HTTP here: the protocol's
codec and routes are in ``edge_mm/api/open_inference.py``; docs/api/open-inference.md documents the contracts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size
    help: str

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Input:
    """A BYTES input tensor and the payload field it fills: ``texts`` (UTF-8 strings) or ``files``
    (encoded media: uploads when binary, base64 strings in JSON)."""

    spec: TensorSpec
    field: str
    files: bool = False
    one: bool = False  # exactly one element (a single file)


@dataclass(frozen=True)
class Contract:
    task: str  # the task's name in the task table
    inputs: tuple[Input, ...]
    outputs: tuple[TensorSpec, ...]
    to_tensors: Callable[[dict[str, Any]], Tensors]
    fixed: tuple[tuple[str, Any], ...] = ()  # payload fields the mapping relies on


def _text(field: str = "inputs", name: str = "text") -> Input:
    return Input(TensorSpec(name, "BYTES", (-1,), "UTF-8 texts, one per element"), field)


IMAGE = Input(
    TensorSpec("image", "BYTES", (-1,), "encoded images (JPEG, PNG, ...); base64 strings in JSON tensors"),
    "images",
    files=True,
)
LABELS = TensorSpec("labels", "BYTES", (-1, -1), "labels per input, best first")
SCORES = TensorSpec("scores", "FP32", (-1, -1), "the labels' scores")


def _ranked(rows: list[list[dict[str, Any]]]) -> Tensors:
    return {
        "labels": np.array([[r["label"] for r in row] for row in rows], dtype=np.object_).reshape(len(rows), -1),
        "scores": np.array([[r["score"] for r in row] for row in rows], dtype=np.float32).reshape(len(rows), -1),
    }


def _embeddings(body: dict[str, Any]) -> Tensors:
    return {"embedding": np.array([d["embedding"] for d in body["data"]], dtype=np.float32)}


def _faces(body: dict[str, Any]) -> Tensors:
    faces = [(i, f) for i, r in enumerate(body["results"]) for f in r["faces"]]
    return {
        "boxes": np.array(
            [[f["box"][k] for k in ("x_min", "y_min", "x_max", "y_max")] for _, f in faces], np.float32
        ).reshape(-1, 4),
        "confidences": np.array([f["confidence"] for _, f in faces], dtype=np.float32),
        "landmarks": np.array([list(f["landmarks"].values()) for _, f in faces], dtype=np.float32).reshape(-1, 5, 2),
        "image_index": np.array([i for i, _ in faces], dtype=np.int32),
    }


def _objects(body: dict[str, Any]) -> Tensors:
    found = [(i, o) for i, image in enumerate(body["results"]) for o in image["objects"]]
    return {
        "boxes": np.array(
            [[o["box"][k] for k in ("x_min", "y_min", "x_max", "y_max")] for _, o in found], dtype=np.float32
        ).reshape(-1, 4),
        "labels": np.array([o["label"] for _, o in found], dtype=np.object_),
        "scores": np.array([o["score"] for _, o in found], dtype=np.float32),
        "image_index": np.array([i for i, _ in found], dtype=np.int32),
    }


def _ocr(body: dict[str, Any]) -> Tensors:
    lines = [(i, line) for i, r in enumerate(body["results"]) for line in r["lines"]]
    return {
        "texts": np.array([line["text"] for _, line in lines], dtype=np.object_),
        "scores": np.array([line["score"] for _, line in lines], dtype=np.float32),
        "boxes": np.array([line["box"] for _, line in lines], dtype=np.float32).reshape(-1, 4, 2),
        "image_index": np.array([i for i, _ in lines], dtype=np.int32),
    }


def _voice(body: dict[str, Any]) -> Tensors:
    return {
        "segments": np.array([[s["start_s"], s["end_s"]] for s in body["segments"]], np.float32).reshape(-1, 2),
        "speech_ratio": np.array([body["speech_ratio"]], dtype=np.float32),
        "duration_s": np.array([body["duration_s"]], dtype=np.float32),
    }


CONTRACTS: dict[str, Contract] = {
    "embeddings": Contract(
        "embeddings",
        (_text(),),
        (TensorSpec("embedding", "FP32", (-1, -1), "L2-normalised vectors, one row per text"),),
        _embeddings,
        fixed=(("encoding_format", "float"),),
    ),
    "text-classification": Contract(
        "text-classification",
        (_text(),),
        (LABELS, SCORES),
        lambda body: _ranked([r["labels"] for r in body["results"]]),
    ),
    "token-classification": Contract(
        "token-classification",
        (_text(),),
        (TensorSpec("entities", "BYTES", (-1,), "per text, a JSON list of {label, score, start, end, text}"),),
        lambda body: {"entities": np.array([json.dumps(r["entities"]) for r in body["results"]], dtype=np.object_)},
    ),
    "image-classification": Contract(
        "image-classification", (IMAGE,), (LABELS, SCORES), lambda body: _ranked(body["results"])
    ),
    "zero-shot-image": Contract(
        "zero-shot-image-classification",
        (IMAGE, _text("labels", "candidate_labels")),
        (LABELS, SCORES),
        lambda body: _ranked(body["results"]),
    ),
    "face-detection": Contract(
        "face-detection",
        (IMAGE,),
        (
            TensorSpec("boxes", "FP32", (-1, 4), "x_min, y_min, x_max, y_max in pixels, one row per face"),
            TensorSpec("confidences", "FP32", (-1,), "per face"),
            TensorSpec("landmarks", "FP32", (-1, 5, 2), "eyes, nose, mouth corners (x, y) per face"),
            TensorSpec("image_index", "INT32", (-1,), "which input image each face is in"),
        ),
        _faces,
    ),
    **{
        kind: Contract(
            "object-detection",
            (IMAGE,),
            (
                TensorSpec("boxes", "FP32", (-1, 4), "x_min, y_min, x_max, y_max in pixels, one row per object"),
                TensorSpec("labels", "BYTES", (-1,), "per object"),
                TensorSpec("scores", "FP32", (-1,), "per object"),
                TensorSpec("image_index", "INT32", (-1,), "which input image each object is in"),
            ),
            _objects,
        )
        for kind in ("object-detection", "yolo-detection", "ssd-detection")
    },
    "ocr": Contract(
        "ocr",
        (IMAGE,),
        (
            TensorSpec("texts", "BYTES", (-1,), "one text line per element, reading order"),
            TensorSpec("scores", "FP32", (-1,), "per line: mean character probability"),
            TensorSpec("boxes", "FP32", (-1, 4, 2), "per line: four (x, y) corners in pixels, clockwise from top-left"),
            TensorSpec("image_index", "INT32", (-1,), "which input image each line is in"),
        ),
        _ocr,
    ),
    "voice-activity": Contract(
        "voice-activity",
        (
            Input(
                TensorSpec("audio", "BYTES", (1,), "one WAV file; a base64 string in JSON tensors"),
                "audio",
                files=True,
                one=True,
            ),
        ),
        (
            TensorSpec("segments", "FP32", (-1, 2), "speech start, end (s)"),
            TensorSpec("speech_ratio", "FP32", (1,), "share of the clip that is speech"),
            TensorSpec("duration_s", "FP32", (1,), "clip length (s)"),
        ),
        _voice,
    ),
}
