"""Building a yolo-detection model from tiny Ultralytics-shaped ONNX graphs: the export copied with its
hash, the head checked (a wrong one refused naming the expected shapes), names from the graph's
metadata or a labels file, input size and head in the manifest, and `edge-mm check`."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from edge_mm.errors import ConfigError
from edge_mm.manifest import sha256_file
from edge_mm.runtime.self_check import run_check
from edge_mm.tasks.table import LOADERS, OPTIONS
from tests.yolo_models import build_yolo, yolo_onnx


@pytest.fixture(scope="module")
def built(tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("yolo")
    src = folder / "src"
    (src / "labels.txt").parent.mkdir(parents=True, exist_ok=True)
    (src / "labels.txt").write_text("worker\nforklift\npallet\n")
    models = {
        "v5": (yolo_onnx(src / "v5.onnx", "yolov5"), ""),
        "v8": (yolo_onnx(src / "v8.onnx", "yolov8"), ""),
        "v8-labels": (
            yolo_onnx(src / "bare" / "v8.onnx", "yolov8", names=None),
            'options = { labels = "../labels.txt" }',
        ),
        "v8-bare": (src / "bare", ""),  # a folder with one .onnx, no names anywhere
        "v5-half": (yolo_onnx(src / "half" / "v5.onnx", "yolov5", half=True), ""),
        "v8-dynamic": (yolo_onnx(src / "dynamic" / "v8.onnx", "yolov8", size=256, dynamic=True), ""),
    }
    return build_yolo(folder, models), models


def entry(settings, name):  # type: ignore[no-untyped-def]
    return json.loads((settings.path("runtime.artifacts_dir") / "manifest.json").read_text())["models"][name]


@pytest.mark.parametrize(("name", "head", "shape"), [("v5", "yolov5", [1, 16, 8]), ("v8", "yolov8", [1, 7, 16])])
def test_manifest_records_the_copied_export_names_input_size_and_head(built, name, head, shape):
    settings, models = built
    e = entry(settings, name)
    root = settings.path("runtime.artifacts_dir")
    assert e["task"] == "yolo-detection"
    model = e["variants"]["cpu-onnxruntime"]["files"]["model"]
    assert e["variants"]["cpu-onnxruntime"]["backend"] == "onnxruntime"
    assert model["sha256"] == sha256_file(models[name][0]) == sha256_file(root / model["path"])  # copied unchanged
    assert e["labels"] == ["person", "car", "dog"]
    assert e["preprocessing"]["input_size"] == [320, 320]
    assert e["preprocessing"]["head"] == head
    assert e["outputs"][0]["shape"] == shape
    assert e["verification"]["names_from"] == "the graph's 'names' metadata"
    assert e["files"]["reference"]["path"] == f"{name}/reference.json"


def test_labels_file_names_the_classes(built):
    settings, _ = built
    assert entry(settings, "v8-labels")["labels"] == ["worker", "forklift", "pallet"]
    assert entry(settings, "v8-bare")["labels"] == ["class_0", "class_1", "class_2"]


def test_edge_mm_check_passes(built):
    settings, _ = built
    out = io.StringIO()
    assert run_check(settings, LOADERS, out, options=OPTIONS, cuda_available=False) == 0, out.getvalue()
    for name in built[1]:
        assert f"{name}: ok" in out.getvalue()


@pytest.mark.parametrize(
    ("head", "found"),
    [(np.zeros((1, 16, 9), np.float32), r"\[1, 16, 9\]"), (np.zeros((16, 8), np.float32), r"\[16, 8\]")],
)
def test_a_wrong_head_shape_is_refused_at_build_time(tmp_path, head, found):
    path = yolo_onnx(tmp_path / "src" / "odd.onnx", head)
    with pytest.raises(ConfigError, match=r"\[1, N, 5\+C\] \(YOLOv5\) or \[1, 4\+C, N\] \(YOLOv8/11\)") as exc:
        build_yolo(tmp_path, {"odd": (path, "")})
    assert "model odd" in str(exc.value)
    assert re.search(found, str(exc.value))


def test_labels_that_do_not_fit_the_head_are_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "two.txt").write_text("a\nb\n")
    path = yolo_onnx(tmp_path / "src" / "v5.onnx", "yolov5", names=None)
    with pytest.raises(ConfigError, match="for C = 2 classes"):
        build_yolo(tmp_path, {"v5": (path, 'options = { labels = "two.txt" }')})


def test_a_folder_with_two_exports_is_refused(tmp_path):
    yolo_onnx(tmp_path / "src" / "a.onnx", "yolov5")
    yolo_onnx(tmp_path / "src" / "b.onnx", "yolov8")
    with pytest.raises(ConfigError, match="found 2"):
        build_yolo(tmp_path, {"two": (tmp_path / "src", "")})


def test_torchscript_backend_is_refused(tmp_path: Path):
    path = yolo_onnx(tmp_path / "src" / "v5.onnx", "yolov5")
    with pytest.raises(ConfigError, match="ONNX Runtime only"):
        build_yolo(tmp_path, {"v5": (path, 'artifact_backend = "torchscript"')})


def test_the_settings_example_is_valid_when_uncommented():
    import tomllib

    from edge_mm.runtime.options import serve_time
    from tests.conftest import ROOT

    text = (ROOT / "settings.toml").read_text()
    block = text[text.index('# name = "my-yolo"') :].split("\n\n")[0]
    model = tomllib.loads(re.sub(r"^# ?", "", block, flags=re.M))
    assert model["task"] == "yolo-detection"
    assert serve_time(model["name"], model["task"], model["options"], OPTIONS[model["task"]])["min_confidence"] == 0.4


def test_a_half_export_takes_float16_and_a_dynamic_one_its_imgsz(built):
    settings, _ = built
    half, dynamic = entry(settings, "v5-half"), entry(settings, "v8-dynamic")
    assert half["preprocessing"]["input_dtype"] == half["inputs"][0]["dtype"] == "float16"
    assert dynamic["preprocessing"]["input_size"] == [256, 256]  # the export's imgsz metadata
    assert entry(settings, "v8")["preprocessing"]["input_dtype"] == "float32"
