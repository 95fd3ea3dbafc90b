"""`edge-mm pull` and `edge-mm rollback`: change the files, then tell a running server (repository API).

A server running from the same settings is reached at ``server.host:server.port`` (loopback when it binds
every address) with the first of ``server.api_keys``; with none running, the change serves at the next start.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any, TextIO

from edge_mm.config import Settings
from edge_mm.errors import ConfigError
from edge_mm.runtime.update_bundle import UpdateRefused, pull, rollback_on_disk
from edge_mm.runtime.versions import Catalog


def server_call(settings: Settings, path: str, timeout_s: float = 600) -> tuple[int, dict[str, Any]] | None:
    """(status, JSON body) of ``POST path`` on the server these settings run; None when none answers."""
    host = settings["server.host"]
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    headers = {"Content-Type": "application/json"}
    if settings["server.api_keys"]:
        headers["X-API-Key"] = settings["server.api_keys"][0]
    url = f"http://{host}:{settings['server.port']}{path}"
    request = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.load(exc)
        except ValueError:
            return exc.code, {"error": exc.reason}
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None  # no server listens there


def pull_command(settings: Settings, url: str, *, load: bool = True, out: TextIO = sys.stdout) -> int:
    """0: in place (and serving, where a server runs); 1: refused, or it failed to load (then it is marked
    rolled back so the next start serves the version before it); the message says which."""
    try:
        pulled = pull(settings, url)
    except UpdateRefused as exc:
        print(f"edge-mm: update refused: {exc}", file=out)
        return 1
    if not pulled.new:
        print(f"edge-mm: {pulled.model} version {pulled.version} already holds this bundle", file=out)
    else:
        pruned = f"; deleted old version(s) {list(pulled.pruned)}" if pulled.pruned else ""
        print(f"edge-mm: {pulled.model} version {pulled.version} is in place{pruned}", file=out)
    if not load:
        return 0
    answer = server_call(settings, f"/v2/repository/models/{pulled.model}/load")
    if answer is None:
        print("edge-mm: no server is running; it serves from the next start", file=out)
        return 0
    status, body = answer
    if status == 200:
        print(f"edge-mm: the server now serves {pulled.model} versions {body.get('versions')}", file=out)
        return 0
    catalog = Catalog(settings.path("runtime.artifacts_dir"), settings.optional_path("runtime.verify_key"))
    catalog.set_rolled_back(pulled.model, catalog.rolled_back(pulled.model) | {pulled.version})
    print(
        f"edge-mm: the server did not load it ({status}: {body.get('error')}); the version before it still "
        f"serves, and version {pulled.version} is marked rolled back",
        file=out,
    )
    return 1


def rollback_command(settings: Settings, name: str, out: TextIO = sys.stdout) -> int:
    answer = server_call(settings, f"/v2/repository/models/{name}/rollback")
    if answer is None:
        try:
            old, new = rollback_on_disk(settings, name)
        except ConfigError as exc:
            print(f"edge-mm: {exc}", file=out)
            return 1
        print(
            f"edge-mm: no server is running; {name} version {new} serves from the next start ({old} rolled back)",
            file=out,
        )
        return 0
    status, body = answer
    if status != 200:
        print(f"edge-mm: rollback refused ({status}): {body.get('error')}", file=out)
        return 1
    print(
        f"edge-mm: the server now serves {name} version {body.get('default')} ({body.get('rolled_back')} rolled back)",
        file=out,
    )
    return 0
