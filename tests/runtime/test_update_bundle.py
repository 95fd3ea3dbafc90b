"""Signed update bundles pulled from a real HTTP server on 127.0.0.1: a good one lands as the next version;
every bad one (tampered, another key, truncated, '../', a link, too big, the source gone mid-download) is
refused with the artifacts folder unchanged; a version that fails to load is rolled back; rollback."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections import Counter
from pathlib import Path

import pytest

from edge_mm.build.signing import keygen, signer
from edge_mm.build.version_bundle import write_bundle
from edge_mm.runtime.update_bundle import INCOMING, UpdateRefused, pull
from edge_mm.runtime.update_cli import pull_command, rollback_command
from edge_mm.runtime.versions import Catalog
from tests.runtime.versions_fixtures import MODEL, OTHER, artifacts_copy, with_policy


class Source:
    """A LAN update source: serves ``files`` (path -> bytes); ``cut`` paths send half their body, then close.
    ``hits``: GETs per path; ``port`` 0 picks a free one (another Source can come back on the same port)."""

    def __init__(self, port: int = 0) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, bool] = {}  # path -> whether the cut response declared its full length
        self.hits: Counter[str] = Counter()
        source = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                source.hits[self.path] += 1
                body = source.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                declared = source.cut.get(self.path, True)
                if declared:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in source.cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def source():
    s = Source()
    yield s
    s.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return keygen(folder / "build"), keygen(folder / "other")


@pytest.fixture
def box(tiny_settings, keys, tmp_path):
    """(settings, artifacts root) of an edge box: the tiny artifacts, signed, verify_key set."""
    (private, public), _ = keys
    root = artifacts_copy(tiny_settings, tmp_path / "artifacts")
    signer(private)(root)
    return with_policy(tiny_settings, root, runtime__verify_key=str(public)), root


def _bundle(tiny_settings, tmp_path, private: Path | None, name: str = OTHER) -> bytes:
    out = write_bundle(
        tiny_settings.path("runtime.artifacts_dir"),
        name,
        tmp_path / f"b-{name}.tar",
        sign=None if private is None else signer(private),
        as_name=MODEL,
    )
    return out.read_bytes()


def _retar(data: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """The tar ``data`` with ``change(name, bytes) -> [(TarInfo, bytes | None)]`` applied to each member."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src:
            content = src.extractfile(m).read()
            for info, body in change(m, content):
                dst.addfile(info, None if body is None else io.BytesIO(body))
    return out.getvalue()


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256 (the empty .incoming folder aside)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_good_bundle_becomes_the_next_version(tiny_settings, box, keys, source, tmp_path):
    settings, root = box
    (private, _), _ = keys
    source.files["/v2.tar"] = _bundle(tiny_settings, tmp_path, private)
    pulled = pull(settings, source.url("/v2.tar"))
    assert (pulled.model, pulled.version, pulled.new) == (MODEL, 2, True)
    assert Catalog(root, settings.optional_path("runtime.verify_key")).selected(MODEL, "latest") == [2]
    assert not any((root / INCOMING).iterdir())
    assert pull(settings, source.url("/v2.tar")).new is False  # the same bundle again: nothing new


def _tampered(m: tarfile.TarInfo, content: bytes):  # type: ignore[no-untyped-def]
    if m.name.endswith(".pt"):
        content = content[:-4] + b"evil"
    return [(m, content)]


def _dotdot(m: tarfile.TarInfo, content: bytes):  # type: ignore[no-untyped-def]
    evil = tarfile.TarInfo("../../escaped.txt")
    evil.size = 4
    return [(m, content), (evil, b"evil")]


def _link(m: tarfile.TarInfo, content: bytes):  # type: ignore[no-untyped-def]
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return [(m, content), (link, None)]


def _extra(m: tarfile.TarInfo, content: bytes):  # type: ignore[no-untyped-def]
    if m.name != "manifest.json":
        return [(m, content)]
    extra = tarfile.TarInfo("unlisted.py")
    extra.size = 4
    return [(m, content), (extra, b"evil")]


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("tampered", "has sha256"),
        ("other key", "not a valid signature"),
        ("unsigned", "is not signed"),
        ("truncated", "the download failed|ended after"),
        ("source gone", "not a complete tar|is missing|not valid JSON|is not signed|has sha256"),
        ("dotdot", "only relative paths"),
        ("link", "is a link or device"),
        ("extra file", "does not name"),
        ("too big", "over updates.max_bundle_bytes"),
        ("missing", "answered 404"),
    ],
)
def test_bad_bundles_are_refused_and_change_nothing(tiny_settings, box, keys, source, tmp_path, case, refusal):
    settings, root = box
    (private, _), (other, _) = keys
    good = _bundle(tiny_settings, tmp_path, private)
    body = {
        "tampered": lambda: _retar(good, _tampered),
        "other key": lambda: _bundle(tiny_settings, tmp_path, other),
        "unsigned": lambda: _bundle(tiny_settings, tmp_path, None),
        "dotdot": lambda: _retar(good, _dotdot),
        "link": lambda: _retar(good, _link),
        "extra file": lambda: _retar(good, _extra),
    }.get(case, lambda: good)()
    if case != "missing":
        source.files["/b.tar"] = body
    if case == "truncated":
        source.cut["/b.tar"] = True  # declares the full length, sends half
    if case == "source gone":
        source.cut["/b.tar"] = False  # no length: the close looks like the end
    if case == "too big":
        settings = settings.replace(updates__max_bundle_bytes=len(good) // 2)
    before = _snapshot(root)
    with pytest.raises(UpdateRefused, match=refusal):
        pull(settings, source.url("/b.tar"))
    assert _snapshot(root) == before
    assert not any((root / INCOMING).iterdir())
    assert not (tmp_path / "escaped.txt").exists()
    assert Catalog(root, None).selected(MODEL, "latest") == [1]


def test_pull_loads_into_a_running_server_and_rollback(tiny_settings, tiny_checkpoints, keys, source, tmp_path):
    from tests.conftest import only_models, tiny_settings_toml
    from tests.serving import request, running_server

    (private, public), _ = keys
    root = artifacts_copy(tiny_settings, tmp_path / "artifacts")
    signer(private)(root)
    port = _free_port()
    text = only_models(tiny_settings_toml(tiny_checkpoints, root), {MODEL})
    text = text.replace("[runtime]\n", f'[runtime]\nverify_key = "{public}"\n', 1)
    text = text.replace("[server]\n", f"[server]\nport = {port}\n", 1)
    config = tmp_path / "settings.toml"
    config.write_text(text)
    from edge_mm.config import load_settings

    settings = load_settings(config, env={})
    source.files["/good.tar"] = _bundle(tiny_settings, tmp_path, private)
    source.files["/bad.tar"] = _bundle(tiny_settings, tmp_path, private, name="tiny-embed")  # another task
    out = io.StringIO()
    with running_server(config, ("EDGE_MM_SERVER_PORT", str(port))) as base:
        assert pull_command(settings, source.url("/bad.tar"), out=out) == 1
        assert "did not load it" in out.getvalue()
        _, _, models = request(base + "/v1/models")
        assert models["models"][0]["version"] == 1  # the old version still serves
        assert pull_command(settings, source.url("/good.tar"), out=out) == 0, out.getvalue()
        _, _, models = request(base + "/v1/models")
        assert models["models"][0]["version"] == 3
        assert rollback_command(settings, MODEL, out=out) == 0, out.getvalue()
        _, _, models = request(base + "/v1/models")
        assert models["models"][0]["version"] == 1  # 2 (the bad one) and 3 are rolled back
    assert Catalog(root, public).rolled_back(MODEL) == {2, 3}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_only_the_last_versions_are_kept(tiny_settings, box, keys, source, tmp_path):
    settings, root = box
    settings = settings.replace(updates__keep_versions=2)
    (private, _), _ = keys
    source.files["/other.tar"] = _bundle(tiny_settings, tmp_path, private)
    source.files["/same.tar"] = _bundle(tiny_settings, tmp_path, private, name=MODEL)
    assert pull(settings, source.url("/other.tar")).version == 2
    assert pull(settings, source.url("/same.tar")).version == 3
    fourth = pull(settings, source.url("/other.tar"))
    assert (fourth.version, fourth.pruned) == (4, (2,))
    assert sorted(p.name for p in (root / MODEL).iterdir() if p.name.isdigit()) == ["3", "4"]
    assert Catalog(root, None).numbers(MODEL) == [1, 3, 4]  # the flat layout's version 1 is never deleted


def test_a_bundle_of_another_model_than_named_is_refused(tiny_settings, box, keys, source, tmp_path):
    """The update index names the model a bundle holds; a bundle of another one is not placed."""
    settings, root = box
    (private, _), _ = keys
    source.files["/b.tar"] = _bundle(tiny_settings, tmp_path, private)  # a version of MODEL
    before = _snapshot(root)
    with pytest.raises(UpdateRefused, match="not of 'tiny-sentiment-distil'"):
        pull(settings, source.url("/b.tar"), model="tiny-sentiment-distil")
    assert _snapshot(root) == before
    assert pull(settings, source.url("/b.tar"), model=MODEL).version == 2


def test_two_pullers_at_once_place_two_versions(tiny_settings, box, keys, source, tmp_path, monkeypatch):
    """`edge-mm pull` beside the server's poll: each takes its own next number (the .incoming lock), even when
    both read the catalog before either renames (the catalog read is slowed here to make them overlap)."""
    import time

    settings, root = box
    (private, _), _ = keys
    source.files["/a.tar"] = _bundle(tiny_settings, tmp_path, private)  # OTHER's artifacts
    source.files["/b.tar"] = _bundle(tiny_settings, tmp_path, private, name="tiny-ner-bert")  # and another's
    numbers = Catalog.numbers

    def slow_numbers(self, model):  # type: ignore[no-untyped-def]
        found = numbers(self, model)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(Catalog, "numbers", slow_numbers)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda u=u: results.append(pull(settings, source.url(u)))) for u in ("/a.tar", "/b.tar")
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(r.version for r in results) == [2, 3]  # type: ignore[attr-defined]
    assert sorted(p.name for p in (root / MODEL).iterdir() if p.name.isdigit()) == ["2", "3"]


def test_without_a_verify_key_nothing_is_pulled(box, source):
    settings, root = box
    with pytest.raises(UpdateRefused, match="runtime.verify_key is not set"):
        pull(settings.replace(runtime__verify_key=""), source.url("/any.tar"))


def test_rollback_with_no_server_running_takes_effect_at_the_next_start(tiny_settings, box, keys, source, tmp_path):
    settings, root = box
    (private, public), _ = keys
    settings = settings.replace(server__port=_free_port())  # nothing listens there
    source.files["/v2.tar"] = _bundle(tiny_settings, tmp_path, private)
    out = io.StringIO()
    assert pull_command(settings, source.url("/v2.tar"), out=out) == 0
    assert "no server is running" in out.getvalue()
    assert rollback_command(settings, MODEL, out=out) == 0
    assert Catalog(root, public).selected(MODEL, "latest") == [1]
    assert rollback_command(settings, MODEL, out=out) == 1  # nothing before version 1
    assert "no earlier version" in out.getvalue()
