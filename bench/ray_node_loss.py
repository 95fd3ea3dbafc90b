"""Ray Serve on two nodes of one machine: a node lost under load, and scaling up under load.

    python -m bench.ray_node_loss [--config settings.toml] [--out bench/results]

Two `ray start` nodes with one core each (bench/ray_cluster.py) serve MiniLM embeddings and
EfficientNet classification through ``edge-mm serve --engine ray``:

* scale-up: MiniLM alone, autoscaling from 1 to 2 replicas under 8 clients; throughput with one
  replica (one core) and with two (two cores, one per node), and when the second replica ran;
* node loss: both models with 2 replicas (one per node), 8 clients (half embed, half classify), each
  retrying a 503 or a connection error once; the second node is SIGKILLed whole after a steady
  spell. Requests lost after the retry, first tries that failed, the longest time with no answer,
  when the lost replicas were running again and where, and the throughput before and after.

Writes bench/results/ray_node_loss.json and .md. tests/ray/test_cluster.py asserts the
correctness parts of the same run (nothing lost after a retry, replicas rescheduled) without timing.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.ray_cluster import HEAD_IP, ROOT, WORKER_IP, Probe, TwoNodeCluster, free_port, two_node_cluster

MODELS = ("minilm", "efficientnet")
TEXT = "The delivery van is parked outside the loading bay of the warehouse."


def settings_text(config: Path, models: tuple[str, ...], ray: str, artifacts: Path | None = None) -> str:
    """``config`` narrowed to ``models``, paths absolute, one intra-op thread, plus the ``[ray]`` table ``ray``."""
    text = config.read_text()
    base = config.resolve().parent

    def absolute(m: re.Match[str]) -> str:
        p = Path(m.group(2))
        return f'{m.group(1)} = "{p if p.is_absolute() else (base / p).resolve()}"'

    text = re.sub(r'^(artifacts_dir|packages_dir) = "([^"]*)"', absolute, text, flags=re.M)
    if artifacts is not None:
        text = re.sub(r'^artifacts_dir = "[^"]*"', f'artifacts_dir = "{artifacts}"', text, flags=re.M)
    head, *blocks = text.split("[[models]]")
    keep = [b for b in blocks if re.search(r'^name = "(' + "|".join(models) + ')"', b, flags=re.M)]
    head = re.sub(r"^\[runtime\]\n", "[runtime]\nintra_op_threads = 1\n", head, flags=re.M)
    return head + "".join("[[models]]" + b for b in keep) + "\n[ray]\n" + ray


def image_bytes() -> bytes:
    """scikit-image's chelsea (a cat) when installed, else a generated 224 x 224 PNG."""
    import importlib.util
    import io

    spec = importlib.util.find_spec("skimage")
    if spec and spec.submodule_search_locations:
        photo = Path(next(iter(spec.submodule_search_locations)), "data", "chelsea.png")
        if photo.is_file():
            return photo.read_bytes()
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_mandelbrot((224, 224), (-2, -1.5, 1, 1.5), 50).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def payloads() -> dict[str, tuple[str, bytes]]:
    image = base64.b64encode(image_bytes()).decode("ascii")
    return {
        "embeddings": ("/v1/embeddings", json.dumps({"inputs": [TEXT]}).encode()),
        "classification": ("/v1/image-classification", json.dumps({"image": image}).encode()),
    }


@dataclass
class Record:
    kind: str
    start: float  # s since the load began
    end: float
    status: int  # the final status (after the retry); 0: connection error
    first_status: int
    retried: bool


RETRY = (0, 503)  # a connection error or 503: the client tries once more


class Client(threading.Thread):
    """Closed loop: sends ``kind``'s request, waits for the answer, sends the next; retries once."""

    def __init__(self, port: int, kind: str, body: tuple[str, bytes], t0: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.kind, self.body, self.t0, self.stop = port, kind, body, t0, stop
        self.records: list[Record] = []
        self.conn: http.client.HTTPConnection | None = None

    def _once(self) -> int:
        path, body = self.body
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = self.conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return 0

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic() - self.t0
            first = status = self._once()
            if first in RETRY:
                time.sleep(0.2)
                status = self._once()
            self.records.append(Record(self.kind, start, time.monotonic() - self.t0, status, first, first in RETRY))
        if self.conn is not None:
            self.conn.close()


class Load:
    """``clients`` closed-loop clients over the payload kinds, round robin, until :meth:`finish`."""

    def __init__(self, port: int, kinds: list[str], clients: int = 8) -> None:
        bodies = payloads()
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.clients = [Client(port, kinds[i % len(kinds)], bodies[kinds[i % len(kinds)]], self.t0, self.stop)
                        for i in range(clients)]  # fmt: skip
        for c in self.clients:
            c.start()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def finish(self) -> list[Record]:
        self.stop.set()
        for c in self.clients:
            c.join(timeout=120)
        return sorted((r for c in self.clients for r in c.records), key=lambda r: r.end)


def throughput(records: list[Record], start: float, end: float) -> float:
    """Answers with 200 per second that completed in [start, end)."""
    n = sum(1 for r in records if r.status == 200 and start <= r.end < end)
    return n / max(end - start, 1e-9)


def longest_gap(records: list[Record], after: float) -> float:
    """The longest time after ``after`` with no 200 completing (s)."""
    ends = [after] + [r.end for r in records if r.status == 200 and r.end >= after]
    return max((b - a for a, b in zip(ends, ends[1:], strict=False)), default=0.0)


# ---------------------------------------------------------------- Ray's view: replicas and nodes


def wait_for(check: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> float | None:
    """Seconds until ``check()`` held, or None after ``timeout_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if check():
                return time.monotonic() - t0
        except Exception:  # the state API can fail while a node is being declared dead
            pass
        time.sleep(every_s)
    return None


# ---------------------------------------------------------------- the two measurements


def deploy(cluster: TwoNodeCluster, tmp: Path, config: Path, models: tuple[str, ...], ray: str, port: int) -> None:
    """(Re)deploy through a new ``edge-mm serve --engine ray`` driver (``serve.run`` replaces the application)."""
    path = tmp / f"settings-{len(cluster.sessions)}.toml"
    path.write_text(settings_text(config, models, ray))
    cluster.serve(path, port, tmp / f"serve-{len(cluster.sessions)}.log")


def scale_up(cluster: TwoNodeCluster, tmp: Path, config: Path, port: int, seconds: float = 75) -> dict[str, Any]:
    ray = 'proxy_location = "HeadOnly"\nnum_cpus = 1.0\n[ray.models.minilm]\nreplicas = 1\nmax_replicas = 2\n'
    ray += "target_ongoing_requests = 2\nupscale_delay_s = 3\n"
    deploy(cluster, tmp, config, ("minilm",), ray, port)
    probe = Probe(cluster)
    load = Load(port, ["embeddings"])
    timeline = []
    while load.now() < seconds:
        timeline.append((round(load.now(), 1), probe.running("model-minilm")))
        time.sleep(1)
    placed = probe.replicas().get("model-minilm", [])
    records = load.finish()
    two_at = next((t for t, n in timeline if n >= 2), None)
    one = throughput(records, 3, two_at if two_at is not None else seconds)
    two = throughput(records, (two_at or seconds) + 10, seconds) if two_at is not None else 0.0
    return {
        "clients": 8,
        "seconds": seconds,
        "second_replica_running_at_s": two_at,
        "replica_nodes": placed,
        "req_per_s_one_replica": round(one, 1),
        "req_per_s_two_replicas": round(two, 1),
        "gain": round(two / one, 2) if one and two else None,
        "failed": sum(1 for r in records if r.status != 200),
    }


PAIR = 'proxy_location = "HeadOnly"\nreplicas = 2\nnum_cpus = 0.25\n'  # both models, one replica per node


def node_loss(
    cluster: TwoNodeCluster, probe: Probe, port: int, before_s: float = 15, after_s: float = 45
) -> dict[str, Any]:
    """Load on the deployed ``PAIR`` (see :func:`deploy`), then the second node killed whole."""
    before = probe.replicas()
    load = Load(port, ["embeddings", "classification"])
    time.sleep(before_s)
    killed_at = load.now()
    cluster.nodes[1].kill()
    t_kill = time.monotonic()
    declared = wait_for(lambda: probe.nodes() == [HEAD_IP], timeout_s=after_s + 60, every_s=0.25)
    back = wait_for(
        lambda: all(probe.replicas().get(f"model-{m}", []) == [HEAD_IP, HEAD_IP] for m in MODELS),
        timeout_s=after_s + 60,
    )
    back_s = None if back is None else time.monotonic() - t_kill  # since the kill, detection included
    # at least 10 s of load once the replicas are back, for the throughput after
    remaining = max(killed_at + after_s, killed_at + (back_s or 0) + 15) - load.now()
    if remaining > 0:
        time.sleep(remaining)
    end = load.now()
    records = load.finish()
    after = probe.replicas()
    lost = [r for r in records if r.status != 200]
    first_failed = [r for r in records if r.first_status != 200]
    return {
        "clients": 8,
        "killed_at_s": round(killed_at, 1),
        "replicas_before": before,
        "replicas_after": after,
        "node_declared_dead_s": None if declared is None else round(declared, 1),
        "replicas_back_on_head_s": None if back_s is None else round(back_s, 1),
        "requests": len(records),
        "lost_after_retry": len(lost),
        "lost_statuses": sorted({r.status for r in lost}),
        "first_try_failed": len(first_failed),
        "first_try_statuses": sorted({r.first_status for r in first_failed}),
        "longest_gap_s": round(longest_gap(records, killed_at), 2),
        "req_per_s_before": round(throughput(records, 3, killed_at), 1),
        "req_per_s_after": round(throughput(records, killed_at + (back_s or 0) + 5, end), 1),
        "by_kind": {
            k: {"requests": sum(r.kind == k for r in records), "lost": sum(r.kind == k for r in lost)}
            for k in ("embeddings", "classification")
        },
        "records": [asdict(r) for r in records],
    }


def markdown(result: dict[str, Any]) -> str:
    s, n = result["scale_up"], result["node_loss"]
    return "\n".join(
        [
            "# Ray Serve: two nodes on one machine (bench/ray_node_loss.py)",
            "",
            f"Machine: {result['cores']} cores; each `ray start` node pinned to one core, 1 Ray CPU; "
            f"Ray {result['ray_version']}. Generated by `python -m bench.ray_node_loss`.",
            "",
            "## Scale-up under load (MiniLM embeddings, 8 clients, autoscaling 1 -> 2 replicas)",
            "",
            "| | value |",
            "|---|---|",
            f"| second replica running at | {s['second_replica_running_at_s']} s |",
            f"| replicas on nodes | {', '.join(s['replica_nodes'])} |",
            f"| req/s, one replica (one core) | {s['req_per_s_one_replica']} |",
            f"| req/s, two replicas (two cores) | {s['req_per_s_two_replicas']} |",
            f"| gain | {s['gain']}x |",
            f"| failed requests | {s['failed']} |",
            "",
            "## Node loss under load (MiniLM + EfficientNet, 2 replicas each, 8 clients, retry once)",
            "",
            "| | value |",
            "|---|---|",
            f"| replicas before | {json.dumps(n['replicas_before'])} |",
            f"| second node SIGKILLed at | {n['killed_at_s']} s |",
            f"| requests | {n['requests']} |",
            f"| lost after one retry | {n['lost_after_retry']} {n['lost_statuses'] or ''} |",
            f"| first tries that failed (retried) | {n['first_try_failed']} {n['first_try_statuses'] or ''} |",
            f"| longest time without an answer after the kill | {n['longest_gap_s']} s |",
            f"| Ray declared the node dead after | {n['node_declared_dead_s']} s |",
            f"| lost replicas running again on the head after | {n['replicas_back_on_head_s']} s |",
            f"| replicas after | {json.dumps(n['replicas_after'])} |",
            f"| req/s before (two nodes) | {n['req_per_s_before']} |",
            f"| req/s after recovery (one node) | {n['req_per_s_after']} |",
            "",
        ]
    )


def run(config: Path, out: Path) -> dict[str, Any]:
    from importlib.metadata import version

    tmp = Path(tempfile.mkdtemp(prefix="edge-mm-ray-"))
    port = free_port()
    result: dict[str, Any] = {
        "cores": os.cpu_count(),
        "ray_version": version("ray"),
        "nodes": [HEAD_IP, WORKER_IP],
    }
    try:  # a fresh cluster each: a redeployment could leave the replicas on one node
        with two_node_cluster(tmp / "loss") as cluster:
            deploy(cluster, tmp, config, MODELS, PAIR, port)
            result["node_loss"] = node_loss(cluster, Probe(cluster), port)
            print(json.dumps({k: v for k, v in result["node_loss"].items() if k != "records"}), flush=True)
        with two_node_cluster(tmp / "scale") as cluster:
            result["scale_up"] = scale_up(cluster, tmp, config, port)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray_node_loss.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "ray_node_loss.md").write_text(markdown(result))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--config", type=Path, default=ROOT / "settings.toml", help="its artifacts must hold minilm and efficientnet"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    result = run(args.config, args.out)
    print(markdown(result))


if __name__ == "__main__":
    main()
