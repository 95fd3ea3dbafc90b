"""Vision routes over HTTP: multipart, base64 JSON and raw uploads, headers, model selection, and the
DeepStack dialect with the real `deepstack-python` client against a running server."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import need_import
from tests.serving import ROOT, running_server
from tests.vision_fixtures import *  # noqa: F403

pytestmark = pytest.mark.real_models


def upload(client, route, path, field="image", **form):
    data = {field: (io.BytesIO(path.read_bytes()), path.name), **form}
    return client.post(route, data=data, content_type="multipart/form-data")


def test_classification_three_ways_agree(vision_client, photos):
    raw = (photos / "coffee.png").read_bytes()
    a = upload(vision_client, "/v1/image-classification", photos / "coffee.png", top_k="2")
    b = vision_client.post("/v1/image-classification", json={"image": base64.b64encode(raw).decode(), "top_k": 2})
    c = vision_client.post("/v1/image-classification?top_k=2", data=raw, content_type="image/png")
    for r in (a, b, c):
        assert r.status_code == 200, r.get_json()
        assert r.headers["X-Edge-Device"] == "cpu"
        assert r.headers["X-Edge-Model"] == "efficientnet"
        assert float(r.headers["X-Inference-Time-Ms"]) > 0
    assert a.get_json() == b.get_json() == c.get_json()
    assert a.get_json()["results"][0][0]["label"] == "espresso"
    assert len(a.get_json()["results"][0]) == 2


def test_several_images_in_one_request(vision_client, photos):
    images = [base64.b64encode((photos / n).read_bytes()).decode() for n in ("chelsea.png", "camera.png")]
    body = vision_client.post("/v1/image-classification", json={"images": images, "top_k": 3}).get_json()
    assert len(body["results"]) == 2
    assert "tripod" in [r["label"] for r in body["results"][1]]
    body = vision_client.post("/v1/image-embeddings", json={"images": images}).get_json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["dim"] == 1280


def test_face_detection_route(vision_client, photos):
    body = upload(vision_client, "/v1/face-detection", photos / "astronaut.png", min_face_size="40").get_json()
    (face,) = body["results"][0]["faces"]
    assert set(face) == {"box", "confidence", "landmarks"}
    assert len(face["landmarks"]) == 5
    assert upload(vision_client, "/v1/face-detection", photos / "astronaut.png", threshold="1.5").status_code == 422


def test_models_list_shows_vision_routes(vision_client):
    models = {m["name"]: m for m in vision_client.get("/v1/models").get_json()["models"]}
    assert "image-embeddings" in models["efficientnet"]["routes"]
    assert "vision/scene" in models["efficientnet"]["routes"]
    assert models["mtcnn"]["routes"] == ["face-detection", "video", "vision/face"]
    assert models["conse"]["routes"] == ["zero-shot-image-classification"]


def test_wrong_task_model_is_404(vision_client, photos):
    r = upload(vision_client, "/v1/image-classification", photos / "coffee.png", model="mtcnn")
    assert r.status_code == 404
    assert r.get_json()["error"]["code"] == "not_found"


def test_deepstack_routes_in_process(vision_client, photos):
    r = upload(vision_client, "/v1/vision/scene", photos / "camera.png")
    assert r.get_json() == {"success": True, "label": "tripod", "confidence": pytest.approx(0.94, abs=0.02)}
    r = upload(vision_client, "/v1/vision/face", photos / "astronaut.png", min_confidence="0.5")
    (pred,) = r.get_json()["predictions"]
    assert pred["label"] == "face"
    assert all(isinstance(pred[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
    r = upload(vision_client, "/v1/vision/detection", photos / "coffee.png", min_confidence="0.5")
    assert r.status_code == 200  # the default COCO SSD
    labels = {p["label"] for p in r.get_json()["predictions"]}
    assert "cup" in labels, labels
    r = vision_client.post("/v1/vision/face", data={"nope": "x"}, content_type="multipart/form-data")
    assert r.status_code == 400
    assert r.get_json()["success"] is False
    r = upload(vision_client, "/v1/vision/face", photos / "astronaut.png", min_confidence="7")
    assert r.status_code == 400


def test_deepstack_python_client_against_a_running_server(vision_config, photos):
    ds = need_import("deepstack.core", "deepstack-python is the client under test")
    with running_server(vision_config, ("EDGE_MM_SERVER_API_KEYS", "s3cret")) as base:
        u = urlsplit(base)
        face = ds.DeepstackFace(ip=u.hostname, port=u.port, api_key="s3cret", timeout=60, min_confidence=0.5)
        preds = face.detect((photos / "astronaut.png").read_bytes())
        assert len(preds) == 1
        assert preds[0]["confidence"] > 0.99
        assert ds.get_objects(preds) == ["face"]
        assert face.detect((photos / "chelsea.png").read_bytes()) == []
        scene = ds.DeepstackScene(ip=u.hostname, port=u.port, api_key="s3cret", timeout=60)
        assert scene.recognize((photos / "coffee.png").read_bytes())["label"] == "espresso"
        objects = ds.DeepstackObject(ip=u.hostname, port=u.port, api_key="s3cret", timeout=60, min_confidence=0.5)
        assert "cup" in ds.get_objects(objects.detect((photos / "coffee.png").read_bytes()))
        assert "cat" in ds.get_objects(objects.detect((photos / "chelsea.png").read_bytes()))
        wrong = ds.DeepstackFace(ip=u.hostname, port=u.port, api_key="wrong", timeout=60)
        with pytest.raises(ds.DeepstackException, match="401"):
            wrong.detect((photos / "astronaut.png").read_bytes())


def test_vision_runtime_never_imports_build_only_packages(vision_config, photos):
    code = f"""
import sys, io
from edge_mm.config import load_settings
from edge_mm.runtime.registry import load_registry
from edge_mm.tasks.table import LOADERS, OPTIONS
from edge_mm.api import create_app
s = load_settings({str(vision_config)!r}, env={{}})
reg = load_registry(s, LOADERS, options=OPTIONS); reg.warm_all()
c = create_app(s, reg).test_client()
img = open({str(photos / "astronaut.png")!r}, 'rb').read()
for route in ('/v1/image-classification', '/v1/face-detection', '/v1/vision/face', '/v1/vision/scene'):
    assert c.post(route, data={{'image': (io.BytesIO(img), 'a.png')}}, content_type='multipart/form-data').status_code == 200, route
r = c.post('/v1/zero-shot-image-classification', data={{'image': (io.BytesIO(img), 'a.png'), 'labels': 'x'}}, content_type='multipart/form-data')
assert r.status_code == 200
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'torchvision', 'huggingface_hub', 'skimage') or m.startswith('edge_mm.build'))
print('BAD', bad)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout


def test_deepstack_detection_without_a_detector_is_501(client):
    """Settings with no detector (the tiny text models): DeepStack's detection route says so with 501."""
    r = upload(
        client, "/v1/vision/detection", Path(__file__).parents[2] / "edge_mm" / "build" / "data" / "sample_cat.jpg"
    )
    assert r.status_code == 501
    assert r.get_json()["success"] is False
    assert "object detection" in r.get_json()["error"]
