"""The Ray Serve engine's parts that need no cluster: [ray] settings per model, a task's work shipped
to a replica and run there, and Ray kept out of the bundle."""

from __future__ import annotations

import re
import time

import pytest

from edge_mm.config import load_settings
from edge_mm.errors import BadInput, ConfigError
from edge_mm.ray_serve.options import model_deployments
from tests.conftest import ROOT, need_import


def settings(tmp_path, ray: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "settings.toml"
    p.write_text(
        "[[models]]\nname = 'a'\ntask = 'embeddings'\nsource = 'x'\n"
        "[[models]]\nname = 'b'\ntask = 'image-classification'\nsource = 'y'\n" + ray
    )
    return load_settings(p, env={})


def test_model_deployments_defaults_and_per_model_overrides(tmp_path):
    d = model_deployments(settings(tmp_path, "[ray]\nnum_cpus = 0.5\n[ray.models.b]\nreplicas = 2\nmax_replicas = 4\n"))
    assert d["a"].serve_options() == {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0.0}}
    b = d["b"].serve_options()
    assert b["autoscaling_config"]["min_replicas"] == 2
    assert b["autoscaling_config"]["max_replicas"] == 4
    assert b["autoscaling_config"]["target_ongoing_requests"] == 2.0
    assert "num_replicas" not in b


@pytest.mark.parametrize(
    ("ray", "needle"),
    [
        ("[ray.models.c]\nreplicas = 2\n", "['c'] not among the configured models"),
        ("[ray.models.a]\nreplica = 2\n", "ray.models.a: unknown key(s) ['replica']"),
        ("[ray.models.a]\nreplicas = 0\n", "ray.models.a.replicas: 0 is too small"),
        ("[ray.models.a]\nreplicas = 1.5\n", "ray.models.a.replicas: 1.5 is not a valid int"),
        ("[ray.models]\na = 3\n", "ray.models.a: expected a table"),
    ],
)
def test_bad_ray_model_tables_say_what_to_fix(tmp_path, ray, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        model_deployments(settings(tmp_path, ray))


def test_shipped_work_runs_on_the_replica_model_with_its_time_left():
    need_import("ray", "Ray is not installed: pip install -r requirements/ray.txt")
    from edge_mm.manifest import ModelEntry
    from edge_mm.ray_serve import remote
    from edge_mm.runtime.admission import Admission
    from edge_mm.runtime.deadline import Deadline
    from edge_mm.runtime.registry import Served

    entry = ModelEntry.__new__(ModelEntry)  # the closure carries it, nothing reads it here
    ingress_side = remote.RemoteServed("m", "embeddings", None, Admission(1, 0, 1.0), "cpu", "cpu", entry)
    replica = Served("m", "embeddings", {"scale": 3}, Admission(1, 0, 5.0), "cpu", "cpu", entry)
    remote.set_replica_model(replica)
    deadline = Deadline(time.monotonic() + 7.0, 10.0)
    request = {"model": ingress_side, "x": 2}

    def work(runner):  # type: ignore[no-untyped-def]
        assert request["model"] is replica  # the shipped Served is the replica's own
        return runner["scale"] * request["x"], round(deadline.remaining())

    outcome = remote.run_shipped(replica, remote.dumps_work(work), deadline.remaining(), deadline.budget_s)
    assert outcome.error is None
    assert outcome.value == (6, 7)

    def bad(_runner):  # type: ignore[no-untyped-def]
        raise BadInput("not an image")

    outcome = remote.run_shipped(replica, remote.dumps_work(bad), 5.0, 10.0)
    assert isinstance(outcome.error, BadInput)
    assert outcome.error.status == 400


def test_ray_is_not_in_the_bundle():
    from edge_mm.build.bundle_contents import excluded_modules, is_runtime_module

    assert {"ray", "a2wsgi", "edge_mm.ray_serve"} <= set(excluded_modules())
    assert not is_runtime_module("edge_mm.ray_serve.app")
    assert is_runtime_module("edge_mm.serving.drain")
    assert "ray[serve]==" in ROOT.joinpath("requirements", "ray.txt").read_text()


def test_replicas_set_the_switch_interval_and_the_ingress_info_says_it(tmp_path):
    need_import("ray", "the Ray Serve application module imports ray")
    import sys

    from edge_mm.ray_serve import app

    s = settings(tmp_path, "[server]\ngil_switch_interval_ms = 2.5\n")
    before = sys.getswitchinterval()
    try:
        app.set_switch_interval(s)
        assert sys.getswitchinterval() == pytest.approx(0.0025)
    finally:
        sys.setswitchinterval(before)
    assert app.ingress_info(s)["threads"] == {"gil_switch_interval_ms": 2.5}
