"""Build a YOLO detector: an Ultralytics ONNX export (YOLOv5 or YOLOv8/11 head), copied unchanged.

Source: the ``.onnx`` file, or a folder (``package:`` too) holding exactly one. Class names come
from ``options.labels`` (a file, one name a line; relative to the source's folder) or else from
the graph's ``names`` metadata as Ultralytics writes it. The build reads the input size from the
graph (``options.image_size`` when its sides are dynamic), runs it once, refuses an output that
is neither head's shape, and records the names, input size and head in the manifest with a probe
reference for `edge-mm check`.
"""

from __future__ import annotations

import ast
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_mm.build.manifest_entry import built_entry, file_ref, write_reference
from edge_mm.build.progress import Progress
from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, ORT_VARIANT, ModelEntry, Variant
from edge_mm.runtime.onnx_session import OnnxSession
from edge_mm.runtime.probes import png_base64, probe_pixels
from edge_mm.runtime.yolo_detector import PAD_VALUE, YoloDetector, head_layout, parse_names, read_labels

MODEL_NAME = "model.onnx"
INPUT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}  # half=True exports take float16


def onnx_file(name: str, source: Path) -> Path:
    found = sorted(source.glob("*.onnx")) if source.is_dir() else [source] * (source.suffix == ".onnx")
    if len(found) != 1:
        raise ConfigError(
            f"model {name}: yolo-detection needs one Ultralytics .onnx export (a file, or a folder with exactly one); "
            f"found {len(found)} at {source}"
        )
    return found[0]


def input_size(spec: ModelSpec, shape: list[Any], meta: dict[str, str]) -> tuple[int, int]:
    """(H, W) of a [1, 3, H, W] input; a dynamic side (``dynamic=True`` exports) takes ``options.image_size``,
    else the export's ``imgsz`` metadata, else 640."""
    if len(shape) != 4 or shape[1] not in (3, "3"):
        raise ConfigError(f"model {spec.name}: the graph's input shape {shape} is not [1, 3, H, W]")
    fallback: tuple[int, int] = (640, 640)
    if spec.options.get("image_size") is not None:
        side = int(spec.options["image_size"])
        fallback = (side, side)
    elif "imgsz" in meta:
        try:
            value = ast.literal_eval(meta["imgsz"])
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
            fallback = (value[0], value[1])
    h, w = (d if isinstance(d, int) and d > 0 else f for d, f in zip(shape[2:], fallback, strict=True))
    return h, w


def class_names(spec: ModelSpec, onnx_path: Path, meta: dict[str, str]) -> tuple[list[str] | None, str]:
    """(names, where they came from): ``options.labels`` first, then the ``names`` metadata; None for neither."""
    labels = spec.options.get("labels")
    if labels is not None:
        path = Path(str(labels)).expanduser()
        path = path if path.is_absolute() else onnx_path.parent / path
        if not path.is_file():
            raise ConfigError(f"model {spec.name}: options.labels: {path} is not a file")
        return read_labels(path), f"labels file {path.name}"
    if "names" in meta:
        return parse_names(meta["names"]), "the graph's 'names' metadata"
    return None, "none (labels read class_0, class_1, ...)"


@dataclass(frozen=True)
class _Export:
    """What the export declares and answers: input size and type, head layout and output shape, class names."""

    h: int
    w: int
    dtype: str
    head: str
    out_shape: list[int]
    classes: int
    names: list[str]
    names_from: str


def build_yolo_detector(spec: ModelSpec, source: Path, out: Path, progress: Progress) -> ModelEntry:
    t0 = time.perf_counter()
    if spec.artifact_backend == "torchscript":
        raise ConfigError(f"model {spec.name}: YOLO exports serve on ONNX Runtime only; use artifact_backend = auto")
    path = onnx_file(spec.name, source)
    shutil.copyfile(path, out / MODEL_NAME)
    session = OnnxSession(out / MODEL_NAME, 1)
    export = _inspect(spec, session, path)
    progress(
        f"{export.head} head {export.out_shape}, {export.classes} classes ({export.names_from}), "
        f"input {export.h}x{export.w}"
    )
    entry = _yolo_entry(spec, t0, session, export, out)
    detector = YoloDetector(
        spec.name, entry, session, export.names, export.h, export.w, export.head, input_dtype=export.dtype
    )
    inputs = [png_base64(probe_pixels(export.h * 3 // 4 + 7, export.w, 3))]
    outputs = [o.tolist() for o in detector.check_outputs(inputs)]
    entry.files["reference"] = write_reference(out / "reference.json", inputs, outputs)
    return entry


def _inspect(spec: ModelSpec, session: OnnxSession, path: Path) -> _Export:
    """Read the graph's input and metadata, run it once on a padded-grey frame and tell its head by the output."""
    import numpy as np

    graph = session._session  # the InferenceSession: its declared shapes and metadata
    meta = dict(graph.get_modelmeta().custom_metadata_map)
    h, w = input_size(spec, list(graph.get_inputs()[0].shape), meta)
    dtype = INPUT_TYPES.get(graph.get_inputs()[0].type)
    if dtype is None:
        raise ConfigError(f"model {spec.name}: input type {graph.get_inputs()[0].type} is not float32 or float16")
    names, names_from = class_names(spec, path, meta)
    head_out = session(np.full((1, 3, h, w), PAD_VALUE / 255, dtype))  # a padded-grey frame
    out_shape = list(np.asarray(head_out[0] if isinstance(head_out, tuple) else head_out).shape)
    try:
        head = head_layout(out_shape, len(names) if names is not None else None)
    except ConfigError as exc:
        raise ConfigError(f"model {spec.name}: {exc}") from None
    classes = out_shape[2] - 5 if head == "yolov5" else out_shape[1] - 4
    if names is None:
        names = [f"class_{i}" for i in range(classes)]
    return _Export(h, w, dtype, head, out_shape, classes, names, names_from)


def _yolo_entry(spec: ModelSpec, t0: float, session: OnnxSession, export: _Export, out: Path) -> ModelEntry:
    """The manifest entry: the export as the one ONNX Runtime variant, its input contract and head."""
    files = {"model": file_ref(out / MODEL_NAME, out)}
    return built_entry(
        spec,
        t0,
        {
            "head": export.head,
            "output_shape": export.out_shape,
            "classes": export.classes,
            "names_from": export.names_from,
            NO_CUDA_KEY: "YOLO exports serve on ONNX Runtime's CPU provider in this version",
        },
        variants={
            ORT_VARIANT: Variant(
                files=files, dtype=export.dtype, notes=["Ultralytics ONNX export, unchanged"], backend="onnxruntime"
            )
        },
        inputs=[
            {
                "name": session.input_names[0],
                "dtype": export.dtype,
                "shape": [1, 3, export.h, export.w],
                "note": "RGB / 255, letterboxed",
            }
        ],
        outputs=[{"name": session.output_names[0], "shape": export.out_shape, "head": export.head}],
        labels=export.names,
        preprocessing={
            "input_size": [export.h, export.w],
            "input_dtype": export.dtype,
            "letterbox_pad": PAD_VALUE,
            "head": export.head,
            "box_format": "cxcywh input px",
        },
        options=dict(spec.options),
        backends={
            "setting": spec.artifact_backend,
            "serves": "onnxruntime",
            "reason": "ONNX Runtime: the export as Ultralytics writes it (no TorchScript form)",
        },
    )
