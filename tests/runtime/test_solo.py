"""A lone forward pass may use every core; one that has company keeps its one thread (edge_mm/runtime/solo.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from edge_mm.runtime.door import Door, DoorSizes
from edge_mm.runtime.onnx_session import OnnxSession
from edge_mm.runtime.solo import SOLO, Solo


class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory):
    from edge_mm.build import onnx_backend

    path = tmp_path_factory.mktemp("solo") / "conv.onnx"
    return onnx_backend.export(Conv().eval(), (torch.rand(1, 3, 16, 16),), path, ["x"], ["y"], {"x": {0: "b"}})


def test_a_pass_is_alone_only_without_other_passes_or_requests() -> None:
    solo = Solo()
    with solo.forward_pass() as alone:
        assert alone
        with solo.forward_pass() as second:  # another model's pass, started meanwhile
            assert not second
    requests = [1]
    solo.count_requests(lambda: requests[0])
    with solo.forward_pass() as alone:
        assert alone  # the one request the server holds is this pass's own
    requests[0] = 2
    with solo.forward_pass() as alone:
        assert not alone  # another request waits or is being preprocessed: it will want a core
    solo.count_requests(None)
    with solo.forward_pass() as alone:
        assert alone


def test_the_door_counts_waiting_and_running_requests() -> None:
    door = Door(DoorSizes.derive(threads=4, max_waiting=0, max_expected_s=0, request_timeout_s=30))
    assert door.requests() == 0
    assert door.admit() is None
    assert door.admit() is None
    door.started()
    assert door.requests() == 2  # one waiting for a thread, one served
    door.finished(0.01)
    assert door.requests() == 1


@pytest.fixture
def no_server_counts():
    """SOLO as a process without an HTTP server sees it (a server made by another test may have told it)."""
    SOLO.count_requests(None)
    yield
    SOLO.count_requests(None)


@pytest.mark.usefixtures("no_server_counts")
def test_session_takes_the_solo_session_only_when_alone(conv_onnx) -> None:
    session = OnnxSession(conv_onnx, threads=1, solo_threads=2)
    plain = OnnxSession(conv_onnx, threads=1)
    assert session.solo_threads == 2
    assert plain.solo_threads == 0
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    want = plain(x)
    np.testing.assert_allclose(session(x), want, atol=1e-5)  # same graph, same answer on either session
    assert session.solo_passes == 1
    # another pass running (another model, or another request's pass): the one-thread session serves
    inside, release = threading.Event(), threading.Event()

    def other_pass() -> None:
        with SOLO.forward_pass():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other_pass)
    thread.start()
    try:
        assert inside.wait(5)
        np.testing.assert_allclose(session(x), want, atol=1e-5)
        assert session.solo_passes == 1
    finally:
        release.set()
        thread.join()
    session(x)
    assert session.solo_passes == 2


def test_no_second_session_when_it_would_not_have_more_threads(conv_onnx) -> None:
    session = OnnxSession(conv_onnx, threads=2, solo_threads=2)
    assert session.solo_threads == 0
    session(np.zeros((1, 3, 16, 16), np.float32))
    assert session.solo_passes == 0
