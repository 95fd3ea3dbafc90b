"""The [updates] poll in a real server process, against a real HTTP server on 127.0.0.1: a new signed version
listed in the index is pulled and served with no request failing; a tampered one is refused (serving version
and disk unchanged, not downloaded again); the source going away is logged and the server serves on, and
picks up the next version once the source is back."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from edge_mm.build.signing import signer
from edge_mm.errors import ConfigError
from edge_mm.runtime.update_bundle import INCOMING, UpdateRefused
from edge_mm.runtime.update_poll import UpdatePoller, read_index
from tests.conftest import only_models, tiny_settings_toml
from tests.runtime import test_update_bundle as bundles
from tests.runtime.test_update_bundle import Source, _bundle, _retar, _snapshot, _tampered
from tests.runtime.versions_fixtures import MODEL, artifacts_copy
from tests.serving import request, running_server

POLL_S = 0.2
keys, source = bundles.keys, bundles.source  # fixtures: the signing keys, a LAN source


def _index(*bundles: tuple[str, str, bytes]) -> bytes:
    """The index listing (model, url relative to the index, the tar's bytes) in order."""
    return json.dumps(
        {"bundles": [{"model": m, "url": u, "sha256": hashlib.sha256(b).hexdigest()} for m, u, b in bundles]}
    ).encode()


def _until(what: str, check: Callable[[], bool], timeout_s: float = 120) -> None:
    """Wait for ``check()``; the limit only ends a test that would otherwise hang."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"still waiting for: {what}"
        time.sleep(0.05)


def _version(base: str) -> int:
    _, _, models = request(base + "/v1/models")
    return int(models["models"][0]["version"])


def test_the_update_poll_swaps_in_signed_versions_and_refuses_tampered_ones(
    tiny_settings, tiny_checkpoints, keys, tmp_path
):
    (private, public), _ = keys
    root = artifacts_copy(tiny_settings, tmp_path / "artifacts")
    signer(private)(root)
    lan = Source()
    lan.files["/index.json"] = _index()
    text = only_models(tiny_settings_toml(tiny_checkpoints, root), {MODEL})
    text = text.replace("[runtime]\n", f'[runtime]\nverify_key = "{public}"\n', 1)
    text += f'\n[updates]\nurl = "{lan.url("/index.json")}"\npoll_s = {POLL_S}\n'
    config = tmp_path / "settings.toml"
    config.write_text(text)
    log = tmp_path / "server.log"  # stderr: the server's log; stdout still tells its address
    cmd = ["sh", "-c", f'exec "$0" "$@" 2>>"{log}"', sys.executable, "-m", "edge_mm"]
    good = _bundle(tiny_settings, tmp_path, private)  # the other classifier's model as a new version
    tampered = _retar(good, _tampered)
    later = _bundle(tiny_settings, tmp_path, private, name=MODEL)
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    with running_server(config, cmd=cmd) as base:

        def client() -> None:
            while not stop.is_set():
                try:
                    status, _, _ = request(
                        base + "/v1/text-classification", {"inputs": ["a fine day"], "model": MODEL}, timeout=30
                    )
                except OSError:  # a refused or cut connection is a failed request too
                    status = 0
                statuses[status] += 1

        clients = [threading.Thread(target=client) for _ in range(2)]
        for t in clients:
            t.start()
        try:
            assert _version(base) == 1
            # a new signed version appears on the source: pulled, checked, swapped in
            lan.files["/v2.tar"] = good
            lan.files["/index.json"] = _index((MODEL, "v2.tar", good))
            _until("version 2 serves", lambda: _version(base) == 2)
            # a tampered one (its index entry matches the tar: only the signed hashes catch it)
            before = _snapshot(root)
            lan.files["/v3.tar"] = tampered
            lan.files["/index.json"] = _index((MODEL, "v2.tar", good), (MODEL, "v3.tar", tampered))
            _until("the tampered bundle is fetched", lambda: lan.hits["/v3.tar"] == 1)
            seen = lan.hits["/index.json"]
            _until("two more polls", lambda: lan.hits["/index.json"] >= seen + 2)
            assert _version(base) == 2
            assert _snapshot(root) == before
            assert not any((root / INCOMING).iterdir())
            assert lan.hits["/v3.tar"] == 1  # refused for what it holds: not downloaded again
            # the source goes away: logged, the server serves on
            port = lan.port
            lan.close()
            _until("the outage is logged", lambda: "cannot be read" in log.read_text())
            status, _, _ = request(base + "/health/ready")
            assert status == 200
            # it comes back with a newer version
            lan = Source(port)
            lan.files["/v4.tar"] = later
            lan.files["/index.json"] = _index((MODEL, "v4.tar", later))
            _until("version 3 serves", lambda: _version(base) == 3)
        finally:
            stop.set()
            for t in clients:
                t.join(60)
            lan.close()

    assert set(statuses) == {200}, statuses
    text = log.read_text()
    assert "v3.tar refused" in text  # the tampered file, named in the log with why
    assert "has sha256" in text
    assert "answers again" in text
    assert sorted(p.name for p in (root / MODEL).iterdir() if p.name.isdigit()) == ["2", "3"]


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        (b"not json", "is not"),
        (b'{"bundles": [{"model": "m", "url": "b.tar"}]}', "is not"),
        (b'{"bundles": [{"model": "m", "url": "b.tar", "sha256": "abc"}]}', "not 64 hex digits"),
    ],
)
def test_a_malformed_index_is_refused(source, body, refusal):
    source.files["/index.json"] = body
    with pytest.raises(UpdateRefused, match=refusal):
        read_index(source.url("/index.json"), 5)


def test_index_urls_are_relative_to_the_index(source):
    source.files["/updates/index.json"] = _index(("m", "m-2.tar", b"x"), ("m", "http://10.0.0.9/m-3.tar", b"y"))
    offers = read_index(source.url("/updates/index.json"), 5)
    assert [o.url for o in offers] == [source.url("/updates/m-2.tar"), "http://10.0.0.9/m-3.tar"]


@pytest.mark.parametrize(("overrides", "message"), [({}, "updates.url is empty"), ({"url": "x"}, "verify_key")])
def test_polling_needs_a_url_and_a_verify_key(tiny_settings, overrides, message):
    class Repo:
        settings = tiny_settings.replace(updates__poll_s=1.0, **{f"updates__{k}": v for k, v in overrides.items()})

    with pytest.raises(ConfigError, match=message):
        UpdatePoller(Repo())  # type: ignore[arg-type]
