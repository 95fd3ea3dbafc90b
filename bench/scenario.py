"""Scenario files (bench/scenarios/*.toml): what a bench run starts, sends, and records, as data.

Two shapes. A **load** scenario (the default) starts every server at once on 127.0.0.1, then per
client count runs a warm-up and ``rounds`` rounds of ``seconds`` over the servers in turn (order
flipped each round, so load from elsewhere on the machine hits each alike)::

    description = "MiniLM embeddings: edge-mm against its peers"
    route = "/v1/embeddings"
    payload = "sentences-32"           # bench/payloads.py; "json" takes the scenario's `bodies`
    clients = [1, 8]
    seconds = 10                       # per round, server and client count
    rounds = 2
    warmup_seconds = 2
    record = ["rss", "cpu"]            # besides req/s and latency: "rss", "cpu", "forward", "split"
                                       # ("forward": MiniLM's passes timed in process; "split": edge-mm's
                                       # CPU per request in its forward passes and the rest, from /metrics)
    compare_to = ["onnx-int8"]         # ratio columns against these servers
    ceiling = "http-ceiling"           # the server whose req/s is the HTTP ceiling
    out = "compare"                    # bench/results/<out>.{md,json,png}

    [[servers]]
    name = "edge-mm"
    kind = "edge-mm"                   # bench/servers.py KINDS
    env = { EDGE_MM_RUNTIME_INTRA_OP_THREADS = "2" }   # optional; also rev, threads, args, label

    [[aims]]                           # optional: a ratio and its bound, reported met or missed
    text = "8 clients: at least 1.5x the ORT peer's req/s"
    server = "edge-mm"
    clients = 8
    metric = "rps"
    over = "onnx-int8"                 # a server, "ceiling", or leave out and give over_metric
    at_least = 1.5                     # or at_most

A **script** scenario runs one of the bench scripts that measure something other than HTTP load
(``kind = "script"``, ``module``, ``args``), so ``python -m bench run`` reaches every quoted figure.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from bench.payloads import PAYLOADS
from bench.servers import KINDS, ROOT

SCENARIOS = ROOT / "bench" / "scenarios"
RECORDS = ("rss", "cpu", "forward", "split")
METRICS = ("rps", "p50_ms", "p95_ms", "p99_ms")
LOAD_KEYS = {
    "description": str,
    "kind": str,
    "route": str,
    "payload": str,
    "bodies": list,
    "clients": list,
    "seconds": (int, float),
    "rounds": int,
    "warmup_seconds": (int, float),
    "forward_seconds": (int, float),
    "record": list,
    "compare_to": list,
    "ceiling": str,
    "config": str,
    "load": str,
    "out": str,
    "servers": list,
    "aims": list,
}
SCRIPT_KEYS = {"description": str, "kind": str, "module": str, "args": list, "out": str}
SERVER_KEYS = {"name": str, "kind": str, "label": str, "env": dict, "rev": str, "threads": int, "args": list}
AIM_KEYS = {
    "text": str,
    "server": str,
    "clients": int,
    "metric": str,
    "over": str,
    "over_metric": str,
    "at_least": (int, float),
    "at_most": (int, float),
}
DEFAULTS = {
    "kind": "load",
    "seconds": 10,
    "rounds": 2,
    "warmup_seconds": 2,
    "forward_seconds": 1.5,
    "record": ["rss", "cpu"],
    "compare_to": [],
    "config": "settings.toml",
    "load": "auto",
    "aims": [],
}


class ScenarioError(ValueError):
    """A scenario file that cannot run; the message says which file, which key and what to write."""


def available() -> dict[str, Path]:
    """Scenario name -> file, for ``python -m bench list``."""
    return {p.stem: p for p in sorted(SCENARIOS.glob("*.toml"), key=lambda p: p.stem)}


def find(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ScenarioError(f"{name_or_path}: no such scenario file")
        return path
    known = available()
    if name_or_path not in known:
        raise ScenarioError(f"no scenario {name_or_path!r}; known: {', '.join(known) or 'none'} (python -m bench list)")
    return known[name_or_path]


def load(name_or_path: str) -> dict[str, Any]:
    """Read and check a scenario; defaults filled in, ``name`` and ``file`` added."""
    path = find(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from e
    return validate(raw, path)


def _check_keys(where: str, table: dict[str, Any], allowed: dict[str, Any], required: tuple[str, ...]) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise ScenarioError(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed)}")
        kind = allowed[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            raise ScenarioError(f"{where}: {key!r} must be {names}, not {value!r}")
    for key in required:
        if key not in table:
            raise ScenarioError(f"{where}: {key!r} is missing")


def validate(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    where = str(path)
    kind = raw.get("kind", "load")
    if kind == "script":
        _check_keys(where, raw, SCRIPT_KEYS, ("description", "module"))
        if not all(isinstance(a, str) for a in raw.get("args", [])):
            raise ScenarioError(f"{where}: 'args' must be a list of strings")
        return {"args": [], **raw, "name": path.stem, "file": str(path)}
    if kind != "load":
        raise ScenarioError(f"{where}: 'kind' must be 'load' or 'script', not {kind!r}")
    _check_keys(where, raw, LOAD_KEYS, ("description", "route", "payload", "clients", "servers"))
    s = {**DEFAULTS, "out": path.stem, **raw, "name": path.stem, "file": str(path)}
    _check_load(where, s)
    names = _check_servers(where, s["servers"])
    for ref in [*s["compare_to"], *([s["ceiling"]] if "ceiling" in s else [])]:
        if ref not in names:
            raise ScenarioError(f"{where}: {ref!r} (compare_to / ceiling) is not one of the servers: {names}")
    for i, aim in enumerate(s["aims"]):
        _check_aim(f"{where}: aims[{i}]", aim, names, s["clients"])
    return s


def _check_load(where: str, s: dict[str, Any]) -> None:
    if s["payload"] not in PAYLOADS:
        raise ScenarioError(f"{where}: unknown payload {s['payload']!r}; known: {', '.join(PAYLOADS)}")
    if s["payload"] == "json" and not s.get("bodies"):
        raise ScenarioError(f"{where}: payload 'json' needs 'bodies', a list of request bodies")
    if not s["clients"] or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in s["clients"]):
        raise ScenarioError(f"{where}: 'clients' must be a list of positive whole numbers, e.g. [1, 8]")
    if s["seconds"] <= 0 or s["rounds"] < 1 or s["warmup_seconds"] < 0:
        raise ScenarioError(f"{where}: 'seconds' and 'rounds' must be positive, 'warmup_seconds' at least 0")
    if s["load"] not in ("auto", "wrk", "python"):
        raise ScenarioError(f"{where}: 'load' must be 'auto' (wrk where installed), 'wrk' or 'python'")
    if not set(s["record"]) <= set(RECORDS):
        raise ScenarioError(f"{where}: 'record' may hold {', '.join(RECORDS)}; got {s['record']}")
    if "forward" in s["record"] and s["payload"] != "sentences-32":
        raise ScenarioError(f"{where}: record 'forward' (MiniLM in process) needs payload 'sentences-32'")


def _check_servers(where: str, servers: list[Any]) -> list[str]:
    names: list[str] = []
    for i, server in enumerate(servers):
        at = f"{where}: servers[{i}]"
        if not isinstance(server, dict):
            raise ScenarioError(f"{at}: each server is a table ([[servers]] with name and kind)")
        _check_keys(at, server, SERVER_KEYS, ("name", "kind"))
        if server["kind"] not in KINDS:
            raise ScenarioError(f"{at}: unknown kind {server['kind']!r}; known: {', '.join(KINDS)}")
        if server["name"] in names:
            raise ScenarioError(f"{at}: the name {server['name']!r} is used twice")
        names.append(server["name"])
    if not names:
        raise ScenarioError(f"{where}: 'servers' is empty")
    return names


def _check_aim(at: str, aim: dict[str, Any], names: list[str], clients: list[int]) -> None:
    _check_keys(at, aim, AIM_KEYS, ("text", "server", "clients", "metric"))
    if aim["server"] not in names:
        raise ScenarioError(f"{at}: server {aim['server']!r} is not one of the servers: {names}")
    if aim["clients"] not in clients:
        raise ScenarioError(f"{at}: clients {aim['clients']} is not measured (clients = {clients})")
    for m in (aim["metric"], aim.get("over_metric", "rps")):
        if m not in METRICS:
            raise ScenarioError(f"{at}: metric {m!r} is not one of {', '.join(METRICS)}")
    if ("over" in aim) == ("over_metric" in aim):
        raise ScenarioError(f"{at}: give one of 'over' (a server or 'ceiling') and 'over_metric'")
    if "over" in aim and aim["over"] not in [*names, "ceiling"]:
        raise ScenarioError(f"{at}: over {aim['over']!r} is neither a server nor 'ceiling'")
    if ("at_least" in aim) == ("at_most" in aim):
        raise ScenarioError(f"{at}: give one of 'at_least' and 'at_most'")
