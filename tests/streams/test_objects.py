"""Object detection on a stream, with a tiny YOLO graph whose boxes are known (tests/yolo_models.py:
a person at (100, 80, 300, 240), two cars): the label filter, zones (the box's bottom centre) and the
minimum area decide which objects make events; stopping the stream ends the open ones."""

from __future__ import annotations

import pytest

from tests.streams.conftest import stream_events
from tests.yolo_models import IMAGE_SIZE, build_yolo, yolo_onnx


@pytest.fixture(scope="module")
def yolo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.conftest import warm_registry

    folder = tmp_path_factory.mktemp("yolo-stream")
    settings = build_yolo(folder, {"tiny-yolo": (yolo_onnx(folder / "v8.onnx", "yolov8"), "")})
    return settings, warm_registry(settings)


@pytest.fixture(scope="module")
def plain_clip(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Two seconds of a plain 640x480 frame (the graph ignores the pixels)."""
    import av
    import numpy as np

    path = tmp_path_factory.mktemp("clip") / "plain.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = *IMAGE_SIZE, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.full((IMAGE_SIZE[1], IMAGE_SIZE[0], 3), 90, np.uint8), format="rgb24")
        for _ in range(20):
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _events(settings, registry, spec):  # type: ignore[no-untyped-def]
    return stream_events(settings, registry, {"tasks": ["object-detection"], **spec}, frames=6, timeout_s=30)


def test_label_filter_and_zone(yolo, plain_clip):
    settings, registry = yolo
    door = {"name": "door", "points": [[150, 200], [250, 200], [250, 260], [150, 260]]}  # holds (200, 240)
    events = _events(settings, registry, {"id": "yard", "url": str(plain_clip), "labels": ["person"], "zones": [door]})
    assert [(e["type"], e["label"], e["zone"]) for e in events] == [
        ("start", "person", "door"),
        ("end", "person", "door"),
    ]
    assert events[0]["box"] == {"x_min": 100.0, "y_min": 80.0, "x_max": 300.0, "y_max": 240.0}
    assert events[0]["score"] == pytest.approx(0.9, abs=1e-3)


def test_zones_and_min_area_leave_objects_out(yolo, plain_clip):
    settings, registry = yolo
    far = {"name": "far", "points": [[0, 0], [50, 0], [50, 50], [0, 50]]}
    assert _events(settings, registry, {"id": "a", "url": str(plain_clip), "zones": [far]}) == []
    cars_only = _events(settings, registry, {"id": "b", "url": str(plain_clip), "labels": ["car"], "min_area": 35000})
    # the cars are 200x160 = 32000 px^2 and 200x200 = 40000 px^2: only the second is big enough
    assert {(e["type"], e["box"]["x_min"]) for e in cars_only} == {("start", 400.0), ("end", 400.0)}
