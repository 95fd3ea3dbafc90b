"""The examples in README.md and the docs site (docs/) run verbatim (host rewritten) against a real
server with the default models plus a tiny 'sentiment' and 'ner' model: every curl line gets its
documented status and every Python block runs. The site itself builds with `mkdocs build --strict`
and loads nothing from outside the site.

Runnable examples are the ```bash blocks with a curl call (and no `make`) and the ```python blocks.
```sh blocks are commands for other machines or long jobs (bundles, podman, kubectl, ray start) and
hold no curl call: a curl line anywhere else fails `test_every_example_is_run`.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MINILM, PACKAGES, ROOT, repo_settings_text
from tests.serving import running_server
from tests.vision_fixtures import VISION_PACKAGES

MODELS_INSTALLED = MINILM.is_dir() and all((PACKAGES / p).is_dir() for p in VISION_PACKAGES)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# Examples that are not run, each with the reason: (page, a line of the block) -> why. Keep it short.
NOT_RUN: dict[tuple[str, str], str] = {}

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", flags=re.S | re.M)
HOST = re.compile(r"(http://)?(localhost|127\.0\.0\.1):8080")


def page(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def fences(text: str) -> list[tuple[str, str]]:
    return [(lang.strip(), body) for lang, body in FENCE.findall(text)]


def excluded(path: Path, block: str) -> bool:
    return any(p == page(path) and line in block for p, line in NOT_RUN)


def bash_blocks(path: Path) -> list[str]:
    return [
        b
        for lang, b in fences(path.read_text())
        if lang == "bash" and "curl " in b and "make " not in b and not excluded(path, b)
    ]


def python_blocks(path: Path) -> list[str]:
    return [b for lang, b in fences(path.read_text()) if lang == "python" and not excluded(path, b)]


def curl_lines(text: str) -> list[str]:
    """Every line with a curl call in any fenced block, continuation lines joined."""
    return [line for _, b in fences(text) for line in b.replace("\\\n", " ").splitlines() if "curl " in line]


def expected_status(line: str) -> int:
    return 501 if "# 501" in line else 200


def run_block(block: str, base: str) -> list[tuple[str, int, bytes]]:
    """Run a bash block verbatim (host rewritten); (curl line, status, body) per curl call."""
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
        script.append(HOST.sub(f"http://{host}", line))
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


def run_python(block: str, base: str) -> None:
    """Run a Python block verbatim with the host rewritten (the scheme, if any, is the block's own)."""
    code = re.sub(r"(localhost|127\.0\.0\.1):8080", base.removeprefix("http://"), block)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{block}\n-> {out.stderr[-2000:]}"


@pytest.fixture(scope="module")
def docs_server(tiny_checkpoints, tmp_path_factory):
    from edge_mm.build.all_models import build_all
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
    path = tmp_path_factory.mktemp("docs") / "settings.toml"
    path.write_text(text)
    build_all(load_settings(path, env={}), out=io.StringIO())
    with running_server(path) as base:
        yield base


def test_every_example_is_run():
    ran = 0
    for path in DOCS:
        text = path.read_text()
        run = [line for b in bash_blocks(path) for line in b.replace("\\\n", " ").splitlines() if "curl " in line]
        skipped = [line for lang, b in fences(text) if excluded(path, b) for line in curl_lines(f"```\n{b}```\n")]
        # A curl example outside a ```bash block, or beside `make`, would not run.
        assert sorted(run + skipped) == sorted(curl_lines(text)), page(path)
        ran += len(run) + len(python_blocks(path))
    assert ran >= 30
    for p, line in NOT_RUN:
        assert line in (ROOT / p).read_text(), f"NOT_RUN names a line that is no longer in {p}: {line}"


EXAMPLE_PAGES = [p for p in DOCS if bash_blocks(p) or python_blocks(p)]


@pytest.mark.real_models
@pytest.mark.needs(MODELS_INSTALLED, "model packages not installed: run `make models`")
@pytest.mark.needs(shutil.which("curl"), "curl is not installed: run `bash scripts/system_deps.sh` as root")
@pytest.mark.parametrize("path", EXAMPLE_PAGES, ids=page)
def test_examples_work(path, docs_server):
    results = [r for block in bash_blocks(path) for r in run_block(block, docs_server)]
    # One result per curl line, in order; status 0: the line never ran.
    assert [line for line, _, _ in results] == [
        line for b in bash_blocks(path) for line in b.replace("\\\n", " ").splitlines() if "curl " in line
    ]
    for line, status, body in results:
        assert status == expected_status(line), f"{line}\n-> {status} {body[:300]!r}"
        if "/metrics" in line:
            assert list(text_string_to_metric_families(body.decode()))  # Prometheus text, not JSON
        elif "-o /dev/null" not in line:  # a page fetched for its status only (the playground)
            json.loads(body)
    for block in python_blocks(path):
        run_python(block, docs_server)


class Assets(HTMLParser):
    """What a page loads by itself: scripts, stylesheets, icons, images, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source") and a.get("src"):
            self.urls.append(a["src"] or "")
        if tag == "link" and a.get("href") and a.get("rel") not in ("canonical", "alternate"):
            self.urls.append(a["href"] or "")


@pytest.mark.needs(importlib.util.find_spec("material"), "mkdocs-material not installed: run `make setup`")
def test_docs_site_builds_strictly_and_loads_nothing_from_outside(tmp_path):
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= len(DOCS) - 1  # every docs/ page (README.md is not in the site), plus 404.html
    for html in pages:
        parser = Assets()
        parser.feed(html.read_text())
        outside = [u for u in parser.urls if re.match(r"^(https?:)?//", u)]
        assert not outside, f"{html.relative_to(site)} loads {outside}"
        if html.name == "404.html":  # a web server's error page: root-relative links, by design
            continue
        local = [u for u in parser.urls if not u.startswith(("data:", "#"))]
        for url in local:  # opened from the file system, every asset is a file next to the page
            assert (html.parent / url.split("#")[0].split("?")[0]).resolve().is_file(), f"{html.name}: {url}"
