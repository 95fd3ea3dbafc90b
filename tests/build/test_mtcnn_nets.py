"""MTCNN nets: strict loading of the shipped weights; TorchScript equals eager."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from edge_mm.build.mtcnn_nets import (
    ONet,
    PNet,
    RNet,
    export_mtcnn_nets,
    load_mtcnn_nets,
)
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
