"""A server whose every model runs on ONNX Runtime never imports torch (what the lite bundle relies on).

The server runs in a subprocess where importing torch raises ImportError, so any torch import on the
serving path (start-up, warm-up, every route its models serve, /info) fails the test; its answers must
equal those of the same artifacts served in this process (which has torch).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_VARIANT
from edge_mm.runtime.probes import png_base64, probe_pixels
from tests.conftest import served_cpu_variant, test_client, warm_registry
from tests.serving import ROOT, request, running_server

BLOCK_TORCH = """\
import sys


class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"{name} imported by a server whose models all run on ONNX Runtime")
        return None


sys.meta_path.insert(0, BlockTorch())
from edge_mm.cli import main

sys.exit(main(sys.argv[1:]))
"""

TEXTS = ["the man plays guitar in paris", "a café in 東京"]
IMAGES = [png_base64(probe_pixels(60, 80, seed)) for seed in (1, 2)]
CALLS = [
    ("/v1/embeddings", {"input": TEXTS}),
    ("/v1/zero-shot-classification", {"inputs": TEXTS, "labels": ["music", "food", "travel"]}),
    ("/v1/image-classification", {"images": IMAGES, "top_k": 3}),
    ("/v1/image-embeddings", {"images": IMAGES}),
]


@pytest.fixture(scope="module")
def ort_only_config(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT embeddings model and a tiny ViT, both built for and served by ONNX Runtime."""
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings
    from tests.vision_fixtures import make_vit_classifier

    root = tmp_path_factory.mktemp("ort-only")
    vit = make_vit_classifier(root / "vit")
    path = root / "settings.toml"
    path.write_text(
        textwrap.dedent(f"""
        [runtime]
        artifacts_dir = "{root / "artifacts"}"
        [[models]]
        name = "tiny-embed"
        task = "embeddings"
        source = "{tiny_checkpoints / "bert-embeddings"}"
        max_length = 32
        artifact_backend = "onnxruntime"
        [[models]]
        name = "tiny-vit"
        task = "image-classification"
        source = "{vit}"
        quantization = "none"
        artifact_backend = "onnxruntime"
        """)
    )
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


def test_video_is_served_only_where_pyav_is_installed(monkeypatch):
    from edge_mm.tasks import embeddings, table, video

    assert table.decodable(video.TASK)  # this environment has PyAV
    assert video.TASK in table.TASKS
    monkeypatch.setattr(table.importlib.util, "find_spec", lambda name: None)  # as in the lite bundle
    assert not table.decodable(video.TASK)
    assert table.decodable(embeddings.TASK)  # JSON-only tasks need no decoder


def test_table_and_api_import_no_torch():
    code = "import sys, edge_mm.server, edge_mm.tasks.table, edge_mm.api; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_an_onnx_runtime_server_never_imports_torch(ort_only_config: Path, tmp_path: Path):
    from edge_mm.config import load_settings

    settings = load_settings(ort_only_config, env={})
    registry = warm_registry(settings)
    for name, served in registry.models.items():  # the ONNX Runtime int8 form for this CPU's kernels
        assert served.variant == served_cpu_variant(settings, name)
        assert served.variant in (ORT_VARIANT, ORT_7BIT_VARIANT)
    here = test_client(settings, registry)
    wrapper = tmp_path / "serve_without_torch.py"
    wrapper.write_text(BLOCK_TORCH)
    this_checkout = ("PYTHONPATH", str(ROOT))  # the wrapper runs from tmp_path: import this checkout's edge_mm
    with running_server(ort_only_config, this_checkout, cmd=[sys.executable, str(wrapper)]) as base:
        status, _, info = request(base + "/info")
        assert status == 200
        assert info["torch_version"] is None
        assert info["onnxruntime_version"]
        assert {m["backend"] for m in info["models"].values()} == {"onnxruntime"}
        for route, body in CALLS:
            status, headers, answer = request(base + route, body)
            assert status == 200, (route, answer)
            want = here.post(route, json=body)
            assert want.status_code == 200
            assert json.dumps(answer, sort_keys=True) == json.dumps(want.get_json(), sort_keys=True), route
        status, _, answer = request(base + "/v1/text-classification", {"inputs": ["x"]})
        assert status == 404  # the route exists; no model serves it here


# --- silero VAD and ConSE on ONNX Runtime (issue 11) ----------------------------------------------

TINY_LABELS = ["cat", "cup", "camera"]  # tiny-vit's classes; ConSE embeds these names


@pytest.fixture(scope="module")
def ort_vad_conse_config(
    ort_only_config: Path, tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """ort_only_config's two models plus silero VAD (the shipped ONNX) and ConSE over them, all on ONNX Runtime.

    Same artifacts folder: the build reuses the two built models (unchanged content hash) and adds the others.
    """
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings
    from tests.conftest import PACKAGES, need

    need((PACKAGES / "silero_vad").is_dir(), "silero-vad package not installed: run `make models`")
    path = tmp_path_factory.mktemp("ort-vad-conse") / "settings.toml"
    path.write_text(
        ort_only_config.read_text()
        + textwrap.dedent(f"""
        [build]
        packages_dir = "{PACKAGES}"
        [[models]]
        name = "vad"
        task = "voice-activity"
        source = "package:silero_vad/data/silero_vad.jit"
        artifact_backend = "onnxruntime"
        [[models]]
        name = "tiny-conse"
        task = "zero-shot-image"
        source = "{tiny_checkpoints / "bert-embeddings"}"
        max_length = 32
        options = {{ classifier = "tiny-vit", text_model = "tiny-embed", class_names = {TINY_LABELS}, top_t = 2 }}
        """)
    )
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


MTCNN_DATA = ROOT / "build" / "models" / "facenet_pytorch" / "data"


@pytest.fixture(scope="module")
def ort_mtcnn_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MTCNN (the shipped facenet-pytorch weights) built for and served by ONNX Runtime."""
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings
    from tests.conftest import need

    need(
        (MTCNN_DATA / "onet.pt").is_file(), f"MTCNN weights not in {MTCNN_DATA} (pip install --no-deps facenet-pytorch)"
    )
    root = tmp_path_factory.mktemp("ort-mtcnn")
    path = root / "settings.toml"
    path.write_text(
        textwrap.dedent(f"""
        [runtime]
        artifacts_dir = "{root / "artifacts"}"
        [[models]]
        name = "mtcnn"
        task = "face-detection"
        source = "{MTCNN_DATA}"
        artifact_backend = "onnxruntime"
        """)
    )
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


def test_vad_and_conse_on_onnx_runtime_never_import_torch(ort_vad_conse_config: Path, tmp_path: Path):
    from edge_mm.config import load_settings
    from tests.conftest import SPEECH_WAV

    settings = load_settings(ort_vad_conse_config, env={})
    registry = warm_registry(settings)
    assert registry.models["vad"].variant == ORT_VARIANT
    assert registry.models["tiny-conse"].variant == ORT_VARIANT
    here = test_client(settings, registry)
    wav = base64.b64encode(SPEECH_WAV.read_bytes()).decode()
    calls = [
        ("/v1/voice-activity", {"audio": wav}),
        ("/v1/voice-activity", {"audio": wav, "threshold": 0.3, "speech_pad_ms": 0}),
        ("/v1/zero-shot-image-classification", {"images": IMAGES, "labels": ["a cat", "a cup", "a dog"]}),
    ]
    wrapper = tmp_path / "serve_without_torch.py"
    wrapper.write_text(BLOCK_TORCH)
    # PYTHONPATH: the wrapper's folder, not the checkout, heads sys.path; this checkout's edge_mm must serve.
    with running_server(ort_vad_conse_config, ("PYTHONPATH", str(ROOT)), cmd=[sys.executable, str(wrapper)]) as base:
        status, _, info = request(base + "/info")
        assert status == 200
        assert info["torch_version"] is None
        assert {m["backend"] for m in info["models"].values()} == {"onnxruntime"}
        for route, body in calls:
            status, _, answer = request(base + route, body)
            assert status == 200, (route, answer)
            want = here.post(route, json=body)
            assert want.status_code == 200
            assert json.dumps(answer, sort_keys=True) == json.dumps(want.get_json(), sort_keys=True), route
        status, _, answer = request(base + "/v1/voice-activity", {"audio": wav})
        assert answer["segments"], "the spoken sentence has speech"


def _face_photo() -> str:
    """A photo with one face (the build's sample, 640x480) as base64 PNG."""
    from PIL import Image

    with Image.open(ROOT / "edge_mm" / "build" / "data" / "sample_astronaut.jpg") as image:
        pixels = np.asarray(image.convert("RGB").resize((640, 480)))
    return png_base64(pixels)


def test_an_onnx_runtime_mtcnn_never_imports_torch(ort_mtcnn_config: Path, tmp_path: Path):
    """Serving (start-up, warm-up, face detection, /info) and `edge-mm check` with torch blocked."""
    from edge_mm.config import load_settings

    settings = load_settings(ort_mtcnn_config, env={})
    registry = warm_registry(settings)
    assert registry.models["mtcnn"].variant == ORT_VARIANT
    here = test_client(settings, registry)
    wrapper = tmp_path / "serve_without_torch.py"
    wrapper.write_text(BLOCK_TORCH)
    body = {"images": [_face_photo(), IMAGES[0]]}
    this_checkout = ("PYTHONPATH", str(ROOT))  # the wrapper runs from tmp_path: import this checkout's edge_mm
    with running_server(ort_mtcnn_config, this_checkout, cmd=[sys.executable, str(wrapper)]) as base:
        status, _, info = request(base + "/info")
        assert status == 200
        assert info["torch_version"] is None
        assert info["models"]["mtcnn"]["backend"] == "onnxruntime"
        status, _, answer = request(base + "/v1/face-detection", body)
        assert status == 200, answer
        assert [len(r["faces"]) for r in answer["results"]] == [1, 0]
        want = here.post("/v1/face-detection", json=body)
        assert want.status_code == 200
        assert json.dumps(answer, sort_keys=True) == json.dumps(want.get_json(), sort_keys=True)
    check = subprocess.run(
        [sys.executable, str(wrapper), "--config", str(ort_mtcnn_config), "check"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "mtcnn: ok on cpu" in check.stdout


FACE_MODELS = ROOT / "build" / "models" / "face_recognition_models" / "models"


def test_face_recognition_on_dlib_never_imports_torch(ort_mtcnn_config: Path, tmp_path: Path):
    """The default face recognition (dlib's own files, backend "dlib") beside MTCNN on ONNX Runtime:
    register and recognize with torch blocked, as the lite bundle serves them."""
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings
    from tests.conftest import need

    need(FACE_MODELS.is_dir(), f"dlib's face models not in {FACE_MODELS}: run `make models`")
    config = tmp_path / "settings.toml"
    config.write_text(
        ort_mtcnn_config.read_text().replace(
            'artifacts_dir = "', f'faces_db = "{tmp_path / "faces.db"}"\nartifacts_dir = "', 1
        )
        + textwrap.dedent(f"""
        [[models]]
        name = "faces"
        task = "face-recognition"
        source = "{FACE_MODELS}"
        options = {{ detector = "mtcnn" }}
        """)
    )
    settings = load_settings(config, env={})
    build_all(settings, only=["faces"], out=io.StringIO())
    assert settings.models[1].name == "faces"
    wrapper = tmp_path / "serve_without_torch.py"
    wrapper.write_text(BLOCK_TORCH)
    face = _face_photo()
    with running_server(config, ("PYTHONPATH", str(ROOT)), cmd=[sys.executable, str(wrapper)]) as base:
        status, _, info = request(base + "/info")
        assert status == 200
        assert info["torch_version"] is None
        assert info["models"]["faces"]["backend"] == "dlib"
        status, _, answer = request(base + "/v1/faces/register", {"userid": "eileen", "image": face})
        assert (status, answer["registered"]) == (200, 1), answer
        status, _, answer = request(base + "/v1/faces/recognize", {"image": face})
        assert [f["userid"] for f in answer["results"][0]["faces"]] == ["eileen"], answer
