"""Shared fixtures for media tests: real photos shipped in the scikit-image wheel."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import need


def skimage_data_dir() -> Path | None:
    """``skimage/data`` inside the installed wheel, found without importing skimage."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@pytest.fixture(scope="session")
def photo_dir() -> Path:
    data = skimage_data_dir()
    need(
        data is not None and (data / "chelsea.png").is_file(),
        "scikit-image is not installed: its wheel carries the test photos",
    )
    assert data is not None
    return data


@pytest.fixture(scope="session")
def chelsea_bytes(photo_dir: Path) -> bytes:
    """A 451x300 RGB PNG photo of a cat."""
    return (photo_dir / "chelsea.png").read_bytes()


@pytest.fixture
def chelsea_small(chelsea_bytes: bytes) -> Image.Image:
    """The cat photo scaled to 90x60 RGB: a real picture that re-encodes fast."""
    with Image.open(io.BytesIO(chelsea_bytes)) as image:
        return image.convert("RGB").resize((90, 60))
