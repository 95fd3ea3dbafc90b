"""`edge-mm serve`: load and check the models, start waitress, warm up, report ready; drain on SIGTERM/SIGINT."""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import sys
import threading

from edge_mm.api import create_app
from edge_mm.config import Settings
from edge_mm.runtime.malloc import fix_mmap_threshold, limit_malloc_arenas
from edge_mm.runtime.registry import load_registry
from edge_mm.runtime.swap import Poller
from edge_mm.runtime.update_poll import UpdatePoller
from edge_mm.serving.drain import Drain, ready_503_while_draining, serve_until_drained
from edge_mm.serving.listening import announce
from edge_mm.serving.waitress_server import create_server, door_from_settings
from edge_mm.streams.manager import StreamManager
from edge_mm.tasks.table import LOADERS, OPTIONS

log = logging.getLogger("edge_mm.server")

REQUESTS_CUT = 1  # exit code: the drain ended with requests unfinished
WARM_UP_FAILED = 3  # exit code: a model's warm-up failed (runtime.serve_after_failed_warmup = false)


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


def exit_code_after_drain(drain: Drain, unfinished: int, warm_up: threading.Thread, *, warm_up_failed: bool) -> int:
    """Wait for warm-up until the drain's deadline (not a second timeout), then the exit code:
    ``WARM_UP_FAILED``, ``REQUESTS_CUT`` when ``unfinished`` requests were cut, else 0."""
    warm_up.join(timeout=0 if drain.hurry.is_set() else drain.remaining())
    if unfinished:
        log.error("shutdown cut %d request(s) short", unfinished)
    if warm_up_failed:
        return WARM_UP_FAILED
    return REQUESTS_CUT if unfinished else 0


def serve(settings: Settings, drain: Drain | None = None) -> int:
    """Blocks until SIGTERM/SIGINT (or ``drain``), then drains; the exit code (``exit_code_after_drain``).
    A bad manifest, hash or device raises ConfigError before binding."""
    drain = drain or Drain()
    drain.install()  # a signal while models load stops the server once they are loaded
    limit_malloc_arenas()
    fix_mmap_threshold()  # a hot-swapped version's freed weights go back to the OS (runtime/malloc.py)
    # fails fast: the server does not start on bad artifacts or options
    registry = load_registry(settings, LOADERS, options=OPTIONS)
    for name, choice in registry.info["models"].items():
        log.info("%s -> %s (%s)", name, choice["device"], choice["reason"])
    if drain.requested.is_set():
        log.info("%s while loading: not serving", drain.signal_name)
        return 0
    # what loading made lives as long as the server: keep it out of the collector's sweeps
    gc.collect()
    gc.freeze()
    # with Python's 5 ms a thread that would start a forward pass can wait that long behind one that
    # parses or tokenizes while a core idles (docs/numbers.md, "The interpreter lock")
    sys.setswitchinterval(settings["server.gil_switch_interval_ms"] / 1000)
    registry.info.setdefault("threads", {})["gil_switch_interval_ms"] = round(sys.getswitchinterval() * 1000, 3)
    host = settings["server.host"]
    warn_if_open(host, settings["server.api_keys"])
    door = door_from_settings(settings)
    streams = StreamManager(settings, registry)  # a bad [[streams]] entry stops start-up here
    app = create_app(settings, registry, door=door, stream_manager=streams)
    if settings["runtime.poll_s"] > 0:  # new model versions on disk swap in without a restart
        Poller(app.extensions["edge_mm"]["repository"], settings["runtime.poll_s"]).start()
    if settings["updates.poll_s"] > 0:  # signed bundles listed on the LAN source are pulled and swapped in
        UpdatePoller(app.extensions["edge_mm"]["repository"]).start()
    server = create_server(ready_503_while_draining(app, drain.requested), settings, door)
    server.draining = drain.requested
    drain.attach(server.pull_trigger)
    warm_up_failed = threading.Event()

    def warm() -> None:
        registry.warm_all()
        if registry.failure is not None and not settings["runtime.serve_after_failed_warmup"]:
            log.error(
                "%s (see the error above); stopping (runtime.serve_after_failed_warmup = true would keep "
                "serving, not ready)",
                registry.failure,
            )
            warm_up_failed.set()
            drain.stop("warm-up failure")

    warm_up = threading.Thread(target=warm, name="warm-up", daemon=True)
    warm_up.start()
    streams.start()  # readers connect now; analysers wait for the models to be ready

    def stop_streams() -> None:  # in the drain: readers stop, open events end, outputs flush
        drain.requested.wait()
        streams.stop(max(0.5, min(settings["server.drain_timeout_s"], drain.remaining()) * 0.8))

    threading.Thread(target=stop_streams, name="streams-stop", daemon=True).start()
    log.info("serving on http://%s:%s (ready once warm-up ends: GET /health/ready)", host, server.effective_port)
    announce(f"http://{host}:{server.effective_port}")
    unfinished = serve_until_drained(server, drain, settings["server.drain_timeout_s"])
    streams.stop(drain.remaining())  # at once if the drain's thread has done it
    code = exit_code_after_drain(drain, unfinished, warm_up, warm_up_failed=warm_up_failed.is_set())
    if unfinished or warm_up.is_alive():
        # threads still inside torch would race interpreter teardown (abort); leave without it
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code
