"""The README's curl examples run verbatim (host rewritten) against a real server with the
default models plus a tiny 'sentiment' and 'ner' model, and every documented route answers."""

from __future__ import annotations

import io
import json
import re
import shlex
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import MINILM, PACKAGES, ROOT, TEST_ARTIFACTS
from tests.serving import running_server

pytestmark = [pytest.mark.real_models, pytest.mark.skipif(not MINILM.is_dir(), reason="model packages not installed")]


def curl_commands(readme: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    commands = []
    for block in blocks:
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.split("  #")[0].strip()
            if cmd.startswith("curl "):
                commands.append(cmd)
    return commands


def run_curl(cmd: str, base: str) -> tuple[int, bytes]:
    """Execute the subset of curl the README uses: -s, -H, -d, -F name=@file / name=value, -X."""
    args = shlex.split(cmd)[1:]
    url, headers, data, form, method = None, {}, None, [], None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-H", "-d", "-F", "-X"):
            v = args[i + 1]
            i += 2
            if a == "-H":
                k, _, val = v.partition(":")
                headers[k.strip()] = val.strip()
            elif a == "-d":
                data = v.encode()
            elif a == "-F":
                form.append(v)
            else:
                method = v
            continue
        if not a.startswith("-"):
            url = a
        i += 1
    assert url is not None, cmd
    url = re.sub(r"^(https?://)?localhost:8080", base, url)
    if form:
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        for f in form:
            name, _, value = f.partition("=")
            body.write(f"--{boundary}\r\n".encode())
            if value.startswith("@"):
                path = Path(value[1:])
                path = path if path.is_absolute() else ROOT / path
                body.write(f'Content-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n\r\n'.encode())
                body.write(path.read_bytes())
            else:
                body.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode())
            body.write(b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
        data = body.getvalue()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def readme_config(tiny_checkpoints, tmp_path_factory):
    from edge_mm.build.pipeline import build_all
    from edge_mm.config import load_settings

    text = (ROOT / "settings.toml").read_text()
    text = text.replace('artifacts_dir = "build/artifacts"', f'artifacts_dir = "{TEST_ARTIFACTS}"')
    text = text.replace('packages_dir = "build/models"', f'packages_dir = "{PACKAGES}"')
    text += f"""
[[models]]
name = "sentiment"
task = "text-classification"
source = "{tiny_checkpoints / 'distilbert-seq'}"
max_length = 64

[[models]]
name = "ner"
task = "token-classification"
source = "{tiny_checkpoints / 'bert-token'}"
max_length = 64
"""
    path = tmp_path_factory.mktemp("readme") / "settings.toml"
    path.write_text(text)
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


def test_readme_curl_examples_work(readme_config):
    commands = curl_commands((ROOT / "README.md").read_text())
    assert len(commands) >= 8
    with running_server(readme_config) as base:
        for cmd in commands:
            status, body = run_curl(cmd, base)
            assert status == 200, f"{cmd}\n-> {status} {body[:300]!r}"
            json.loads(body)
