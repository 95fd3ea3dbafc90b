"""Model versions: the flat layout is version 1, numbered folders are versions, the policy picks what serves,
and requests may name a version (``name@N``, ``/v2/models/NAME/versions/N``)."""

from __future__ import annotations

import pytest

from edge_mm.build.signing import keygen, signer
from edge_mm.config import load_settings
from edge_mm.errors import ConfigError, NotFound
from edge_mm.runtime.versions import Catalog, parse_policy, split_name
from tests.conftest import test_client, warm_registry
from tests.runtime.versions_fixtures import MODEL, add_version, artifacts_copy, with_policy

TEXT = {"inputs": ["a fine day", "awful"], "top_k": 2}


@pytest.fixture(scope="module")
def two_versions(tiny_settings, tmp_path_factory):
    root = artifacts_copy(tiny_settings, tmp_path_factory.mktemp("versions") / "artifacts")
    add_version(root, 2)
    return root


def _scores(client, model):
    response = client.post("/v1/text-classification", json={**TEXT, "model": model})
    assert response.status_code == 200, response.get_json()
    return [[round(x["score"], 5) for x in r["labels"]] for r in response.get_json()["results"]]


def test_policy_and_name_parsing():
    assert parse_policy("latest") == ("latest", ())
    assert parse_policy("3,2") == ("specific", (2, 3))
    for bad in ("newest", "0", "2,x", ""):
        with pytest.raises(ValueError, match="not a version policy"):
            parse_policy(bad)
    assert split_name("minilm@3") == ("minilm", 3)
    assert split_name("minilm") == ("minilm", None)
    with pytest.raises(ValueError, match="positive whole number"):
        split_name("minilm@x")


def test_a_bad_policy_in_settings_stops_start_up(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('[[models]]\nname = "m"\ntask = "embeddings"\nsource = "x"\nversion_policy = "newest"\n')
    with pytest.raises(ConfigError, match="version_policy: 'newest' is not allowed"):
        load_settings(path, env={})


def test_the_flat_layout_is_version_1(client):
    models = {m["name"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert models[MODEL]["version"] == 1
    assert models[MODEL]["versions"] == [1]
    assert client.get(f"/v2/models/{MODEL}").get_json()["versions"] == ["1"]
    assert client.post("/v1/text-classification", json={**TEXT, "model": f"{MODEL}@1"}).status_code == 200


def test_latest_serves_the_highest_version(tiny_settings, two_versions):
    settings = with_policy(tiny_settings, two_versions)
    registry = warm_registry(settings)
    assert registry.models[MODEL].version == 2
    assert sorted(registry.served_versions(MODEL)) == [2]
    assert registry.info["models"][MODEL]["version"] == 2
    with pytest.raises(NotFound, match="has no version 1 served; it serves \\[2\\]"):
        registry.named(f"{MODEL}@1")
    assert registry.models["tiny-embed"].version == 1  # the other models: the flat layout, as before


def test_all_serves_every_version_and_requests_pick_one(tiny_settings, two_versions):
    settings = with_policy(tiny_settings, two_versions, "all")
    client = test_client(settings, warm_registry(settings))
    models = {m["name"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert models[MODEL]["versions"] == [1, 2]
    assert models[MODEL]["version"] == 2
    v1, v2, default = _scores(client, f"{MODEL}@1"), _scores(client, f"{MODEL}@2"), _scores(client, MODEL)
    assert v1 != v2  # two different models
    assert default == v2
    assert client.get(f"/v2/models/{MODEL}").get_json()["versions"] == ["1", "2"]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a fine day"]}]}
    answer = client.post(f"/v2/models/{MODEL}/versions/1/infer", json=body)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["model_version"] == "1"
    assert client.post(f"/v2/models/{MODEL}/infer", json=body).get_json()["model_version"] == "2"
    missing = client.post(f"/v2/models/{MODEL}/versions/3/infer", json=body)
    assert missing.status_code == 404
    assert "no version 3" in missing.get_json()["error"]
    bad = client.post("/v1/text-classification", json={**TEXT, "model": f"{MODEL}@two"})
    assert bad.status_code == 404


def test_a_specific_policy_pins_a_version(tiny_settings, two_versions):
    registry = warm_registry(with_policy(tiny_settings, two_versions, "1"))
    assert sorted(registry.served_versions(MODEL)) == [1]
    with pytest.raises(ConfigError, match=r"names version\(s\) \[7\] that are not in"):
        warm_registry(with_policy(tiny_settings, two_versions, "7"))


def test_rolled_back_versions_are_skipped_by_latest(tiny_settings, two_versions, tmp_path):
    root = artifacts_copy(tiny_settings, tmp_path / "artifacts")
    add_version(root, 2)
    catalog = Catalog(root, None)
    assert catalog.selected(MODEL, "latest") == [2]
    catalog.set_rolled_back(MODEL, {2})
    assert catalog.selected(MODEL, "latest") == [1]
    assert catalog.selected(MODEL, "all") == [1, 2]


def test_a_version_is_signed_like_the_flat_manifest(tiny_settings, tmp_path):
    private, public = keygen(tmp_path / "keys" / "build")
    root = artifacts_copy(tiny_settings, tmp_path / "artifacts")
    sign = signer(private)
    sign(root)
    add_version(root, 2)  # not signed
    settings = with_policy(tiny_settings, root, runtime__verify_key=str(public))
    with pytest.raises(ConfigError, match="is not signed"):
        warm_registry(settings)
    add_version(root, 2, sign=sign)
    assert warm_registry(settings).models[MODEL].version == 2
    manifest = root / MODEL / "2" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"text-classification"', '"text-classification" '))
    with pytest.raises(ConfigError, match="not a valid signature"):
        warm_registry(settings)


def test_edge_mm_check_reads_a_version_from_its_own_folder(tiny_settings, two_versions):
    import io

    from edge_mm.runtime.self_check import run_check
    from edge_mm.tasks.table import LOADERS, OPTIONS

    out = io.StringIO()
    assert run_check(with_policy(tiny_settings, two_versions), LOADERS, out, options=OPTIONS) == 0, out.getvalue()
    assert "tiny-sentiment: ok" in out.getvalue()


def test_metrics_show_every_version_served(tiny_settings, two_versions):
    from tests.api.test_metrics import scrape, value

    settings = with_policy(tiny_settings, two_versions, "all")
    client = test_client(settings, warm_registry(settings))
    for model in (f"{MODEL}@1", f"{MODEL}@1", MODEL):
        _scores(client, model)
    m = scrape(client)
    assert value(m, "edge_mm_inference_seconds_count", model=MODEL, version="1") == 2
    assert value(m, "edge_mm_inference_seconds_count", model=MODEL, version="2") == 1
    for version in ("1", "2"):
        assert value(m, "edge_mm_slots", model=MODEL, version=version) >= 1
        assert value(m, "edge_mm_model_warmup_seconds", model=MODEL, version=version) > 0
    admission = client.get("/info").get_json()["admission"]
    assert {MODEL, f"{MODEL}@1"} <= set(admission)
    assert admission[f"{MODEL}@1"]["max_in_flight"] >= 1


def test_edge_mm_check_compares_every_version_served(tiny_settings, tmp_path):
    """Version 2 of the model records version 3's reference sample: the check fails on tiny-sentiment@2
    although the default version (3) reproduces its own."""
    import hashlib
    import io
    import json
    import shutil

    from edge_mm.runtime.self_check import run_check
    from edge_mm.tasks.table import LOADERS, OPTIONS

    root = artifacts_copy(tiny_settings, tmp_path / "artifacts")
    two, three = add_version(root, 2), add_version(root, 3)
    manifest = json.loads((two / "manifest.json").read_text())
    ref = manifest["models"][MODEL]["files"]["reference"]
    theirs = json.loads((three / "manifest.json").read_text())["models"][MODEL]["files"]["reference"]["path"]
    shutil.copyfile(three / theirs, two / ref["path"])
    ref["sha256"] = hashlib.sha256((two / ref["path"]).read_bytes()).hexdigest()
    (two / "manifest.json").write_text(json.dumps(manifest))
    out = io.StringIO()
    assert run_check(with_policy(tiny_settings, root, "2,3"), LOADERS, out, options=OPTIONS) == 1, out.getvalue()
    assert f"{MODEL}@2: MISMATCH" in out.getvalue()
    assert f"{MODEL}: ok" in out.getvalue()
