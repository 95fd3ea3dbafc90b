"""Work stops at the next step boundary once the request's deadline has passed, and media are decoded
inside the model's admission slot (so the queue and concurrency limits bound decoded memory too)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from edge_mm.errors import DeadlineExceeded
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.silero_vad import SegmentRules
from tests.vision_fixtures import *  # noqa: F403

pytestmark = pytest.mark.real_models


def expired() -> Deadline:
    return Deadline(time.monotonic() - 0.001, 0.5)


def test_face_detection_stops_between_pyramid_levels(vision_registry, photos):
    detector = vision_registry.models["mtcnn"].runner
    image = Image.open(photos / "astronaut.png").convert("RGB")
    with pytest.raises(DeadlineExceeded, match="face detection"):
        detector.detect(image, min_face_size=20, thresholds=(0.6, 0.7, 0.7), max_side=1280, deadline=expired())


def test_voice_activity_stops_between_windows(vision_registry):
    vad = vision_registry.models["silero-vad"].runner
    samples = np.zeros(16_000 * 60, np.float32)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="voice activity"):
        vad.segments(samples, SegmentRules(), deadline=expired())
    assert time.monotonic() - t0 < 1.0  # no window ran: a minute of audio takes seconds


def test_video_decoding_stops_between_frames(videos):
    from edge_mm.media.video import Sampling, decode_video

    deadline = expired()
    with pytest.raises(DeadlineExceeded, match="video decoding"):
        decode_video(
            (videos / "bigbuckbunny.mp4").read_bytes(),
            sampling=Sampling(1.0, None, 8),
            max_bytes=50_000_000,
            max_seconds=600,
            max_pixels=40_000_000,
            check=lambda: deadline.check("video decoding"),
        )


def test_request_past_its_deadline_gets_504_with_the_one_body(vision_settings, vision_registry, photos):
    from tests.conftest import test_client

    client = test_client(vision_settings.replace(runtime__request_timeout_s=0.1), vision_registry)
    big = Image.open(photos / "astronaut.png").convert("RGB").resize((1280, 1280))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    data = {"image": (io.BytesIO(buf.getvalue()), "big.png"), "min_face_size": "8"}
    t0 = time.monotonic()
    r = client.post("/v1/face-detection", data=data, content_type="multipart/form-data")
    assert r.status_code == 504, r.get_json()
    assert r.get_json()["error"]["code"] == "deadline_exceeded"
    assert time.monotonic() - t0 < 3.0


def test_images_are_decoded_inside_the_model_slot(vision_client, vision_registry, photos, monkeypatch):
    import edge_mm.tasks.payload as payload

    admission = vision_registry.models["efficientnet"].admission
    running_at_decode = []
    real = payload.load_rgb

    def spy(*args, **kwargs):
        running_at_decode.append(admission.stats()["running"])
        return real(*args, **kwargs)

    monkeypatch.setattr(payload, "load_rgb", spy)
    data = {"image": (io.BytesIO((photos / "coffee.png").read_bytes()), "c.png")}
    r = vision_client.post("/v1/image-classification", data=data, content_type="multipart/form-data")
    assert r.status_code == 200
    assert running_at_decode == [1]
