"""A stand-in for a converted TF Object Detection API graph: ``image_tensor:0`` uint8 (1, H, W, 3) -> the four
``detection_*`` outputs, constant (the boxes of :data:`ROWS`), built with the ``onnx`` helper API; and a
build of it with the TensorFlow env replaced (no TensorFlow needed)."""

from __future__ import annotations

import io
import shutil
import textwrap
from pathlib import Path

import numpy as np

IMAGE_SIZE = (640, 480)  # (w, h) of the test image
# (relative ymin, xmin, ymax, xmax, score, COCO id) as the graph answers, best first
ROWS = [
    (80 / 480, 100 / 640, 240 / 480, 300 / 640, 0.9, 1),  # person at (100, 80, 300, 240) px
    (0.5, 0.5, 1.05, 1.0, 0.6, 17),  # cat at (320, 240, 640, 480) px: ymax past the edge, clipped
    (0.0, 0.0, 0.1, 0.1, 0.5, 12),  # id 12: a gap in COCO's ids
    (0.2, 0.2, 0.4, 0.4, 0.2, 18),  # dog under the threshold
    (0.0, 0.0, 1.0, 1.0, 0.95, 1),  # past num_detections: never answered
]
NUM_DETECTIONS = 4
# What comes back at min_confidence 0.4: label, confidence, image px box.
EXPECTED = [("person", 0.9, (100, 80, 300, 240)), ("cat", 0.6, (320, 240, 640, 480)), ("class_12", 0.5, (0, 0, 64, 48))]


def outputs(n: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (1, n, 4), scores (1, n), classes (1, n) float, num_detections (1,)) as the TF graph answers."""
    boxes, scores, classes = np.zeros((1, n, 4), np.float32), np.zeros((1, n), np.float32), np.ones((1, n), np.float32)
    for i, (*box, score, cls) in enumerate(ROWS):
        boxes[0, i], scores[0, i], classes[0, i] = box, score, cls
    return boxes, scores, classes, np.array([NUM_DETECTIONS], np.float32)


def ssd_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = ("detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0")
    nodes = [
        helper.make_node("Cast", ["image_tensor:0"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["mean"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.float32), "z")),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),  # the image flows into the graph, adding 0
    ]
    for name, value in zip(names, outputs(), strict=True):
        nodes.append(helper.make_node("Constant", [], [f"{name}_c"], value=numpy_helper.from_array(value, name)))
        nodes.append(helper.make_node("Add", [f"{name}_c", "nothing"], [name]))
    graph = helper.make_graph(
        nodes,
        "tiny_ssd",
        [helper.make_tensor_value_info("image_tensor:0", TensorProto.UINT8, ["n", "h", "w", 3])],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, list(v.shape))
            for n, v in zip(names, outputs(), strict=True)
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def fake_tf_env(monkeypatch, stand_in: Path) -> None:  # type: ignore[no-untyped-def]
    """Replace the TF env: no venv, "conversion" copies ``stand_in``, the "TensorFlow" reference runs it in
    ONNX Runtime (so the build's comparison and recording are exercised, not TensorFlow)."""
    from edge_mm.build import tf_env
    from edge_mm.runtime.onnx_session import OnnxSession

    def convert(python, graph, onnx_out, inputs, outputs, opset, progress):  # type: ignore[no-untyped-def]
        shutil.copyfile(stand_in, onnx_out)

    def reference(python, graph, input_name, output_names, images, progress):  # type: ignore[no-untyped-def]
        session = OnnxSession(stand_in, 1)
        return [dict(zip(output_names, session(im), strict=True)) for im in images]

    monkeypatch.setenv("EDGE_MM_TF_CACHE", "0")  # stand-ins stay out of the user's conversion cache
    monkeypatch.setattr(tf_env, "ensure_env", lambda progress: Path("no-tf-env/bin/python"))
    monkeypatch.setattr(tf_env, "convert_graphdef", convert)
    monkeypatch.setattr(tf_env, "run_frozen_graph", reference)


def build_ssd(folder: Path, source: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    """Build one ``ssd-detection`` model named ``coco`` from ``source`` into ``folder``/artifacts; the settings."""
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    path = folder / "settings.toml"
    path.write_text(
        f'[runtime]\nartifacts_dir = "{folder / "artifacts"}"\n'
        + textwrap.dedent(
            f"""
            [[models]]
            name = "coco"
            task = "ssd-detection"
            source = "{source}"
            """
        )
        + extra
        + "\n"
    )
    settings = load_settings(path, env={})
    build_all(settings, out=io.StringIO())
    return settings


def test_image() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", IMAGE_SIZE, (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


test_image.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
