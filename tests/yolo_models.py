"""Tiny YOLO ONNX graphs with known boxes, in both Ultralytics head layouts, and settings that build them.

Each graph ignores its image and outputs a constant head: the boxes of :data:`BOXES` (in model input
px, for a 640x480 image letterboxed into 320x320: scale 0.5, 40 px of grey above and below), then
empty anchors. Built with the ``onnx`` helper API; no Ultralytics needed.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np

IMAGE_SIZE = (640, 480)  # (w, h) of the test image
INPUT = 320  # the graphs' square input side
NAMES = {0: "person", 1: "car", 2: "dog"}
SCALE, PAD_Y = 0.5, 40


def to_model(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Image px (x1, y1, x2, y2) -> model px (cx, cy, w, h) through the letterbox."""
    x1, y1, x2, y2 = (v * SCALE for v in box)
    y1, y2 = y1 + PAD_Y, y2 + PAD_Y
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


# (image px box, class, objectness, class score): what each anchor says.
BOXES = [
    ((100, 80, 300, 240), 0, 1.0, 0.9),  # person, kept
    ((104, 84, 304, 244), 0, 1.0, 0.8),  # the same person again: NMS removes it
    ((100, 80, 300, 240), 1, 1.0, 0.7),  # a car on the person's box: another class, kept
    ((400, 200, 600, 400), 1, 1.0, 0.6),  # car, kept
    ((0, 0, 64, 48), 2, 0.5, 0.2),  # dog at 0.1 (v5: objectness x class score): under the threshold
]
# What comes back at min_confidence 0.4: label, confidence, image px box.
EXPECTED = [("person", 0.9, (100, 80, 300, 240)), ("car", 0.7, (100, 80, 300, 240)), ("car", 0.6, (400, 200, 600, 400))]


def head_array(head: str, anchors: int = 16, classes: int = 3) -> np.ndarray:
    """(1, N, 5 + C) for ``yolov5``, (1, 4 + C, N) for ``yolov8``; anchors past :data:`BOXES` score 0."""
    rows = np.zeros((anchors, 5 + classes), np.float32)
    rows[:, 0:4] = [INPUT / 2, INPUT / 2, 10, 10]
    for i, (box, cls, obj, score) in enumerate(BOXES):
        rows[i, 0:4] = to_model(box)
        rows[i, 4] = obj
        rows[i, 5 + cls] = score
    if head == "yolov5":
        return rows[None]
    v8 = np.concatenate([rows[:, :4], rows[:, 5:] * rows[:, 4:5]], 1)  # no objectness: folded into the scores
    return v8.T[None].copy()


def yolo_onnx(
    path: Path,
    head: str | np.ndarray,
    names: dict[int, str] | None = NAMES,
    size: int = INPUT,
    *,
    half: bool = False,
    dynamic: bool = False,
) -> Path:
    """A graph ``images (1, 3, size, size) -> output0`` (a constant head), with Ultralytics' ``names`` and
    ``imgsz`` metadata; ``half``: float16 in and out (``half=True`` exports); ``dynamic``: H and W symbolic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    value = head_array(head) if isinstance(head, str) else head
    value = value.astype(np.float16 if half else np.float32)
    elem = TensorProto.FLOAT16 if half else TensorProto.FLOAT
    const = helper.make_node("Constant", [], ["head"], value=numpy_helper.from_array(value, "head_value"))
    # output0 = head + 0 * mean(images): the image flows into the graph as in a real export
    nodes = [
        const,
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node(
            "Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, value.dtype), "zero_value")
        ),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["head", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolo",
        [helper.make_tensor_value_info("images", elem, [1, 3, "height", "width"] if dynamic else [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", elem, list(value.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names is not None:
        model.metadata_props.add(key="names", value=str(names))
        model.metadata_props.add(key="imgsz", value=str([size, size]))
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def yolo_settings_toml(artifacts: Path, models: dict[str, tuple[Path, str]]) -> str:
    """settings.toml serving ``models``: name -> (source, extra TOML lines for its block)."""
    text = f'[runtime]\nartifacts_dir = "{artifacts}"\n'
    for name, (source, extra) in models.items():
        text += textwrap.dedent(
            f"""
            [[models]]
            name = "{name}"
            task = "yolo-detection"
            source = "{source}"
            """
        )
        text += extra + "\n"
    return text


def build_yolo(folder: Path, models: dict[str, tuple[Path, str]]):  # type: ignore[no-untyped-def]
    """Build ``models`` into ``folder``/artifacts; the loaded settings."""
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    path = folder / "settings.toml"
    path.write_text(yolo_settings_toml(folder / "artifacts", models))
    settings = load_settings(path, env={})
    build_all(settings, out=io.StringIO())
    return settings


def test_image() -> bytes:
    """A 640x480 PNG (what the graphs ignore, but the server decodes and letterboxes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", IMAGE_SIZE, (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


test_image.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
