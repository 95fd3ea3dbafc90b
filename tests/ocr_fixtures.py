"""The OCR model (rapidocr 3.10's PP-OCRv6 graphs from build/models) built once per session into a temp folder,
its registry, and rendered text images. Import with ``from tests.ocr_fixtures import *``."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from tests.conftest import PACKAGES, need, warm_registry

RAPIDOCR_MODELS = PACKAGES / "rapidocr" / "models"


def ocr_settings_toml(artifacts: Path, options: str = "") -> str:
    return textwrap.dedent(
        f"""
        [runtime]
        artifacts_dir = "{artifacts}"
        [build]
        packages_dir = "{PACKAGES}"
        [[models]]
        name = "ppocr"
        task = "ocr"
        source = "package:rapidocr/models"
        {options}
        """
    )


@pytest.fixture(scope="session")
def ocr_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """settings.toml for the OCR model, already built."""
    need((RAPIDOCR_MODELS / "PP-OCRv6_rec_small.onnx").is_file(), "rapidocr not in build/models: run `make models`")
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    folder = tmp_path_factory.mktemp("ocr")
    path = folder / "settings.toml"
    path.write_text(ocr_settings_toml(folder / "artifacts"))
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


@pytest.fixture(scope="session")
def ocr_settings(ocr_config: Path):  # type: ignore[no-untyped-def]
    from edge_mm.config import load_settings

    return load_settings(ocr_config, env={})


@pytest.fixture(scope="session")
def ocr_registry(ocr_settings):  # type: ignore[no-untyped-def]
    return warm_registry(ocr_settings)


@pytest.fixture(scope="session")
def ocr_reader(ocr_registry):  # type: ignore[no-untyped-def]
    return ocr_registry.models["ppocr"].runner
