"""``edge-mm serve --engine ray``: deploy the configured models on Ray Serve, then wait for SIGTERM/SIGINT.

Joins the cluster named by ``ray.address`` (or starts a one-machine Ray), starts Serve's HTTP proxy on
``server.host:server.port``, deploys, prints where it listens, and on a signal deletes the application.
"""

from __future__ import annotations

import logging
import signal
import threading

import ray
from ray import serve

from edge_mm.config import Settings
from edge_mm.ray_serve.app import APP_NAME, build_app
from edge_mm.ray_serve.options import model_deployments
from edge_mm.serving.listening import announce

log = logging.getLogger("edge_mm.ray_serve")


def serve_on_ray(settings: Settings) -> None:
    """Blocks until SIGTERM/SIGINT. Bad settings raise ConfigError before Ray is touched."""
    model_deployments(settings)  # fail fast on a bad [ray] table
    address = settings["ray.address"] or None
    if address is None:  # a one-machine Ray, its services on loopback only
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs its own
        signal.signal(sig, lambda *_: stop.set())
    try:
        host, port = settings["server.host"], settings["server.port"]
        serve.start(proxy_location=settings["ray.proxy_location"], http_options={"host": host, "port": port})
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
        log.info("deployed %s on Ray Serve: %s", APP_NAME, ", ".join(m.name for m in settings.models))
        announce(f"http://{host}:{port}", " (Ray Serve)")
        stop.wait()
        log.info("stopping: deleting the %s application", APP_NAME)
        serve.delete(APP_NAME)
    finally:
        ray.shutdown()
