"""The Ray Serve application: one deployment per configured model, and an HTTP ingress running the
same Flask app as ``edge-mm serve`` (routes, parsing, validation, answers), whose model calls go to
those deployments (edge_mm/ray_serve/remote.py).

Every model replica loads its own model only, from the same artifacts folder and hash-checked
manifest as ``edge-mm serve`` (``load_registry`` on the settings narrowed to that model), so every
node needs the settings file and the artifacts at the same path.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from a2wsgi import WSGIMiddleware
from ray import serve
from ray.serve.handle import DeploymentHandle

import edge_mm
from edge_mm import device as device_policy
from edge_mm.api import create_app
from edge_mm.config import Settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import read_manifest
from edge_mm.ray_serve.options import ModelDeployment, model_deployments
from edge_mm.ray_serve.remote import (
    Outcome,
    RemoteRunner,
    RemoteServed,
    plain_attribute,
    remote_registry,
    run_shipped,
    set_replica_model,
)
from edge_mm.runtime.admission import Admission
from edge_mm.runtime.options import served_entry
from edge_mm.runtime.registry import Served, load_registry
from edge_mm.tasks.table import LOADERS, OPTIONS

log = logging.getLogger("edge_mm.ray_serve")

APP_NAME = "edge-mm"
INGRESS = "ingress"
HEAD = "node:__internal_head__"  # the resource Ray gives the head node only


def set_switch_interval(settings: Settings) -> None:
    """``server.gil_switch_interval_ms`` in this replica's process, as ``edge-mm serve`` sets it in its own: the
    ingress's WSGI threads and a replica's forward passes share the interpreter lock the same way."""
    sys.setswitchinterval(settings["server.gil_switch_interval_ms"] / 1000)


def deployment_name(model: str) -> str:
    return f"model-{model}"


def replica_settings(settings: Settings, name: str, num_cpus: float) -> Settings:
    """``settings`` narrowed to one model; derived thread counts come from the replica's CPU share."""
    one = Settings(values=settings.values, models=(settings.model(name),), base_dir=settings.base_dir)
    share = max(1, math.ceil(num_cpus))
    overrides: dict[str, Any] = {}
    if settings["runtime.intra_op_threads"] == 0:
        overrides["runtime__intra_op_threads"] = 1
    if settings["runtime.concurrent_inferences"] == 0:
        overrides["runtime__concurrent_inferences"] = share
    return one.replace(**overrides)


class ModelReplica:
    """One replica of one model: loads and warms it like ``edge-mm serve`` does, then runs shipped work."""

    def __init__(self, settings: Settings, name: str, num_cpus: float) -> None:
        set_switch_interval(settings)
        registry = load_registry(replica_settings(settings, name, num_cpus), LOADERS, options=OPTIONS)
        registry.warm_all()
        if not registry.ready:
            raise RuntimeError(f"model {name!r}: {registry.failure}")
        self.served: Served = registry.models[name]
        set_replica_model(self.served)

    def run(self, work: bytes, remaining_s: float, budget_s: float) -> Outcome:
        return run_shipped(self.served, work, remaining_s, budget_s)

    def attribute(self, name: str) -> tuple[bool, Any]:
        return plain_attribute(self.served.runner, name)


class Ingress:
    """The HTTP entry: edge-mm's Flask app over remote models (WSGI in Serve's ASGI ingress, via a2wsgi)."""

    def __init__(
        self, settings: Settings, handles: dict[str, DeploymentHandle], deployments: dict[str, ModelDeployment]
    ) -> None:
        self.settings = settings
        set_switch_interval(settings)
        self.registry = remote_registry(ingress_models(settings, handles, deployments), ingress_info(settings))

    def __serve_build_asgi_app__(self) -> Any:
        app: Any = create_app(self.settings, self.registry)  # a WSGI callable (Flask's types are narrower)
        return WSGIMiddleware(app, workers=self.settings["server.threads"])


def ingress_models(
    settings: Settings, handles: dict[str, DeploymentHandle], deployments: dict[str, ModelDeployment]
) -> dict[str, RemoteServed]:
    """Each model as the ingress sees it: its manifest entry (read here, the signature checked when
    runtime.verify_key is set) with the options it serves with, the device its replicas will pick, and
    the handle to them."""
    root = settings.path("runtime.artifacts_dir")
    manifest = read_manifest(root, verify_key=settings.optional_path("runtime.verify_key"))
    out = {}
    for spec in settings.models:
        entry = manifest.models.get(spec.name)
        if entry is None:
            raise ConfigError(
                f"model {spec.name!r} is in settings but not in {root}/manifest.json; run 'edge-mm build'"
            )
        entry = served_entry(spec, entry, OPTIONS[spec.task])  # the ingress's tasks read its options
        requested, setting = device_policy.requested_device(settings["runtime.device"], spec.device)
        choice = device_policy.resolve(
            requested, deployments[spec.name].num_gpus > 0, set(entry.variants), setting=setting
        )
        admission = Admission(1, 0, settings["runtime.request_timeout_s"])  # shown by /info; replicas admit
        handle = handles[spec.name]
        out[spec.name] = RemoteServed(
            spec.name, entry.task, RemoteRunner(handle), admission, choice.device, choice.variant, entry, handle=handle
        )
    return out


def ingress_info(settings: Settings) -> dict[str, Any]:
    return {
        "edge_mm_version": edge_mm.__version__,
        "engine": "ray",
        # set in every replica's process (set_switch_interval), as edge-mm serve sets it in its own
        "threads": {"gil_switch_interval_ms": settings["server.gil_switch_interval_ms"]},
        "models": {
            name: {"task": settings.model(name).task, **d.serve_options()}
            for name, d in model_deployments(settings).items()
        },
    }


def _deployment(cls: type) -> Any:
    return serve.deployment(cls)


def build_app(settings: Settings) -> Any:
    """The Serve application (``serve.run`` it): one deployment per model and the ingress."""
    deployments = model_deployments(settings)
    handles = {}
    for name, d in deployments.items():
        replica = _deployment(ModelReplica).options(name=deployment_name(name), **d.serve_options())
        handles[name] = replica.bind(settings, name, d.num_cpus)
    ingress_actor: dict[str, Any] = {"num_cpus": 0}
    if settings["ray.ingress_replicas"] == 1:
        ingress_actor["resources"] = {HEAD: 0.001}  # the head outlives any worker node: no request lost there
    ingress = _deployment(serve.ingress()(Ingress)).options(
        name=INGRESS,
        num_replicas=settings["ray.ingress_replicas"],
        ray_actor_options=ingress_actor,
        max_ongoing_requests=max(100, settings["server.threads"]),
    )
    return ingress.bind(settings, handles, deployments)
