"""`edge-mm serve`: load and check the models, start waitress, warm up, then report ready."""

from __future__ import annotations

import ipaddress
import logging
import threading

from edge_mm.api import create_app
from edge_mm.config import Settings
from edge_mm.runtime.malloc import limit_malloc_arenas
from edge_mm.runtime.registry import load_registry
from edge_mm.tasks.table import LOADERS

log = logging.getLogger("edge_mm.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_open(host: str, api_keys: list[str]) -> bool:
    """Log a warning when binding beyond loopback with no API keys; True when it warned."""
    if is_loopback(host) or api_keys:
        return False
    log.warning("binding %s without api_keys: anyone on the network can call the models", host)
    return True


def serve(settings: Settings) -> None:
    """Blocks until interrupted. A bad manifest, hash or device raises ConfigError before binding."""
    import waitress

    limit_malloc_arenas()
    registry = load_registry(settings, LOADERS)  # fails fast: the server does not start on bad artifacts
    for name, choice in registry.info["models"].items():
        log.info("%s -> %s (%s)", name, choice["device"], choice["reason"])
    host, port = settings["server.host"], settings["server.port"]
    warn_if_open(host, settings["server.api_keys"])
    app = create_app(settings, registry)
    server = waitress.create_server(
        app,
        host=host,
        port=port,
        threads=settings["server.threads"],
        max_request_body_size=settings["server.max_body_bytes"],
        ident="edge-mm",
        clear_untrusted_proxy_headers=True,
    )
    threading.Thread(target=registry.warm_all, name="warm-up", daemon=True).start()
    log.info("serving on http://%s:%s (ready once warm-up ends: GET /health/ready)", host, server.effective_port)
    print(f"edge-mm listening on http://{host}:{server.effective_port}", flush=True)
    server.run()
