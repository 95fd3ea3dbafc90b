"""MTCNN nets: strict loading of the shipped weights; TorchScript and ONNX equal eager; the
face-detector build records both CPU backends and serves the one the setting (or the measurement) picks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edge_mm.build.mtcnn_nets import (
    ChannelPReLU,
    ONet,
    PNet,
    RNet,
    export_mtcnn_nets,
    export_mtcnn_onnx,
    load_mtcnn_nets,
)
from edge_mm.config import ModelSpec
from edge_mm.manifest import ORT_VARIANT, ModelEntry
from edge_mm.runtime.face_detector import FaceDetector
from edge_mm.runtime.onnx_session import OnnxSession
from tests.conftest import need

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")


def mtcnn_data_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "build" / "models" / "facenet_pytorch" / "data"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Two OpenMP threads on two shared cores stall badly when another process is busy.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def nets() -> tuple[PNet, RNet, ONet]:
    data = mtcnn_data_dir()
    need((data / "onet.pt").is_file(), f"MTCNN weights not in {data} (pip install --no-deps facenet-pytorch)")
    return load_mtcnn_nets(data)


def test_loads_shipped_weights_strictly(nets: tuple[PNet, RNet, ONet]) -> None:
    for net, name in zip(nets, ("pnet", "rnet", "onet"), strict=True):
        shipped = torch.load(mtcnn_data_dir() / f"{name}.pt", weights_only=True)
        assert set(net.state_dict()) == set(shipped)
        assert not net.training


def test_extra_key_is_rejected(tmp_path: Path, nets: tuple[PNet, RNet, ONet]) -> None:
    for name, net in zip(("pnet", "rnet", "onet"), nets, strict=True):
        state = dict(net.state_dict())
        if name == "rnet":
            state["unexpected.weight"] = torch.zeros(1)
        torch.save(state, tmp_path / f"{name}.pt")
    with pytest.raises(RuntimeError, match="unexpected"):
        load_mtcnn_nets(tmp_path)


def test_output_shapes(nets: tuple[PNet, RNet, ONet]) -> None:
    pnet, rnet, onet = nets
    with torch.inference_mode():
        reg, prob = pnet(torch.zeros(1, 3, 31, 40))
        assert reg.shape == (
            1,
            4,
            11,
            15,
        )  # ceil((31 - 2) / 2) - 4, ceil((40 - 2) / 2) - 4
        assert prob.shape == (1, 2, 11, 15)
        assert torch.allclose(prob.sum(dim=1), torch.ones(1, 11, 15))
        assert [t.shape for t in rnet(torch.zeros(3, 3, 24, 24))] == [(3, 4), (3, 2)]
        assert [t.shape for t in onet(torch.zeros(3, 3, 48, 48))] == [
            (3, 4),
            (3, 10),
            (3, 2),
        ]


@pytest.mark.parametrize("size", [(60, 80), (123, 77)])
def test_pnet_trace_generalizes_to_other_sizes(nets: tuple[PNet, RNet, ONet], size: tuple[int, int]) -> None:
    pnet = nets[0]
    with torch.inference_mode():
        traced = torch.jit.trace(pnet, torch.rand(1, 3, 40, 50) * 2 - 1)
        x = torch.rand(1, 3, *size) * 2 - 1
        for got, want in zip(traced(x), pnet(x), strict=True):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_exported_nets_match_eager_after_save_and_load(tmp_path: Path, nets: tuple[PNet, RNet, ONet]) -> None:
    exported = export_mtcnn_nets(*nets)
    loaded = []
    for name, module in zip(("pnet", "rnet", "onet"), exported, strict=True):
        torch.jit.save(module, tmp_path / f"{name}.pt")
        loaded.append(torch.jit.load(tmp_path / f"{name}.pt"))
    pnet, rnet, onet = loaded
    gen = torch.Generator().manual_seed(0)
    inputs = [
        (pnet, nets[0], torch.rand(1, 3, 97, 64, generator=gen)),
        (pnet, nets[0], torch.rand(1, 3, 150, 211, generator=gen)),
        (rnet, nets[1], torch.rand(1, 3, 24, 24, generator=gen)),  # traced at batch 2
        (rnet, nets[1], torch.rand(7, 3, 24, 24, generator=gen)),
        (onet, nets[2], torch.rand(5, 3, 48, 48, generator=gen)),
    ]
    with torch.inference_mode():
        for artifact, eager, x in inputs:
            x = x * 2 - 1
            for got, want in zip(artifact(x), eager(x), strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_channel_prelu_equals_prelu() -> None:
    prelu = torch.nn.PReLU(6)
    with torch.no_grad():
        prelu.weight.copy_(torch.linspace(-0.5, 1.5, 6))
    x = torch.randn(2, 6, 5, 7, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(ChannelPReLU(prelu)(x), prelu(x), rtol=0, atol=1e-6)


def test_onnx_nets_match_eager_at_any_batch_and_size(tmp_path: Path, nets: tuple[PNet, RNet, ONet]) -> None:
    paths = export_mtcnn_onnx(*nets, tmp_path)
    sessions = {n: OnnxSession(p, 1) for n, p in paths.items()}
    assert sessions["pnet"].input_names == ["image"]
    assert sessions["onet"].output_names == ["reg", "landmarks", "prob"]
    gen = torch.Generator().manual_seed(0)
    inputs = [
        ("pnet", nets[0], (1, 3, 97, 64)),
        ("pnet", nets[0], (2, 3, 150, 211)),  # exported at 1 x 61 x 77
        ("rnet", nets[1], (1, 3, 24, 24)),  # exported at batch 2
        ("rnet", nets[1], (7, 3, 24, 24)),
        ("onet", nets[2], (5, 3, 48, 48)),
    ]
    with torch.inference_mode():
        for name, eager, shape in inputs:
            x = torch.rand(*shape, generator=gen) * 2 - 1
            got = sessions[name](x.numpy())
            want = eager(x)
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert g.shape == tuple(w.shape)
                np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=1e-5)


# --- the face-detector build: both backends, the record, the setting --------------------------


@dataclass
class Built:
    entry: ModelEntry
    out: Path


def _build(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Built:
    from edge_mm.build.face_detector import build_face_detector

    data = mtcnn_data_dir()
    need((data / "onet.pt").is_file(), f"MTCNN weights not in {data} (pip install --no-deps facenet-pytorch)")
    out = tmp_path_factory.mktemp(f"mtcnn-{backend}")
    spec = ModelSpec(name="mtcnn", task="face-detection", source=str(data), artifact_backend=backend)
    return Built(build_face_detector(spec, data, out, lambda _: None, accelerator=None), out)


@pytest.fixture(scope="module")
def built_auto(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(tmp_path_factory, "auto")


def test_build_records_both_backends_and_serves_the_faster(built_auto: Built) -> None:
    entry = built_auto.entry
    record = entry.backends
    assert record["setting"] == "auto"
    assert set(record["candidates"]) == {"torchscript", "onnxruntime"}
    ort, ts = record["candidates"]["onnxruntime"], record["candidates"]["torchscript"]
    assert ort["passes"], ort["misses"]
    assert ort["fidelity"]["probe_vs_torchscript_max_abs"] <= 1e-4
    assert ort["fidelity"]["box_vs_torchscript_max_px"] <= 0.5
    assert set(ort["latency_ms"]) == set(ts["latency_ms"]) == {"frame_640x480", "sample_astronaut"}
    faster = min(record["candidates"], key=lambda n: (_geomean(record["candidates"][n]), n != "torchscript"))
    assert record["serves"] == faster
    assert entry.cpu_backend == faster
    variant = entry.variants[ORT_VARIANT]
    assert variant.backend == "onnxruntime"
    assert set(variant.files) == {"pnet", "rnet", "onet"}
    assert all((built_auto.out / f.path).is_file() for f in variant.files.values())
    counts = entry.verification["onnxruntime"]["faces_onnxruntime_vs_torchscript"]
    assert counts["sample_astronaut"] == [1, 1]
    assert all(got == want for got, want in counts.values())


def _geomean(candidate: dict) -> float:
    times = list(candidate["latency_ms"].values())
    return float(np.exp(np.mean(np.log(times))))


def test_both_variants_load_and_find_the_same_faces(built_auto: Built) -> None:
    with Image.open(
        Path(__file__).resolve().parents[2] / "edge_mm" / "build" / "data" / "sample_astronaut.jpg"
    ) as photo:
        image = photo.convert("RGB").resize((640, 480))
    faces = {}
    for variant in ("cpu", ORT_VARIANT):
        detector = FaceDetector.load("mtcnn", built_auto.entry, built_auto.out, "cpu", variant, 8)
        assert detector.engine == ("numpy" if variant == ORT_VARIANT else "torch")
        faces[variant] = detector.detect(image, min_face_size=20, thresholds=(0.6, 0.7, 0.7), max_side=1280)
        reference = json.loads(built_auto.entry.files["reference"].resolve(built_auto.out).read_text())
        for got, want in zip(detector.check_outputs(reference["inputs"]), reference["outputs"], strict=True):
            np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), atol=1e-4)
    assert len(faces["cpu"]) == len(faces[ORT_VARIANT]) == 1
    np.testing.assert_allclose(faces[ORT_VARIANT][0].box, faces["cpu"][0].box, atol=0.5)


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_artifact_backend_setting_is_respected(tmp_path_factory: pytest.TempPathFactory, backend: str) -> None:
    entry = _build(tmp_path_factory, backend).entry
    assert entry.backends["setting"] == backend
    assert entry.backends["serves"] == backend
    assert entry.cpu_backend == backend
    if backend == "torchscript":
        assert set(entry.backends["candidates"]) == {"torchscript"}  # nothing exported to ONNX
        assert ORT_VARIANT not in entry.variants
    else:
        assert entry.variants[ORT_VARIANT].backend == "onnxruntime"
