"""WAV decoding (formats, errors and their statuses), down-mixing and the resampler."""

from __future__ import annotations

import io
import re
import struct
import wave

import numpy as np
import pytest

from edge_mm.errors import (
    BadInput,
    RequestTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from edge_mm.media.audio import decode_wav, resample, to_mono_float

LIMITS = {"max_bytes": 10_000_000, "max_seconds": 60.0}
KSDATAFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def make_wav(
    frames: np.ndarray,
    rate: int,
    *,
    tag: int,
    bits: int,
    extensible: bool = False,
    data_size: int | None = None,
    extra_chunks: bytes = b"",
) -> bytes:
    """RIFF WAVE bytes for ``frames``: (n,) or (n, channels) in the stored sample type.

    24-bit data is given as int32 values and packed to 3 bytes here.
    """
    frames = frames[:, None] if frames.ndim == 1 else frames
    channels = frames.shape[1]
    if bits == 24:
        payload = frames.astype("<i4").tobytes()
        payload = b"".join(payload[i : i + 3] for i in range(0, len(payload), 4))
    else:
        payload = frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    block_align = channels * bits // 8
    common = struct.pack("<HIIHH", channels, rate, rate * block_align, block_align, bits)
    if extensible:
        guid = struct.pack("<H", tag) + KSDATAFORMAT_TAIL
        fmt = struct.pack("<H", 0xFFFE) + common + struct.pack("<HHI", 22, bits, 0) + guid
    else:
        fmt = struct.pack("<H", tag) + common
    body = b"WAVE" + extra_chunks + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    size = len(payload) if data_size is None else data_size
    body += b"data" + struct.pack("<I", size) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pcm16(values: list[int], rate: int = 16_000) -> bytes:
    return make_wav(np.array(values, np.int16), rate, tag=1, bits=16)


# --- formats ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "bits", "tag", "want"),
    [
        (
            np.array([0, 16384, -32768, 32767], np.int16),
            16,
            1,
            [0, 0.5, -1, 32767 / 32768],
        ),
        (np.array([128, 255, 0, 192], np.uint8), 8, 1, [0, 127 / 128, -1, 0.5]),
        (
            np.array([0, 2**22, -(2**23), 2**23 - 1], np.int32),
            24,
            1,
            [0, 0.5, -1, 1 - 2**-23],
        ),
        (
            np.array([0, 2**30, -(2**31), -(2**29)], np.int32),
            32,
            1,
            [0, 0.5, -1, -0.25],
        ),
        (np.array([0, 0.25, -0.5, 1.5], np.float32), 32, 3, [0, 0.25, -0.5, 1.0]),
        (np.array([0, 0.125, -2.0, 0.75], np.float64), 64, 3, [0, 0.125, -1.0, 0.75]),
    ],
    ids=["pcm16", "pcm8", "pcm24", "pcm32", "float32", "float64"],
)
@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
def test_decodes_sample_formats(frames: np.ndarray, bits: int, tag: int, want: list[float], extensible: bool) -> None:
    samples, rate = decode_wav(make_wav(frames, 22_050, tag=tag, bits=bits, extensible=extensible), **LIMITS)
    assert rate == 22_050
    assert samples.dtype == np.float32
    assert samples.shape == (4,)
    np.testing.assert_allclose(samples, want, rtol=0, atol=1e-7)


def test_stereo_is_averaged_to_mono() -> None:
    left = np.array([16384, -16384, 32767, 0], np.int16)
    right = np.array([0, -16384, -32768, 8192], np.int16)
    data = make_wav(np.stack([left, right], axis=1), 44_100, tag=1, bits=16)
    samples, rate = decode_wav(data, **LIMITS)
    assert rate == 44_100
    np.testing.assert_allclose(samples, [0.25, -0.5, -1 / 65536, 0.125], atol=1e-7)


def test_matches_stdlib_wave_writer_at_8k() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(-32768, 32767, size=(800, 2), dtype=np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8_000)
        w.writeframes(values.tobytes())
    samples, rate = decode_wav(buf.getvalue(), **LIMITS)
    assert rate == 8_000
    np.testing.assert_allclose(samples, values.astype(np.float64).mean(axis=1) / 32768, atol=1e-6)


def test_skips_unknown_and_odd_sized_chunks() -> None:
    odd = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"  # odd size: one pad byte
    data = make_wav(np.array([16384], np.int16), 16_000, tag=1, bits=16, extra_chunks=odd)
    assert decode_wav(data, **LIMITS)[0].tolist() == [0.5]


def test_streaming_unknown_data_size_reads_to_the_end() -> None:
    data = make_wav(
        np.array([16384, 0, -16384], np.int16),
        16_000,
        tag=1,
        bits=16,
        data_size=0xFFFFFFFF,
    )
    np.testing.assert_allclose(decode_wav(data, **LIMITS)[0], [0.5, 0, -0.5])


# --- errors and their statuses ------------------------------------------------


def fmt_tag_wav(tag: int, bits: int = 8) -> bytes:
    return make_wav(np.array([1, 2, 3, 4], np.uint8), 8_000, tag=tag, bits=bits)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", BadInput, "empty"),
        (b"RIFF", BadInput, "truncated"),
        (pcm16([1, 2, 3, 4])[:-3], BadInput, "truncated"),
        (pcm16([1, 2, 3, 4])[:30], BadInput, "truncated"),
        (pcm16([1, 2, 3, 4])[:40], BadInput, "no 'data' chunk"),
        (
            make_wav(np.zeros(0, np.int16), 16_000, tag=1, bits=16),
            BadInput,
            "no samples",
        ),
        (
            pcm16([1]).replace(b"\x02\x00\x10\x00data", b"\x03\x00\x10\x00data"),
            BadInput,
            "block align",
        ),
        (
            make_wav(np.array([np.nan], np.float32), 16_000, tag=3, bits=32),
            BadInput,
            "NaN",
        ),
        (
            b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 50,
            UnsupportedMediaType,
            "RIFF WAVE",
        ),
        (b"\xff\xfb\x90\x64" + bytes(400), UnsupportedMediaType, "RIFF WAVE"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", UnsupportedMediaType, "RIFF WAVE"),
        (b"RF64" + bytes(60), UnsupportedMediaType, "RF64"),
        (b"OggS" + bytes(60), UnsupportedMediaType, "RIFF WAVE"),
        (fmt_tag_wav(7), UnsupportedMediaType, "0x0007 (mu-law)"),
        (fmt_tag_wav(6), UnsupportedMediaType, "0x0006 (A-law)"),
        (fmt_tag_wav(2, bits=4), UnsupportedMediaType, "0x0002 (Microsoft ADPCM)"),
        (
            make_wav(np.zeros(4, np.uint8), 8_000, tag=7, bits=8, extensible=True),
            UnsupportedMediaType,
            "0x0007",
        ),
        (
            make_wav(np.zeros(4, np.int16), 8_000, tag=3, bits=16),
            UnsupportedMediaType,
            "16-bit IEEE float",
        ),
        (pcm16([1, 2, 3], rate=100), Unprocessable, "sample rate 100 Hz"),
    ],
    ids=[
        "empty",
        "riff-only",
        "truncated-data",
        "truncated-fmt",
        "no-data",
        "zero-frames",
        "bad-block-align",
        "nan",
        "mp3-id3",
        "mp3-frame",
        "avi",
        "rf64",
        "ogg",
        "mu-law",
        "a-law",
        "adpcm",
        "extensible-mu-law",
        "float16",
        "silly-rate",
    ],
)
def test_rejects_bad_audio(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)) as err:
        decode_wav(data, **LIMITS)
    assert err.value.status == {BadInput: 400, UnsupportedMediaType: 415, Unprocessable: 422}[error]  # type: ignore[attr-defined]


def test_over_max_bytes_is_413() -> None:
    data = pcm16([0] * 100)
    with pytest.raises(RequestTooLarge) as err:
        decode_wav(data, max_bytes=len(data) - 1, max_seconds=60)
    assert err.value.status == 413
    assert decode_wav(data, max_bytes=len(data), max_seconds=60)[0].shape == (100,)


def test_over_max_seconds_is_413_from_the_header() -> None:
    data = pcm16([0] * 16_001)  # 1.0000625 s
    with pytest.raises(RequestTooLarge, match="limit is 1 s") as err:
        decode_wav(data, max_bytes=10**6, max_seconds=1.0)
    assert err.value.status == 413
    assert len(decode_wav(pcm16([0] * 16_000), max_bytes=10**6, max_seconds=1.0)[0]) == 16_000


# --- to_mono_float ------------------------------------------------------------


def test_to_mono_float_planar_and_interleaved() -> None:
    planar = np.array([[0.5, -0.5, 1.0], [0.0, -0.5, 3.0]], np.float32)  # PyAV fltp: (channels, n)
    np.testing.assert_allclose(to_mono_float(planar, channels_axis=0), [0.25, -0.5, 1.0])
    interleaved = np.array([[16384, 0], [-32768, -32768]], np.int16)  # (n, channels)
    np.testing.assert_allclose(to_mono_float(interleaved, channels_axis=1), [0.25, -1.0])
    assert to_mono_float(np.array([2**30], np.int32), None).tolist() == [0.5]
    with pytest.raises(ValueError, match="dtype"):
        to_mono_float(np.array([1, 2], np.int64), None)


# --- resample -----------------------------------------------------------------


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.sin(2 * np.pi * freq * t).astype(np.float32)


def middle(x: np.ndarray, rate: int) -> np.ndarray:
    """Drop 0.1 s at each end, where the filter sees the zero padding."""
    return x[rate // 10 : -rate // 10]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_same_rate_is_identity() -> None:
    x = tone(440, 16_000, 0.1)
    np.testing.assert_array_equal(resample(x, 16_000, 16_000), x)


@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 44_100, 48_000])
def test_output_length(rate: int) -> None:
    x = np.zeros(rate // 3 + 7, np.float32)
    assert len(resample(x, rate)) == -(-len(x) * 16_000 // rate)


def test_1khz_keeps_frequency_and_level_from_44k1() -> None:
    y = middle(resample(tone(1_000, 44_100), 44_100), 16_000)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spectrum) * 16_000 / len(y)
    assert abs(peak_hz - 1_000) <= 16_000 / len(y)
    assert rms(y) * np.sqrt(2) == pytest.approx(1.0, abs=0.01)  # within 0.1 dB


def test_tone_above_new_nyquist_is_removed() -> None:
    x = tone(10_000, 44_100)  # would alias to 6 kHz at 16 kHz
    attenuation_db = 20 * np.log10(rms(middle(resample(x, 44_100), 16_000)) / rms(x))
    assert attenuation_db < -40


def test_upsampling_8k_leaves_no_image() -> None:
    y = middle(resample(tone(1_000, 8_000), 8_000), 16_000)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    bin_hz = 16_000 / len(y)
    image = spectrum[int(6_900 / bin_hz) : int(7_100 / bin_hz)].max()  # 8 kHz - 1 kHz
    assert 20 * np.log10(image / spectrum.max()) < -60
    assert rms(y) * np.sqrt(2) == pytest.approx(1.0, abs=0.01)


def test_dc_level_is_kept() -> None:
    y = resample(np.full(44_100, 0.5, np.float32), 44_100)
    np.testing.assert_allclose(middle(y, 16_000), 0.5, atol=1e-4)


def test_resample_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 10), np.float32), 8_000)
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10, np.float32), 0)


@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 44_100, 48_000, 96_000, 192_000])
def test_standard_rates_resample_exactly(rate: int) -> None:
    from edge_mm.media.audio import resampling_ratio

    up, down = resampling_ratio(rate, 16_000)
    assert up * rate == down * 16_000


@pytest.mark.parametrize("rate", [767_951, 16_001, 1_009, 44_101])
def test_odd_rates_get_a_small_ratio_and_a_small_filter_bank(rate: int) -> None:
    from edge_mm.media.audio import MAX_RATIO_TERM, _filter_bank, resampling_ratio

    up, down = resampling_ratio(rate, 16_000)
    assert max(up, down) <= MAX_RATIO_TERM
    assert abs(up / down - 16_000 / rate) / (16_000 / rate) < 3e-4  # 0.03 %: 0.2 s over 10 minutes, at most
    assert _filter_bank(up, down).nbytes < 1_000_000
    x = tone(440, rate, 0.5)
    y = resample(x, rate)
    assert abs(len(y) - len(x) * 16_000 / rate) <= 2
