"""What the face store adds to a recognize as it grows: nearest-descriptor time at 1 and 10,000 identities,
and while registrations are being committed.

    python -m bench.face_store [--identities 10000]

Fills a fresh SQLite store (edge_mm/runtime/face_store.py: WAL, synchronous=FULL) through its
public ``add`` (one durable commit per identity, as /v1/vision/face/register does), then times
``nearest`` (what /recognize runs per face) with 1 and with ``--identities`` identities, side by
side; then ``nearest`` again while a second thread registers one identity after another, the rounds
idle and busy taking turns. Writes bench/results/face_store.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.machine import machine, machine_line
from edge_mm.runtime.face_store import DIM, FaceStore

RESULTS = Path(__file__).resolve().parent / "results"


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def nearest_times(store: FaceStore, probes: np.ndarray) -> list[float]:
    """ms of each ``nearest`` call."""
    times = []
    for p in probes:
        t0 = time.perf_counter()
        store.nearest(p)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def nearest_ms(store: FaceStore, probes: np.ndarray) -> float:
    """Median ms of one ``nearest`` call."""
    return statistics.median(nearest_times(store, probes))


def percentile(times: list[float], q: float) -> float:
    return sorted(times)[int(q * (len(times) - 1))]


def during_registrations(store: FaceStore, probes: np.ndarray, rng: np.random.Generator, rounds: int) -> dict:
    """``nearest`` times idle and while another thread commits registrations, in alternating rounds."""
    idle: list[float] = []
    busy: list[float] = []
    commits = [0]

    def register(r: int, vectors: np.ndarray, stop: threading.Event) -> None:
        for i, v in enumerate(vectors):
            if stop.is_set():
                return
            store.add(f"burst-{r}-{i}", [v])
            commits[0] += 1

    for r in range(rounds):
        idle += nearest_times(store, probes)
        stop = threading.Event()
        writer = threading.Thread(target=register, args=(r, unit(rng, 5000), stop))
        writer.start()
        time.sleep(0.05)
        busy += nearest_times(store, probes)
        stop.set()
        writer.join()
    return {
        name: {"p50": round(percentile(t, 0.5), 3), "p99": round(percentile(t, 0.99), 3), "max": round(max(t), 3)}
        for name, t in (("idle", idle), ("registering", busy))
    } | {"commits": commits[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--identities", type=int, default=10_000)
    p.add_argument("--probes", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=4, help="idle and registering rounds of 500 recognizes each")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    probes = unit(rng, a.probes)
    with tempfile.TemporaryDirectory(prefix="edge-mm-faces-") as tmp:
        small, big = FaceStore(Path(tmp) / "one.db"), FaceStore(Path(tmp) / "many.db")
        small.add("only", [unit(rng, 1)[0]])
        vectors = unit(rng, a.identities)
        t0 = time.perf_counter()
        commits = []
        for i, v in enumerate(vectors):
            c0 = time.perf_counter()
            big.add(f"user-{i}", [v])
            commits.append((time.perf_counter() - c0) * 1000)
        fill_s = time.perf_counter() - t0
        one, many = nearest_ms(small, probes), nearest_ms(big, probes)
        contention = during_registrations(big, probes[:500], rng, a.rounds)
        small.close()
        big.close()
    result = {
        "command": "python -m bench.face_store " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "identities": a.identities,
        "nearest_ms_1": round(one, 3),
        "nearest_ms_n": round(many, 3),
        "added_ms": round(many - one, 3),
        "register_commit_ms_median": round(statistics.median(commits), 2),
        "register_commit_ms_p99": round(sorted(commits)[int(0.99 * (len(commits) - 1))], 2),
        "fill_s": round(fill_s, 1),
        "during_registrations": contention,
    }
    (RESULTS / "face_store.json").write_text(json.dumps(result, indent=2) + "\n")
    md = "\n".join(
        [
            "# Face store: recognize cost as it grows",
            "",
            f"`{result['command']}` ({result['when']})",
            "",
            machine_line(result["machine"]),
            "",
            "| identities | nearest, median ms |",
            "|---|---|",
            f"| 1 | {result['nearest_ms_1']} |",
            f"| {a.identities:,} | {result['nearest_ms_n']} |",
            "",
            f"Added by {a.identities:,} identities: **{result['added_ms']} ms** per face recognised. One "
            f"registration (a durable commit, WAL + synchronous=FULL): median {result['register_commit_ms_median']} "
            f"ms, p99 {result['register_commit_ms_p99']} ms.",
            "",
            f"Recognize over {a.identities:,}+ identities, idle and while another thread registers one identity after "
            f"another ({contention['commits']:,} commits), {a.rounds} rounds of each taking turns:",
            "",
            "| recognize | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|",
            *(
                f"| {name} | {contention[name]['p50']} | {contention[name]['p99']} | {contention[name]['max']} |"
                for name in ("idle", "registering")
            ),
            "",
        ]
    )
    (RESULTS / "face_store.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
