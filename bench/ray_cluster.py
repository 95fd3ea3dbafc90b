"""A two-node Ray cluster on one machine, for bench/ray_node_loss.py and tests/ray.

Each node is a `ray start` in a session of its own (so it can be killed whole, as a machine
losing power would be: every process of the node at once, SIGKILL), on a loopback address of
its own (127.0.0.2, 127.0.0.3: Ray rewrites 127.0.0.1 to the machine's LAN address for a
multi-node cluster, not other loopback addresses), pinned to a core of its own where there are
two. ``edge-mm serve --engine ray`` runs as a driver on the head.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_mm.serving.listening import PREFIX as LISTENING

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
EDGE_MM = Path(sys.executable).parent / "edge-mm"
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
# The head's GCS declares a node dead after `failure_threshold` missed health checks, one every
# `period_ms` (Ray's defaults, 3000 ms x 5, took 13.6 s here): 1 s x 3 fails a node over in about
# 4 s. Ray reads its settings from RAY_<name> variables; README "A pool: Ray Serve" says the same.
FAST_FAILOVER = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **FAST_FAILOVER}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def session_pids(sid: int) -> list[int]:
    """Every process whose session is ``sid``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:  # after the name: state, ppid, pgrp, session
            pids.append(int(d.name))
    return pids


def kill_session(sid: int) -> int:
    """SIGKILL every process of session ``sid``, until none is left; how many were killed."""
    killed = 0
    for _ in range(50):
        pids = session_pids(sid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.1)
    return killed


def _pinned(cmd: list[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if core is not None and shutil.which("taskset") else cmd


@dataclass
class Node:
    ip: str
    session: int

    def kill(self) -> int:
        return kill_session(self.session)


@dataclass
class TwoNodeCluster:
    tmp: Path
    gcs_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)  # nodes and drivers started here: killed by stop()
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)  # reaped by stop()
    files: list[Any] = field(default_factory=list)  # closed by stop()

    def __post_init__(self) -> None:
        # Ray's gRPC servers listen on every interface for a multi-node cluster: only holders of this
        # run's token may talk to them
        self.tmp.mkdir(parents=True, exist_ok=True)
        token = self.tmp / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.gcs_port}"

    def _ray_start(self, args: list[str], core: int | None, log: Path) -> int:
        with log.open("w") as out:
            p = subprocess.Popen(
                _pinned([str(RAY), "start", "--disable-usage-stats", *args], core),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # the node's daemons keep this session: kill_session(pid) is the node
            )
            self.sessions.append(p.pid)
            try:
                rc = p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                rc = -1
        if rc != 0:
            raise RuntimeError(f"ray start failed ({rc}): {log.read_text()[-2000:]}")
        return p.pid

    def start(self) -> None:
        cores: list[int | None] = [0, 1] if len(os.sched_getaffinity(0)) >= 2 else [None, None]
        head = self.tmp / "head"
        head.mkdir(parents=True, exist_ok=True)
        sid = self._ray_start(
            [
                "--head",
                "--node-ip-address",
                HEAD_IP,
                "--port",
                str(self.gcs_port),
                "--num-cpus",
                "1",
                "--include-dashboard",
                "true",
                "--dashboard-host",
                HEAD_IP,
                "--dashboard-port",
                str(free_port()),
                "--ray-client-server-port",
                str(free_port()),
                "--temp-dir",
                str(head),
            ],
            cores[0],
            self.tmp / "head.log",
        )
        self.nodes.append(Node(HEAD_IP, sid))
        worker = self.tmp / "worker"
        worker.mkdir(parents=True, exist_ok=True)
        sid = self._ray_start(
            ["--address", self.address, "--node-ip-address", WORKER_IP, "--num-cpus", "1", "--temp-dir", str(worker)],
            cores[1],
            self.tmp / "worker.log",
        )
        self.nodes.append(Node(WORKER_IP, sid))

    def serve(self, config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
        """``edge-mm serve --engine ray`` joined to this cluster; returns once it listens."""
        out = log.open("wb")
        self.files.append(out)
        p = subprocess.Popen(
            [str(EDGE_MM), "--config", str(config), "serve", "--engine", "ray", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**self.env, "EDGE_MM_RAY_ADDRESS": self.address},
            cwd=ROOT,
            start_new_session=True,
        )
        self.sessions.append(p.pid)
        self.procs.append(p)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if LISTENING in text:
                return p
            if p.poll() is not None:
                break
            time.sleep(1)
        raise RuntimeError(f"edge-mm serve --engine ray did not start: {log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        """Kill everything started here: drivers, then the nodes (SIGKILL; no `ray stop`, which stops
        every Ray on the machine)."""
        for sid in reversed(self.sessions):
            kill_session(sid)
        for p in self.procs:
            p.wait(timeout=30)
            for stream in (p.stdin, p.stdout):
                if stream is not None:
                    stream.close()
        for f in self.files:
            f.close()


# Ray reads its token settings once per process: the cluster's view is asked from a process of its own.
PROBE = """
import json, sys
import ray
from ray import serve
from ray.util.state import list_actors

ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(json.dumps({"ok": "connected"}), flush=True)
for line in sys.stdin:
    cmd, arg = json.loads(line)
    try:
        if cmd == "replicas":  # deployment -> node addresses of its live replicas
            nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
            out = {}
            for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
                if a.class_name.startswith("ServeReplica:") and a.node_id in nodes:
                    out.setdefault(a.class_name.split(":")[-1], []).append(nodes[a.node_id])
            result = {k: sorted(v) for k, v in out.items()}
        elif cmd == "nodes":  # addresses of the nodes Ray holds alive
            result = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
        elif cmd == "running":  # replicas Serve reports RUNNING for a deployment of the edge-mm application
            app = serve.status().applications.get("edge-mm")
            d = app.deployments.get(arg) if app else None
            states = d.replica_states if d else {}
            result = sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")
        print(json.dumps({"ok": result}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": repr(exc)}), flush=True)
"""


class Probe:
    """A driver process connected to the cluster, answering ``replicas`` and ``running`` queries."""

    def __init__(self, cluster: TwoNodeCluster) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-c", PROBE, cluster.address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=cluster.env,
            text=True,
            start_new_session=True,
        )
        cluster.sessions.append(self.p.pid)
        cluster.procs.append(self.p)
        self._read(120)

    def _read(self, timeout_s: float) -> Any:
        assert self.p.stdout is not None
        ready, _, _ = select.select([self.p.stdout], [], [], timeout_s)
        if not ready:
            raise TimeoutError("the Ray probe did not answer")
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("the Ray probe exited")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["ok"]

    def ask(self, cmd: str, arg: str = "", timeout_s: float = 30) -> Any:
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps([cmd, arg]) + "\n")
        self.p.stdin.flush()
        return self._read(timeout_s)

    def replicas(self) -> dict[str, list[str]]:
        """Live replicas per deployment: deployment name -> node addresses, sorted."""
        return self.ask("replicas")  # type: ignore[no-any-return]

    def nodes(self) -> list[str]:
        return self.ask("nodes")  # type: ignore[no-any-return]

    def running(self, deployment: str) -> int:
        return self.ask("running", deployment)  # type: ignore[no-any-return]


@contextlib.contextmanager
def two_node_cluster(tmp: Path) -> Iterator[TwoNodeCluster]:
    cluster = TwoNodeCluster(tmp)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
