"""A stream with face recognition: the astronaut registered from scikit-image's photo is named in the
events of the committed clip (where she is smaller and slides across); without a registration the
face stays unnamed."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_mm.streams.manager import StreamManager
from edge_mm.tasks import face_detection
from tests.conftest import PACKAGES, need
from tests.streams.conftest import clip_stream, mtcnn_settings_text, wait_for
from tests.vision_fixtures import photos  # noqa: F401 (a fixture)

RECOGNITION = """
[[models]]
name = "faces"
task = "face-recognition"
source = "package:face_recognition_models/models"
options = { detector = "mtcnn", threshold = 0.6 }
"""


@pytest.fixture(scope="module")
def recognition(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    need((PACKAGES / "face_recognition_models").is_dir(), "face_recognition_models not installed: run `make models`")
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings
    from tests.conftest import warm_registry

    folder = tmp_path_factory.mktemp("recognition")
    path = folder / "settings.toml"
    text = mtcnn_settings_text(folder, artifacts="recognition")
    head, events = text.split("\n[events]\n")
    path.write_text(head + RECOGNITION + "\n[events]\n" + events)
    settings = load_settings(path, env={})
    build_all(settings, out=io.StringIO())
    return settings, warm_registry(settings)


def _register(registry, photo: Path) -> None:  # type: ignore[no-untyped-def]
    image = Image.open(photo).convert("RGB")
    mtcnn = registry.models["mtcnn"]
    (face,) = face_detection.detect(mtcnn.runner, image, face_detection.parse_options({}, mtcnn.options))
    recognizer = registry.models["faces"].runner
    (descriptor,) = recognizer.descriptors(np.asarray(image), [face.box])
    recognizer.store.add("astronaut", [descriptor])


def _events_of_first_face(manager: StreamManager):  # type: ignore[no-untyped-def]
    listener = manager.hub.listen("cam")
    assert listener is not None
    seen: list[dict] = []

    def ended() -> bool:
        while not listener.queue.empty():
            seen.append(listener.queue.get_nowait())
        return any(e["type"] == "end" for e in seen)

    wait_for(ended, 40, "the face to come and go")
    first = next(e["id"] for e in seen if e["type"] == "start")
    return [e for e in seen if e["id"] == first]


def test_a_registered_face_is_named_in_the_events(recognition, photos, tmp_path):  # noqa: F811
    settings, registry = recognition
    recognizer = registry.models["faces"].runner
    for user in recognizer.store.users():
        recognizer.store.delete(user)
    manager = StreamManager(settings.replace(events__snapshot_dir=str(tmp_path / "s")), registry)
    manager.start()
    try:
        manager.add(clip_stream(tasks=["face-recognition"]))
        unnamed = _events_of_first_face(manager)
        assert {e["userid"] for e in unnamed} == {None}
        _register(registry, photos / "astronaut.png")
        manager.remove("cam")
        manager.add(clip_stream(tasks=["face-recognition"]))
        named = _events_of_first_face(manager)
        assert named[0]["label"] == "face"
        assert named[-1]["type"] == "end"
        assert named[-1]["userid"] == "astronaut"
    finally:
        manager.stop(5)
        for user in recognizer.store.users():
            recognizer.store.delete(user)
