"""deploy/kubernetes/: every manifest against the Kubernetes 1.30 schemas (offline), and the
references between them, the server's settings and the measured RSS.

No cluster runs here: kubernetes-validate ships the OpenAPI-derived JSON schemas, and the
strict variant rejects unknown fields, so a misspelled key fails like a missing one."""

from __future__ import annotations

import copy
import json
import re
import socket
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from edge_mm.config import SETTINGS, load_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"
EXPECTED_KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PersistentVolumeClaim",
    "PodDisruptionBudget",
    "Secret",
    "Service",
}
EXAMPLE = re.compile(r"^\s*# queue-depth example: begin\n(.*?)^\s*# queue-depth example: end\n", re.M | re.S)


def load_manifests() -> dict[str, dict[str, Any]]:
    """Every document under deploy/kubernetes/, by kind (one of each)."""
    docs = [d for f in sorted(MANIFESTS.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object per kind expected"
    return by_kind


def validate(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schemas come with the package: any connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access during manifest validation")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def manifests() -> dict[str, dict[str, Any]]:
    return load_manifests()


def quantity_bytes(q: str) -> int:
    """A Kubernetes memory quantity ('1600Mi', '2G', '512') in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    m = re.fullmatch(r"(\d+)([KMGT]i?|k)?", str(q))
    assert m, f"unexpected memory quantity {q!r}"
    return int(m[1]) * units.get(m[2] or "", 1)


def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (c,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def pod_settings(manifests: dict[str, dict[str, Any]], tmp_path: Path):
    """The settings a pod starts with: the ConfigMap's settings.toml plus the container's env."""
    path = tmp_path / "settings.toml"
    path.write_text(manifests["ConfigMap"]["data"]["settings.toml"])
    secret = manifests["Secret"]["stringData"]
    env = {}
    for e in container(manifests)["env"]:
        env[e["name"]] = secret[e["valueFrom"]["secretKeyRef"]["key"]] if "valueFrom" in e else e["value"]
    return load_settings(path, env=env)


def test_one_object_of_each_kind(manifests):
    assert set(manifests) == EXPECTED_KINDS


@pytest.mark.parametrize("kind", sorted(EXPECTED_KINDS))
def test_validates_against_the_kubernetes_schema(manifests, kind):
    validate(manifests[kind])


def test_queue_depth_example_validates_when_uncommented():
    text = (MANIFESTS / "hpa.yaml").read_text()
    block = EXAMPLE.search(text)
    assert block, "hpa.yaml: queue-depth example markers not found"
    uncommented = re.sub(r"^(\s*)# ?", r"\1", block[1], flags=re.M)
    hpa = yaml.safe_load(text.replace(block[0], uncommented))
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert hpa["spec"]["metrics"][1]["pods"]["metric"]["name"] == "edge_mm_queue_depth"
    validate(hpa)


def _wrong_api_version(m):
    m["Deployment"]["apiVersion"] = "apps/v1beta9"


def _no_selector(m):
    del m["Deployment"]["spec"]["selector"]


def _misspelled_probe(m):
    c = container(m)
    c["readinessProbes"] = c.pop("readinessProbe")


def _port_as_word(m):
    m["Service"]["spec"]["ports"][0]["port"] = "eighty"


def _hpa_without_target(m):
    del m["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]


@pytest.mark.parametrize(
    ("kind", "breaks"),
    [
        ("Deployment", _wrong_api_version),
        ("Deployment", _no_selector),
        ("Deployment", _misspelled_probe),
        ("Service", _port_as_word),
        ("HorizontalPodAutoscaler", _hpa_without_target),
    ],
)
def test_a_broken_copy_is_rejected(manifests, kind, breaks):
    broken = copy.deepcopy(manifests)
    breaks(broken)
    with pytest.raises((kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError)):
        validate(broken[kind])
    validate(manifests[kind])  # the original still passes: the break, not the setup, failed it


def test_selectors_match_the_pod_labels(manifests):
    labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    assert selects(manifests["Deployment"]["spec"]["selector"]["matchLabels"])
    assert selects(manifests["Service"]["spec"]["selector"])
    assert selects(manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    spread = manifests["Deployment"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert all(selects(t["labelSelector"]["matchLabels"]) for t in spread)


def test_service_and_probes_reach_the_server_port(manifests, tmp_path):
    c = container(manifests)
    (port,) = c["ports"]
    assert port["containerPort"] == pod_settings(manifests, tmp_path)["server.port"]
    (svc,) = manifests["Service"]["spec"]["ports"]
    assert svc["targetPort"] in (port["name"], port["containerPort"])
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["startupProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])


def test_referenced_config_map_secret_and_target_exist(manifests):
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    config_maps = [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v]
    assert config_maps == [manifests["ConfigMap"]["metadata"]["name"]]
    refs = [e["valueFrom"]["secretKeyRef"] for e in container(manifests)["env"] if "valueFrom" in e]
    assert refs, "API keys are expected from the Secret"
    for ref in refs:
        assert ref["name"] == manifests["Secret"]["metadata"]["name"]
        assert ref["key"] in manifests["Secret"]["stringData"]
    mounts = {m["name"] for m in container(manifests)["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]}
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", manifests["Deployment"]["metadata"]["name"])


def test_pod_settings_load_and_serve_the_default_models(manifests, tmp_path):
    env_names = {s.env for s in SETTINGS}
    assert {e["name"] for e in container(manifests)["env"]} <= env_names
    settings = pod_settings(manifests, tmp_path)
    assert settings["server.host"] == "0.0.0.0"
    assert settings["server.api_keys"] == [manifests["Secret"]["stringData"]["api-keys"]]
    assert settings.models == load_settings(ROOT / "settings.toml", env={}).models
    raw = tomllib.loads(manifests["ConfigMap"]["data"]["settings.toml"])
    assert Path(raw["runtime"]["artifacts_dir"]).is_absolute(), "relative would resolve beside the mounted file"
    c = container(manifests)
    assert c["args"][c["args"].index("--config") + 1] == "/etc/edge-mm/settings.toml"
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "settings"]
    assert mount["mountPath"] == "/etc/edge-mm"


def test_grace_period_covers_pre_stop_and_drain(manifests, tmp_path):
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    drain = pod_settings(manifests, tmp_path)["server.drain_timeout_s"]
    pre_stop = container(manifests)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert drain >= 30
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain


def test_memory_from_the_measured_rss(manifests):
    resources = container(manifests)["resources"]
    request = quantity_bytes(resources["requests"]["memory"])
    limit = quantity_bytes(resources["limits"]["memory"])
    assert limit >= request
    # bench figures are MiB (VmRSS / 1024): the request covers the soak's highest sample.
    soak = json.loads((ROOT / "bench" / "results" / "soak.json").read_text())
    peak_mib = max(rss for _, rss in soak["rss_samples"])
    assert request >= peak_mib * 2**20


def test_non_root_read_only_with_a_writable_tmp(manifests):
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    c = container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    (tmp,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume


def test_the_face_store_is_on_the_claim(manifests, tmp_path):
    """runtime.faces_db lies on a mounted PersistentVolumeClaim (read-only root: nowhere else is writable
    and kept), so registrations survive a pod's restart."""
    faces_db = Path(pod_settings(manifests, tmp_path)["runtime.faces_db"])
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    (mount,) = [m for m in container(manifests)["volumeMounts"] if faces_db.is_relative_to(m["mountPath"])]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == manifests["PersistentVolumeClaim"]["metadata"]["name"]
    assert not mount.get("readOnly")
