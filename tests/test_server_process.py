"""The real server process: waitress on 127.0.0.1, readiness, headers, start-up refusals, `edge-mm info`."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

from edge_mm.server import warn_if_open
from tests.serving import ROOT, request, running_server


def test_serves_over_http(tiny_config):
    with running_server(tiny_config) as base:
        status, headers, body = request(base + "/v1/embeddings", {"inputs": ["hello there", "john smith"]})
        assert status == 200
        assert headers["X-Edge-Device"] == "cpu"
        assert float(headers["X-Inference-Time-Ms"]) > 0
        assert len(body["data"]) == 2
        status, _, body = request(base + "/v1/embeddings", {"inputs": ""})
        assert status == 422
        assert body["error"]["code"] == "unprocessable"
        status, _, body = request(base + "/v1/token-classification", {"inputs": "john smith works at acme"})
        assert status == 200
        status, _, info = request(base + "/info")
        assert info["ready"] is True
        assert info["device"] == "cpu"


def test_refuses_to_start_on_tampered_artifact(tiny_config, tmp_path):
    text = tiny_config.read_text()
    root = tiny_config.parent / "artifacts"
    shutil.copytree(root, tmp_path / "artifacts")
    (tmp_path / "settings.toml").write_text(text.replace(str(root), str(tmp_path / "artifacts")))
    f = tmp_path / "artifacts" / "tiny-embed" / "tokenizer.json"
    f.write_text(f.read_text() + " ")  # still valid JSON, different bytes
    out = subprocess.run(
        [sys.executable, "-m", "edge_mm", "--config", str(tmp_path / "settings.toml"), "serve", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "tokenizer.json has sha256" in out.stderr


def test_cuda_setting_without_cuda_refuses_to_start(tiny_config):
    out = subprocess.run(
        [sys.executable, "-m", "edge_mm", "--config", str(tiny_config), "serve", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"EDGE_MM_RUNTIME_DEVICE": "cuda", "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert out.returncode == 2
    assert "no CUDA device" in out.stderr


def test_info_command_prints_manifest(tiny_config):
    out = subprocess.run(
        [sys.executable, "-m", "edge_mm", "--config", str(tiny_config), "info"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    assert set(manifest["models"]) == {
        "tiny-embed",
        "tiny-sentiment",
        "tiny-ner",
        "tiny-sentiment-distil",
        "tiny-ner-bert",
    }


def test_open_bind_without_keys_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert warn_if_open("0.0.0.0", []) is True
    assert "without api_keys" in caplog.text
    assert warn_if_open("0.0.0.0", ["k"]) is False
    assert warn_if_open("127.0.0.1", []) is False
    assert warn_if_open("::1", []) is False


def test_check_command_passes(tiny_config, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "edge_mm", "--config", str(tiny_config), "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(": ok on cpu") == 5
