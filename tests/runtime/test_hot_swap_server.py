"""A real server under concurrent load while a model is swapped several times: no request fails."""

from __future__ import annotations

import threading
from collections import Counter

from tests.conftest import only_models, tiny_settings_toml
from tests.runtime.versions_fixtures import MODEL, add_version, artifacts_copy
from tests.serving import request, running_server

CLIENTS = 4
SWAPS = 6


def test_swaps_under_load_fail_no_request(tiny_settings, tiny_checkpoints, tmp_path):
    root = artifacts_copy(tiny_settings, tmp_path / "artifacts")
    config = tmp_path / "settings.toml"
    config.write_text(only_models(tiny_settings_toml(tiny_checkpoints, root), {MODEL}))
    statuses: Counter[int] = Counter()
    answers: Counter[str] = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    with running_server(config) as base:

        def client() -> None:
            while not stop.is_set():
                try:
                    status, headers, body = request(
                        base + "/v1/text-classification", {"inputs": ["a fine day"], "model": MODEL}, timeout=30
                    )
                except OSError as exc:  # a refused or cut connection is a failed request too
                    status, body = 0, {"error": str(exc)}
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        answers[str(round(body["results"][0]["labels"][0]["score"], 4))] += 1

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        loaded = []
        try:
            for version in range(2, 2 + SWAPS):
                add_version(root, version)
                status, _, body = request(base + f"/v2/repository/models/{MODEL}/load", {}, timeout=120)
                assert status == 200, body
                loaded.append(body["default"])
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        _, _, models = request(base + "/v1/models")
        _, _, index = request(base + "/v2/repository/index", {})

    assert loaded == list(range(2, 2 + SWAPS))
    assert set(statuses) == {200}, statuses
    assert statuses[200] > SWAPS * CLIENTS
    assert len(answers) >= 2  # both models answered: the swaps took effect under load
    assert models["models"][0]["versions"] == [1 + SWAPS]
    assert [r["version"] for r in index if r["state"] == "READY"] == [str(1 + SWAPS)]
