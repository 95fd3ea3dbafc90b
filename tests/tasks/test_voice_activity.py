"""Voice activity task over the API: espeak-ng speech padded with silence; silence and noise."""

from __future__ import annotations

import numpy as np
import pytest

from edge_mm.errors import Unprocessable
from edge_mm.tasks import voice_activity
from tests.vision_fixtures import *  # noqa: F403
from tests.vision_fixtures import wav_bytes

pytestmark = pytest.mark.real_models


def post_wav(client, data: bytes, **form):
    return client.post(
        "/v1/voice-activity",
        data={"audio": (__import__("io").BytesIO(data), "a.wav"), **form},
        content_type="multipart/form-data",
    )


def test_parse_rejects_bad_threshold():
    with pytest.raises(Unprocessable):
        voice_activity.parse_options({"threshold": 1.5}, {})


def test_speech_segments_cover_the_spoken_part(vision_client, speech_wav):
    data, start, end = speech_wav
    r = post_wav(vision_client, data)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["sample_rate"] == 22050
    segs = body["segments"]
    assert segs, body
    assert segs[0]["start_s"] == pytest.approx(start, abs=0.35)
    assert segs[-1]["end_s"] == pytest.approx(end, abs=0.5)
    assert all(start - 0.35 <= s["start_s"] < s["end_s"] <= end + 0.5 for s in segs)
    assert 0.3 < body["speech_ratio"] < 0.8


def test_stereo_44k_float_is_accepted(vision_client, speech_wav):
    import io
    import wave

    data, start, _ = speech_wav
    with wave.open(io.BytesIO(data)) as w:
        mono = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    up = np.repeat(mono, 2)  # 22.05 -> 44.1 kHz by sample doubling
    r = post_wav(vision_client, wav_bytes(np.stack([up, up], axis=1), 44100, channels=2))
    assert r.status_code == 200
    assert r.get_json()["segments"][0]["start_s"] == pytest.approx(start, abs=0.35)


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_silence_and_white_noise_have_no_speech(vision_client, kind):
    rng = np.random.default_rng(1)
    samples = (
        np.zeros(16000 * 3, np.float32)
        if kind == "silence"
        else rng.standard_normal(16000 * 3).astype(np.float32) * 0.2
    )
    body = post_wav(vision_client, wav_bytes(samples, 16000)).get_json()
    assert body["segments"] == []
    assert body["speech_ratio"] == 0
