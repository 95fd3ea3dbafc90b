"""`edge-mm build` draws progress bars for its long steps on a terminal, and none without one."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from edge_mm.build.progress import bar
from edge_mm.build.quantize import guard_int8
from tests.conftest import ROOT

BAR_MARKS = ("\r", "%|", "it/s", "batch/s", "layer/s", "\x1b[")  # what tqdm writes when it draws
# The long steps of an int8 text build (the guard search only runs when int8 misses: tested on its own).
STEPS = ("smoothing: calibration", "verify: fp32 reference", "verify: int8 vs fp32")


def test_bar_is_silent_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(bar(range(5), "counting")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""


def test_bar_draws_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = _terminal()
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        assert list(bar(range(5), "counting", unit="layer")) == [0, 1, 2, 3, 4]
        tty.flush()
        drawn = _read_all(master, timeout=1)  # before the slave closes: closing it drops unread output
    os.close(master)
    assert "counting:" in drawn, drawn
    assert "%|" in drawn, drawn


def _guard_search() -> None:
    """The int8 guard on three Linears whose targets only fp32 meets: it measures each layer's damage."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    result = guard_int8(
        model,
        (),
        passes=lambda m: not any(isinstance(x, torch.ao.nn.quantized.dynamic.Linear) for x in m.modules()),
        damage=lambda m: 0.5,
        auto=True,
        progress=lambda _msg: None,
    )
    assert len(result.sensitivity) == 3


def test_guard_search_is_silent_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    _guard_search()
    assert capsys.readouterr().err == ""


def test_guard_search_draws_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = _terminal()
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        _guard_search()
        tty.flush()
        drawn = _read_all(master, timeout=1)
    os.close(master)
    assert "int8 guard: layer damage:" in drawn, drawn
    assert "/3 [" in drawn, drawn  # the count is drawn (tqdm may skip the last redraw within its interval)


@pytest.fixture(scope="module")
def text_build_config(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny int8 embeddings model (smoothing, calibration and verification run)."""
    folder = tmp_path_factory.mktemp("progress")
    path = folder / "settings.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [runtime]
            artifacts_dir = "{folder / "artifacts"}"
            [[models]]
            name = "tiny-embed"
            task = "embeddings"
            source = "{tiny_checkpoints / "bert-embeddings"}"
            max_length = 32
            """
        )
    )
    return path


def _build_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "edge_mm", "--config", str(config), "build", "--force"]


def _env() -> dict[str, str]:
    return dict(os.environ, COLUMNS="100", TERM="xterm", CUDA_VISIBLE_DEVICES="")


def test_build_without_a_terminal_prints_no_bars(text_build_config: Path) -> None:
    done = subprocess.run(
        _build_argv(text_build_config), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "int8 {" in output, output  # the int8 steps ran
    drawn = [mark for mark in BAR_MARKS if mark in output]
    assert not drawn, f"bar characters {drawn} in a non-TTY build:\n{output}"


def test_build_on_a_terminal_shows_a_bar_per_long_step(text_build_config: Path) -> None:
    master, slave = _terminal()
    proc = subprocess.Popen(
        _build_argv(text_build_config), cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
    )
    os.close(slave)
    try:
        output = _read_all(master, proc)
        assert proc.wait(timeout=60) == 0, output
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    missing = [step for step in STEPS if f"{step}:" not in output]
    assert not missing, f"no bar for {missing}:\n{output[-3000:]}"
    assert "%|" in output, output[-3000:]


def _terminal() -> tuple[int, int]:
    """A pty (master, slave) 100 columns wide: a fresh pty is 0x0, and tqdm sizes its bar to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    return master, slave


def _read_all(master: int, proc: subprocess.Popen | None = None, timeout: float = 600) -> str:
    """Everything written to the pty until the writer is gone (EIO on Linux once every slave end is closed)."""
    chunks = []
    waited = 0.0
    while waited < timeout:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            waited += 0.5
            if proc is None or proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")
