"""Building the OCR model from rapidocr's package folder: the graphs copied with their hashes, the
dictionary taken from the rec graph's metadata, the sample read, `edge-mm check`, and bad sources."""

from __future__ import annotations

import io
import json

import pytest

from edge_mm.build.all_models import build_all
from edge_mm.build.ocr import DET_NAME, REC_NAME, SAMPLE_LINES
from edge_mm.config import load_settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import read_manifest, sha256_file
from edge_mm.runtime.self_check import run_check
from edge_mm.tasks.table import LOADERS, OPTIONS
from tests.conftest import need
from tests.ocr_fixtures import *  # noqa: F403
from tests.ocr_fixtures import RAPIDOCR_MODELS, ocr_settings_toml


def test_manifest_records_the_copied_graphs_and_dictionary(ocr_settings):
    root = ocr_settings.path("runtime.artifacts_dir")
    entry = json.loads((root / "manifest.json").read_text())["models"]["ppocr"]
    assert entry["task"] == "ocr"
    files = entry["variants"]["cpu-onnxruntime"]["files"]
    assert entry["variants"]["cpu-onnxruntime"]["backend"] == "onnxruntime"
    assert set(files) == {"det", "rec", "characters"}
    for key, name in (("det", DET_NAME), ("rec", REC_NAME)):
        assert files[key]["sha256"] == sha256_file(RAPIDOCR_MODELS / name)  # copied unchanged
        assert sha256_file(root / files[key]["path"]) == files[key]["sha256"]
    chars = (root / files["characters"]["path"]).read_text(encoding="utf-8").removesuffix("\n").split("\n")
    assert chars[:3] == ["!", '"', "#"]  # printable ASCII first, then the CJK and other scripts
    assert {"K", "A", "-", "4", "7", "2", "1"} <= set(chars)
    assert entry["verification"]["sample_lines"] == list(SAMPLE_LINES)
    assert entry["verification"]["classes"] == len(chars) + 2 == 18710  # + the CTC blank and the space
    assert entry["files"]["reference"]["path"] == "ppocr/reference.json"
    # served on ONNX Runtime: the registry never imports torch for it (the lite bundle has none)
    assert read_manifest(root).models["ppocr"].cpu_backend == "onnxruntime"


def test_edge_mm_check_passes(ocr_settings):
    out = io.StringIO()
    assert run_check(ocr_settings, LOADERS, out, options=OPTIONS, cuda_available=False) == 0, out.getvalue()
    assert "ppocr: ok" in out.getvalue()


def test_a_source_without_the_graphs_is_a_config_error(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text(ocr_settings_toml(tmp_path / "artifacts").replace("package:rapidocr/models", str(tmp_path)))
    with pytest.raises(ConfigError, match="PP-OCRv6_det_small.onnx not found"):
        build_all(load_settings(path, env={}), out=io.StringIO())


def test_torchscript_backend_is_refused(tmp_path):
    need((RAPIDOCR_MODELS / DET_NAME).is_file(), "rapidocr not in build/models: run `make models`")
    path = tmp_path / "settings.toml"
    path.write_text(ocr_settings_toml(tmp_path / "artifacts", 'artifact_backend = "torchscript"'))
    with pytest.raises(ConfigError, match="ONNX graphs only"):
        build_all(load_settings(path, env={}), out=io.StringIO())
