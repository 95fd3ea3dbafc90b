"""WAV decoding, down-mixing and resampling in numpy (no scipy, no torch).

- :func:`decode_wav`: RIFF/WAVE bytes -> mono float32 samples in [-1, 1] + rate (Hz).
- :func:`to_mono_float`: any PCM/float array (e.g. PyAV's ``frame.to_ndarray()``)
  -> mono float32 in [-1, 1].
- :func:`resample`: anti-aliased rational-ratio (polyphase, Kaiser-windowed sinc)
  resampler.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edge_mm.errors import (
    BadInput,
    RequestTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)

__all__ = ["decode_wav", "resample", "to_mono_float"]

MIN_RATE = 1_000  # Hz; outside this range a header is far more likely wrong than real
MAX_RATE = 768_000

_PCM = 0x0001
_IEEE_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE
# Bytes 2..15 of every KSDATAFORMAT_SUBTYPE_* GUID; bytes 0..1 hold the format tag.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_TAG_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MPEG Layer 3",
}
# A data size at least this large is a streaming writer's "unknown length" marker.
_UNKNOWN_SIZE = 0x7FFF_0000


def decode_wav(data: bytes, *, max_bytes: int, max_seconds: float) -> tuple[np.ndarray, int]:
    """Decode a RIFF WAVE file to ``(samples, sample_rate)``.

    ``samples`` is (frames,) float32 mono in [-1, 1] (channels averaged);
    ``sample_rate`` is in Hz. Reads PCM 8/16/24/32-bit integer and IEEE float
    32/64-bit, plain or WAVE_FORMAT_EXTENSIBLE. ``max_bytes`` bounds the file size,
    ``max_seconds`` the duration (checked from the header before any conversion).

    Raises ``RequestTooLarge`` (413) over a limit, ``UnsupportedMediaType`` (415)
    for non-WAV data or another codec, ``Unprocessable`` (422) for a sample rate
    outside ``MIN_RATE..MAX_RATE``, ``BadInput`` (400) for empty, truncated or
    corrupt files.
    """
    if len(data) > max_bytes:
        raise RequestTooLarge(f"audio is {len(data)} bytes; the limit is {max_bytes}")
    if not data:
        raise BadInput("audio is empty")
    if data[:4] != b"RIFF" or (len(data) >= 12 and data[8:12] != b"WAVE"):
        kind = "RF64/RIFX WAV" if data[:4] in (b"RF64", b"RIFX") else "this format"
        raise UnsupportedMediaType(f"{kind} is not supported; send a RIFF WAVE file")
    if len(data) < 12:
        raise BadInput("WAV file is truncated (no RIFF header)")

    fmt, payload = _read_chunks(data)
    tag, channels, rate, block_align, bits = fmt
    width = bits // 8
    if channels < 1 or block_align != channels * width:
        raise BadInput(f"corrupt WAV header: {channels} channels, {bits} bits, block align {block_align}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise Unprocessable(f"sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")

    frames = len(payload) // block_align
    if frames == 0:
        raise BadInput("WAV file has no samples")
    if frames / rate > max_seconds:
        raise RequestTooLarge(f"audio is {frames / rate:.1f} s long; the limit is {max_seconds:g} s")
    raw = np.frombuffer(payload, dtype=np.uint8, count=frames * block_align)
    samples = _decode_samples(raw, tag, width).reshape(frames, channels)
    return to_mono_float(samples, channels_axis=1), rate


def _read_chunks(data: bytes) -> tuple[tuple[int, int, int, int, int], memoryview]:
    """RIFF chunks -> (format tag, channels, rate, block align, bits), data bytes."""
    view = memoryview(data)
    fmt: tuple[int, int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = bytes(view[pos : pos + 4])
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + size > len(data):
                raise BadInput("corrupt WAV header: short or truncated 'fmt ' chunk")
            fmt = _parse_fmt(bytes(view[body : body + size]))
        elif chunk_id == b"data":
            if fmt is None:
                raise BadInput("corrupt WAV file: 'data' chunk before 'fmt ' chunk")
            if body + size > len(data):
                if size < _UNKNOWN_SIZE:
                    raise BadInput(
                        f"WAV file is truncated: data chunk declares {size} bytes, {len(data) - body} present"
                    )
                size = len(data) - body
            return fmt, view[body : body + size]
        pos = body + size + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise BadInput("corrupt or truncated WAV file: no 'fmt ' chunk")
    raise BadInput("corrupt or truncated WAV file: no 'data' chunk")


def _parse_fmt(body: bytes) -> tuple[int, int, int, int, int]:
    """'fmt ' body -> (tag, channels, rate, block align, bits); 415 unless PCM/float."""
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise BadInput("corrupt WAV header: short WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk")
        guid = body[24:40]
        if guid[2:] != _GUID_TAIL:
            raise UnsupportedMediaType(
                f"WAV codec with sub-format GUID {guid.hex()} is not supported; send PCM or IEEE float"
            )
        (tag,) = struct.unpack_from("<H", guid)
    if tag not in (_PCM, _IEEE_FLOAT):
        name = _TAG_NAMES.get(tag, "unknown codec")
        raise UnsupportedMediaType(f"WAV format tag 0x{tag:04X} ({name}) is not supported; send PCM or IEEE float")
    supported = (8, 16, 24, 32) if tag == _PCM else (32, 64)
    if bits not in supported:
        kind = "PCM" if tag == _PCM else "IEEE float"
        raise UnsupportedMediaType(f"{bits}-bit {kind} WAV is not supported")
    return tag, channels, rate, block_align, bits


def _decode_samples(raw: np.ndarray, tag: int, width: int) -> np.ndarray:
    """Little-endian sample bytes (uint8) -> flat float32 in [-1, 1] (interleaved)."""
    if tag == _IEEE_FLOAT:
        return to_mono_float(raw.view("<f4" if width == 4 else "<f8"), channels_axis=None)
    if width == 3:
        padded = np.zeros((len(raw) // 3, 4), dtype=np.uint8)
        padded[:, 1:] = raw.reshape(-1, 3)  # 24-bit value in the top bytes of an int32
        return padded.view("<i4").reshape(-1).astype(np.float32) * np.float32(2.0**-31)
    dtype = {1: "u1", 2: "<i2", 4: "<i4"}[width]
    return to_mono_float(raw.view(dtype), channels_axis=None)


def to_mono_float(samples: np.ndarray, channels_axis: int | None) -> np.ndarray:
    """Samples of any PCM/float dtype -> float32 in [-1, 1], channels averaged.

    ``samples``: 1-D, or 2-D with channels along ``channels_axis`` (PyAV planar
    frames are ``(channels, n)``: axis 0; interleaved ``(n, channels)``: axis 1).
    ``channels_axis=None`` only converts the dtype. Integer scaling: uint8 is
    offset binary, int16/int32 are full-scale signed. Float input is clipped to
    [-1, 1]; NaN or infinity raises ``BadInput``. Returns (n,) float32.
    """
    x = np.asarray(samples)
    if x.dtype == np.uint8:
        out = (x.astype(np.float32) - 128.0) / 128.0
    elif x.dtype in (np.int16, np.int32):
        out = x.astype(np.float32) * np.float32(2.0 ** (1 - 8 * x.dtype.itemsize))
    elif x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise BadInput("audio contains NaN or infinite samples")
        out = np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)
    else:
        raise ValueError(f"unsupported sample dtype {x.dtype}")
    if channels_axis is not None and out.ndim > 1:
        out = out.mean(axis=channels_axis, dtype=np.float64).astype(np.float32)
    return np.ascontiguousarray(out.reshape(-1) if channels_axis is not None else out)


# Resampler design: cutoff at ROLLOFF x the lower Nyquist, ZERO_CROSSINGS sinc
# lobes per side, Kaiser beta for about 85 dB stop-band attenuation.
ROLLOFF = 0.9
ZERO_CROSSINGS = 24
KAISER_BETA = 8.5


def resample(samples: np.ndarray, from_rate: int, to_rate: int = 16_000) -> np.ndarray:
    """Resample (n,) float audio from ``from_rate`` to ``to_rate`` Hz -> (m,) float32.

    ``m = ceil(n * to_rate / from_rate)``; output sample ``k`` is at time
    ``k / to_rate`` s, aligned with input sample 0. Polyphase FIR with a
    Kaiser-windowed sinc low-pass at 0.9 x the lower Nyquist frequency: gain
    within 0.01 dB up to 0.8 x Nyquist (6.4 kHz at 16 kHz), -2.4 dB at 0.875 x,
    over 90 dB attenuation above Nyquist (measured), so content above the new
    Nyquist is removed, not aliased. Identity (same array,
    as float32) when the rates match.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample expects 1-D samples, got shape {x.shape}")
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate or len(x) == 0:
        return x
    up, down = resampling_ratio(from_rate, to_rate)
    bank = _filter_bank(up, down)  # (up, 2*half + 1): one filter per output phase
    half = (bank.shape[1] - 1) // 2
    n_out = -(-len(x) * up // down)
    windows = sliding_window_view(np.pad(x, (half, half + 1)), bank.shape[1])
    out = np.empty(n_out, dtype=np.float32)
    inv_down = pow(down, -1, up) if up > 1 else 0
    for phase in range(up):
        first = (phase * inv_down) % up  # first output n with (n * down) % up == phase
        if first >= n_out:
            continue
        start = first * down // up  # the input sample at or just before output n
        count = len(range(first, n_out, up))
        out[first::up] = windows[start : start + count * down : down] @ bank[phase]
    return out


MAX_RATIO_TERM = 4_000  # bounds a filter bank to about 53 x 4000 floats (under 1 MB)


def resampling_ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    """``(up, down)``: ``to_rate / from_rate`` in lowest terms, both at most :data:`MAX_RATIO_TERM`.

    An odd rate (767,951 Hz) has no small exact ratio, and the polyphase bank grows with
    ``max(up, down)`` (156 MB there). Such ratios are replaced by the nearest fraction with
    small terms: the time scale then differs by at most 0.03 % (64 ppm at 767,951 Hz), and
    the memory no longer grows with the rate.
    """
    ratio = Fraction(to_rate, from_rate)
    if ratio.denominator > MAX_RATIO_TERM:
        ratio = ratio.limit_denominator(MAX_RATIO_TERM)
    if ratio.numerator > MAX_RATIO_TERM:
        ratio = 1 / (1 / ratio).limit_denominator(MAX_RATIO_TERM)
    return ratio.numerator, ratio.denominator


@lru_cache(maxsize=16)  # at most 16 banks of under 1 MB each (see MAX_RATIO_TERM)
def _filter_bank(up: int, down: int) -> np.ndarray:
    """Polyphase bank (up, taps) float32: row p holds h(p - j*up) for j = -half..half.

    ``h`` is the low-pass at the virtual rate ``from_rate * up``, with gain ``up``
    to make up for the zeros that upsampling inserts.
    """
    cutoff = ROLLOFF / (2.0 * max(up, down))  # cycles per sample at the virtual rate
    reach = ZERO_CROSSINGS / (2.0 * cutoff)  # filter half-length, virtual samples
    half = int(reach // up) + 1
    j = np.arange(-half, half + 1)
    t = np.arange(up)[:, None] - j[None, :] * up  # (up, taps) virtual-sample offsets
    inside = np.abs(t) <= reach
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (t / reach) ** 2, 0.0, None)))
    h = 2.0 * cutoff * np.sinc(2.0 * cutoff * t) * window / np.i0(KAISER_BETA) * up
    return np.where(inside, h, 0.0).astype(np.float32)
