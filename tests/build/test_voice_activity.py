"""The silero builder: which backends it builds and serves per ``artifact_backend``, and what it refuses
(shipped silero-vad files); ConSE's variants and backends record per ``artifact_backend``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_mm.build.errors import BuildError
from edge_mm.build.voice_activity import PROB_TOLERANCE, build_voice_activity
from edge_mm.build.zero_shot_image import conse_variants
from edge_mm.config import ModelSpec
from edge_mm.manifest import ORT_VARIANT, FileRef
from edge_mm.runtime.probes import probe_audio
from edge_mm.runtime.silero_vad import SileroOnnx, speech_probabilities
from tests.conftest import PACKAGES, need

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")

DATA = PACKAGES / "silero_vad" / "data"


@pytest.fixture(scope="module")
def jit() -> Path:
    need((DATA / "silero_vad.onnx").is_file(), f"silero-vad package not at {DATA}: run `make models`")
    return DATA / "silero_vad.jit"


def build(jit: Path, out: Path, backend: str):  # type: ignore[no-untyped-def]
    out.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(name="vad", task="voice-activity", source=str(jit), artifact_backend=backend)
    return build_voice_activity(spec, jit, out, lambda msg: None)


def test_auto_builds_both_and_records_the_measured_choice(jit: Path, tmp_path: Path) -> None:
    entry = build(jit, tmp_path, "auto")
    assert set(entry.variants) == {"cpu", ORT_VARIANT}
    assert entry.variants[ORT_VARIANT].backend == "onnxruntime"
    assert (tmp_path / "silero_vad.onnx").read_bytes() == (DATA / "silero_vad.onnx").read_bytes()  # as shipped
    record = entry.backends
    assert record["setting"] == "auto"
    assert set(record["candidates"]) == {"torchscript", "onnxruntime"}
    assert record["candidates"]["onnxruntime"]["fidelity"]["prob_max_abs"] <= PROB_TOLERANCE
    assert record["opset"] == "16"
    best = min(record["candidates"], key=lambda n: record["candidates"][n]["latency_ms"]["per_audio_second"])
    assert record["serves"] == best
    # The reference for `edge-mm check` (the serving form's output) is reproduced by the ONNX form.
    reference = json.loads((tmp_path / entry.files["reference"].path).read_text())
    onnx = SileroOnnx.load(tmp_path / "silero_vad.onnx")
    got = speech_probabilities(probe_audio(1.0), onnx)
    assert float(np.abs(got - np.array(reference["outputs"][0])).max()) <= PROB_TOLERANCE


def test_torchscript_setting_builds_no_onnx(jit: Path, tmp_path: Path) -> None:
    entry = build(jit, tmp_path, "torchscript")
    assert set(entry.variants) == {"cpu"}
    assert not (tmp_path / "silero_vad.onnx").exists()
    assert entry.backends["serves"] == "torchscript"
    assert set(entry.backends["candidates"]) == {"torchscript"}


def test_onnxruntime_setting_serves_onnx(jit: Path, tmp_path: Path) -> None:
    entry = build(jit, tmp_path, "onnxruntime")
    assert entry.backends["serves"] == "onnxruntime"
    assert entry.backends["reason"] == "artifact_backend = onnxruntime in settings"


def test_a_jit_without_its_onnx_is_refused_or_fails(jit: Path, tmp_path: Path) -> None:
    lone = tmp_path / "src" / "silero_vad.jit"
    lone.parent.mkdir()
    shutil.copyfile(jit, lone)
    entry = build(lone, tmp_path / "auto", "auto")
    assert entry.backends["serves"] == "torchscript"
    assert "no silero_vad.onnx" in entry.backends["candidates"]["onnxruntime"]["misses"][0]
    assert set(entry.variants) == {"cpu"}
    with pytest.raises(BuildError, match="no silero_vad.onnx"):
        build(lone, tmp_path / "strict", "onnxruntime")


def test_an_onnx_that_scores_otherwise_is_refused(jit: Path, tmp_path: Path) -> None:
    """A graph with silero's interface that is not the TorchScript model (a constant 0.9) is not shipped."""
    import onnx
    from onnx import helper

    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(jit, src / "silero_vad.jit")
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["output"], value=helper.make_tensor("p", 1, [1, 1], [0.9])),
            helper.make_node("Identity", ["state"], ["stateN"]),
        ],
        "fake",
        [
            helper.make_tensor_value_info("input", 1, [1, None]),
            helper.make_tensor_value_info("state", 1, [2, 1, 128]),
            helper.make_tensor_value_info("sr", 7, []),
        ],
        [helper.make_tensor_value_info("output", 1, [1, 1]), helper.make_tensor_value_info("stateN", 1, [2, 1, 128])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)]), src / "silero_vad.onnx")
    entry = build(src / "silero_vad.jit", tmp_path / "auto", "auto")
    misses = entry.backends["candidates"]["onnxruntime"]["misses"]
    assert any("speech probabilities differ" in m for m in misses)
    assert any("segments differ" in m for m in misses)
    assert entry.backends["serves"] == "torchscript"
    assert ORT_VARIANT not in entry.variants
    assert not (tmp_path / "auto" / "silero_vad.onnx").exists()  # a refused graph is not shipped
    with pytest.raises(BuildError, match="speech probabilities differ"):
        build(src / "silero_vad.jit", tmp_path / "strict", "onnxruntime")


@pytest.mark.parametrize("setting", ["auto", "onnxruntime", "torchscript"])
def test_conse_variants_per_setting(setting: str) -> None:
    spec = ModelSpec(name="conse", task="zero-shot-image", source="x", artifact_backend=setting)
    table = FileRef("class_embeddings.npy", "0" * 64)
    variants, record = conse_variants(spec, table)
    if setting == "torchscript":
        assert set(variants) == {"cpu"}
        assert record == {}
        return
    assert set(variants) == {"cpu", ORT_VARIANT}
    a, b = variants["cpu"].files["class_embeddings"], variants[ORT_VARIANT].files["class_embeddings"]
    assert a == b
    assert a is not b  # the pipeline prefixes each reference in place, once
    assert variants[ORT_VARIANT].backend == "onnxruntime"
    assert record["setting"] == setting
    assert record["serves"] == "onnxruntime"
