"""The README's curl examples run verbatim (host rewritten) against a real server with the
default models plus a tiny 'sentiment' and 'ner' model: every curl line in the README runs and
gets its documented status."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MINILM, PACKAGES, ROOT, repo_settings_text
from tests.serving import running_server
from tests.vision_fixtures import VISION_PACKAGES

MODELS_INSTALLED = MINILM.is_dir() and all((PACKAGES / p).is_dir() for p in VISION_PACKAGES)


def bash_blocks(readme: str) -> list[str]:
    return [b for b in re.findall(r"```bash\n(.*?)```", readme, flags=re.S) if "curl " in b and "make " not in b]


def curl_lines(readme: str) -> list[str]:
    """Every line with a curl call in any fenced block of the README, continuation lines joined."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", readme, flags=re.S | re.M)
    return [line for b in blocks for line in b.replace("\\\n", " ").splitlines() if "curl " in line]


def expected_status(line: str) -> int:
    return 501 if "# 501" in line else 200


def run_block(block: str, base: str) -> list[tuple[str, int, bytes]]:
    """Run a README block verbatim in bash (host rewritten); (curl line, status, body) per curl call."""
    host = base.removeprefix("http://")
    lines = block.replace("\\\n", " ").splitlines()
    script = []
    curls = []
    for line in lines:
        if "curl " in line:
            curls.append(line)
            marker = f"@@{len(curls) - 1}@@"
            line = re.sub(r""" -w ("[^"]*"|'[^']*')""", "", line)  # a line's own -w: the marker reports the status
            line = line.replace("curl -s ", f"curl -s -w '\\n{marker}%{{http_code}}\\n' ", 1)
        script.append(re.sub(r"(http://)?(localhost|127\.0\.0\.1):8080", f"http://{host}", line))
    out = subprocess.run(["bash", "-e", "-c", "\n".join(script)], cwd=ROOT, capture_output=True, timeout=600)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    results = []
    text = out.stdout
    for i, line in enumerate(curls):
        marker = f"@@{i}@@".encode()
        head, _, rest = text.partition(marker)
        status = int(rest[:3]) if rest else 0
        results.append((line, status, head.strip()))
        text = rest[3:]
    return results


@pytest.fixture(scope="module")
def readme_config(tiny_checkpoints, tmp_path_factory):
    from edge_mm.build.pipeline import build_all
    from edge_mm.config import load_settings

    text = repo_settings_text(f"""
[[models]]
name = "sentiment"
task = "text-classification"
source = "{tiny_checkpoints / "distilbert-seq"}"
max_length = 64

[[models]]
name = "ner"
task = "token-classification"
source = "{tiny_checkpoints / "bert-token"}"
max_length = 64
""")
    path = tmp_path_factory.mktemp("readme") / "settings.toml"
    path.write_text(text)
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


def test_every_readme_curl_line_is_in_a_block_that_runs():
    readme = (ROOT / "README.md").read_text()
    ran = [line for block in bash_blocks(readme) for line in block.replace("\\\n", " ").splitlines() if "curl " in line]
    assert ran == curl_lines(readme)  # a curl example outside a ```bash block, or beside `make`, would not run
    assert len(ran) >= 18


@pytest.mark.real_models
@pytest.mark.needs(MODELS_INSTALLED, "model packages not installed: run `make models`")
@pytest.mark.needs(shutil.which("curl"), "curl is not installed: run `bash scripts/system_deps.sh` as root")
def test_readme_curl_examples_work(readme_config):
    readme = (ROOT / "README.md").read_text()
    with running_server(readme_config) as base:
        results = [r for block in bash_blocks(readme) for r in run_block(block, base)]
    # One result per curl line of the README, in order; status 0: the line never ran.
    assert [line for line, _, _ in results] == curl_lines(readme)
    for line, status, body in results:
        assert status == expected_status(line), f"{line}\n-> {status} {body[:300]!r}"
        if "/metrics" in line:
            assert list(text_string_to_metric_families(body.decode()))  # Prometheus text, not JSON
        elif "-o /dev/null" not in line:  # a page fetched for its status only (the playground)
            json.loads(body)
