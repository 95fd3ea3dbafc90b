"""Hot swap through the repository API: a new version serves only once loaded, warmed and checked; requests
already on the old one finish on it; a failed load leaves the old one serving; unload, rollback, polling."""

from __future__ import annotations

import gc
import time
import weakref

import pytest

from edge_mm.errors import NotFound
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.swap import Poller
from tests.conftest import test_client, warm_registry
from tests.runtime.versions_fixtures import MODEL, add_version, artifacts_copy, with_policy

TEXT = {"inputs": ["a fine day"], "top_k": 2, "model": MODEL}


@pytest.fixture
def served(tiny_settings, tmp_path):
    """(settings, artifacts root, registry, client) on a private copy of the tiny artifacts."""
    root = artifacts_copy(tiny_settings, tmp_path / "artifacts")
    settings = with_policy(tiny_settings, root)
    registry = warm_registry(settings)
    return settings, root, registry, test_client(settings, registry)


def _repo(client):
    return client.application.extensions["edge_mm"]["repository"]


def _answer(client, model=MODEL):
    response = client.post("/v1/text-classification", json={**TEXT, "model": model})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"][0]["labels"]


def test_load_swaps_in_the_new_version_and_releases_the_old(served):
    _, root, registry, client = served
    old_runner = weakref.ref(registry.models[MODEL].runner)
    before = _answer(client)
    add_version(root, 2)
    assert _answer(client) == before  # on disk is not served until loaded
    response = client.post(f"/v2/repository/models/{MODEL}/load")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"name": MODEL, "versions": [2], "loaded": [2], "default": 2}
    assert registry.models[MODEL].version == 2
    assert _answer(client) != before
    assert client.get("/info").get_json()["models"][MODEL]["version"] == 2
    _repo(client).wait_retired()
    # released: its batcher threads (which hold it) stopped, its memory freed. Under a loaded machine a
    # thread that held it can still be unwinding when the retirer collects (seen once in a full run):
    # give it a few collections, never forever.
    for _ in range(50):
        if old_runner() is None:
            break
        gc.collect()
        time.sleep(0.1)
    assert old_runner() is None
    assert registry.models[MODEL].runner.batcher.running
    index = client.post("/v2/repository/index").get_json()
    assert {"name": MODEL, "version": "2", "state": "READY"} in index
    assert any(r.get("version") == "1" and r["state"] == "UNAVAILABLE" for r in index if r["name"] == MODEL)


def test_a_request_in_flight_finishes_on_the_old_version(served):
    _, root, registry, client = served
    old = registry.models[MODEL]
    held = old.enter()  # a request inside the old version
    add_version(root, 2)
    assert client.post(f"/v2/repository/models/{MODEL}/load").status_code == 200
    repo = _repo(client)
    assert all(t.is_alive() for t in repo.retiring)  # waits for the request in flight
    assert held.runner.warm() > 0  # the old version still runs (its batcher too)
    late, _ = old.run(Deadline.after(5), lambda runner: runner)  # arrives holding the old one: the new serves it
    assert late is registry.models[MODEL].runner
    held.leave()
    repo.wait_retired()
    assert not repo.retiring


def test_a_request_pinned_to_a_retiring_version_is_not_answered_by_another(served):
    _, root, registry, client = served
    models = Models(registry)
    old = models.get({registry.models[MODEL].kind}, "/v1/text-classification", f"{MODEL}@1")  # name@N
    held = old.enter()  # a request in flight keeps version 1 retiring, not gone
    add_version(root, 2)
    assert client.post(f"/v2/repository/models/{MODEL}/load").status_code == 200
    with pytest.raises(NotFound, match="version 1 is no longer served .replaced by version 2"):
        models.call(old, Deadline.after(5), lambda runner: runner)
    # not pinned (the model named without a version), the same late arrival is served by version 2
    assert Models(registry).call(old, Deadline.after(5), lambda runner: runner) is registry.models[MODEL].runner
    held.leave()
    _repo(client).wait_retired()
    response = client.post("/v1/text-classification", json={**TEXT, "model": f"{MODEL}@1"})
    assert response.status_code == 404


def test_a_failed_load_leaves_the_old_version_serving(served):
    _, root, registry, client = served
    before = _answer(client)
    folder = add_version(root, 2)
    damaged = next(p for p in folder.rglob("*.pt"))
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    response = client.post(f"/v2/repository/models/{MODEL}/load")
    assert response.status_code == 409
    assert "has sha256" in response.get_json()["error"]
    assert registry.models[MODEL].version == 1
    assert _answer(client) == before
    index = client.post("/v2/repository/index").get_json()
    assert any("has sha256" in r.get("reason", "") for r in index)


def test_rollback_after_a_bad_version(served):
    _, root, registry, client = served
    add_version(root, 2)
    assert client.post(f"/v2/repository/models/{MODEL}/load").status_code == 200
    v2 = _answer(client)
    add_version(root, 3)  # a bad version: it loads, but it is not the model wanted
    assert client.post(f"/v2/repository/models/{MODEL}/load").status_code == 200
    assert registry.models[MODEL].version == 3
    response = client.post(f"/v2/repository/models/{MODEL}/rollback")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["rolled_back"] == 3
    assert registry.models[MODEL].version == 2
    assert _answer(client) == v2
    assert client.post(f"/v2/repository/models/{MODEL}/load").get_json()["default"] == 2  # 3 stays rolled back
    assert client.post(f"/v2/repository/models/{MODEL}/rollback").status_code == 200  # to 1
    nothing_left = client.post(f"/v2/repository/models/{MODEL}/rollback")
    assert nothing_left.status_code == 409
    assert "no version before 1" in nothing_left.get_json()["error"]
    assert registry.models[MODEL].version == 1


def test_unload_then_load(served):
    _, _, registry, client = served
    assert client.post(f"/v2/repository/models/{MODEL}/unload").status_code == 200
    gone = client.post("/v1/text-classification", json=TEXT)
    assert gone.status_code == 404
    assert MODEL not in [m["name"] for m in client.get("/v1/models").get_json()["models"]]
    assert client.post(f"/v2/repository/models/{MODEL}/load").status_code == 200
    _answer(client)
    assert client.post("/v2/repository/models/nope/load").status_code == 404


def test_the_poller_loads_a_new_version_once(served):
    _, root, registry, client = served
    poller = Poller(_repo(client), 60)
    assert poller.poll_once() == []
    add_version(root, 2)
    assert poller.poll_once() == [MODEL]
    assert registry.models[MODEL].version == 2
    assert poller.poll_once() == []
    folder = add_version(root, 3)
    (folder / "manifest.json").write_text("{}")  # damaged: tried once, not again until the disk changes
    assert poller.poll_once() == []
    assert registry.models[MODEL].version == 2


def test_the_repository_api_is_for_administrators(tiny_settings, served):
    settings, _, registry, client = served
    remote = client.post("/v2/repository/index", environ_base={"REMOTE_ADDR": "192.168.1.7"})
    assert remote.status_code == 401
    keyed = test_client(settings.replace(server__api_keys=["k"]), registry)
    assert keyed.post("/v2/repository/index").status_code == 401
    assert keyed.post("/v2/repository/index", headers={"X-API-Key": "k"}).status_code == 200
    bad = client.post("/v2/repository/index", data="[1]", content_type="application/json")
    assert bad.status_code == 400
