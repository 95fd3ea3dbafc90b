"""Is the interpreter lock what limits MiniLM at 8 clients? One edge-mm process against two.

    python -m bench.processes [--seconds 10] [--rounds 3] [--out bench/results/processes.md]

Side by side, rounds interleaved (order flipped each round): one server at 8 clients, as a user
runs it (2 inference slots, default settings), against two servers with 4 clients each, each with
one inference slot on one thread (no solo session), so the pair runs the same two passes at once
on the two cores but every request's Python (waitress, Flask, tokenizing, hand-offs) has a whole
interpreter lock per pair of slots instead of one for all. Two wrk processes load the pair at the
same time; the pair's req/s is their sum. If the lock limited the one process, the pair would
answer more. Both record CPU per request, split into forward passes and the rest (``/metrics``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench import load, payloads, servers
from bench.harness import cpu_split
from bench.machine import machine_line

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench" / "minilm_settings.toml"
ROUTE = "/v1/embeddings"
ONE_SLOT = {
    "EDGE_MM_RUNTIME_CONCURRENT_INFERENCES": "1",
    "EDGE_MM_RUNTIME_INTRA_OP_THREADS": "1",
    "EDGE_MM_RUNTIME_SOLO_THREADS": "1",
}
ONE = "1 process, 2 inference slots, 8 clients"
PAIR = "2 processes, 1 slot each, 4 clients each"


def _start(stack: contextlib.ExitStack, env: dict[str, str]) -> tuple[str, int]:
    port = servers.free_port()
    env = {"EDGE_MM_SERVER_PORT": str(port), "EDGE_MM_SERVER_HOST": "127.0.0.1", **env}
    return stack.enter_context(servers.server(servers.edge_mm_argv(CONFIG), port, env))


def measure(procs: list[tuple[str, int]], clients: int, seconds: int, bodies: list[bytes]) -> dict[str, Any]:
    """Load each of ``procs`` with ``clients`` wrk connections at once for ``seconds``: summed req/s, the
    p50s, the servers' CPU % and CPU ms per request (forward passes / the rest, from ``/metrics``)."""
    results: dict[int, dict[str, Any]] = {}
    cpu0 = [servers.cpu_seconds(pid) for _, pid in procs]
    fwd0 = [servers.forward_seconds(base) for base, _ in procs]
    t0 = time.monotonic()

    def drive(i: int, base: str) -> None:
        results[i] = load.run_wrk(base, ROUTE, bodies, "application/json", clients, seconds)

    threads = [threading.Thread(target=drive, args=(i, base)) for i, (base, _) in enumerate(procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    cpu = sum(servers.cpu_seconds(pid) - c for (_, pid), c in zip(procs, cpu0, strict=True))
    passes = []  # each process's (wall, CPU) seconds in forward passes during the load
    for (base, _), before in zip(procs, fwd0, strict=True):
        after = servers.forward_seconds(base)
        passes.append((after[0] - before[0], after[1] - before[1]) if after and before else None)
    split = cpu_split(passes, cpu, sum(r["ok"] for r in results.values()), elapsed)
    return {
        "rps": sum(r["rps"] for r in results.values()),
        "p50_ms": [results[i].get("p50_ms") for i in sorted(results)],
        "cpu_pct": cpu / elapsed * 100,
        "forward_ms": split["forward_cpu_ms"],
        "rest_ms": split["rest_cpu_ms"],
        "errors": sum(r.get("errors", 0) for r in results.values()),
    }


def report(rows: list[dict[str, Any]], header: str) -> str:
    """The result: a row per arrangement and round, then the median ratio of the pair to the one process."""
    lines = [
        "# One edge-mm process at 8 clients against two processes with 4 clients each (MiniLM)",
        "",
        "Command: `python -m bench run processes` (bench/processes.py)",
        "",
        header,
        "",
        "| round | arrangement | req/s | p50 ms | server CPU % | CPU ms/request: forward / rest | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p50 = " / ".join(f"{p:.1f}" for p in r["p50_ms"] if p is not None)
        split = "-" if r["forward_ms"] is None else f"{r['forward_ms']:.2f} / {r['rest_ms']:.2f}"
        lines.append(
            f"| {r['round']} | {r['arrangement']} | {r['rps']:.0f} | {p50} | {r['cpu_pct']:.0f} | {split} | {r['errors']} |"
        )
    ratios = []
    for n in sorted({r["round"] for r in rows}):
        by = {r["arrangement"]: r["rps"] for r in rows if r["round"] == n}
        if len(by) == 2:
            ratios.append(by[PAIR] / by[ONE])
    if ratios:
        lines += [
            "",
            f"Two processes against one, by round: {', '.join(f'{x:.2f}x' for x in ratios)}; "
            f"median **{statistics.median(ratios):.2f}x**.",
        ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "processes.md")
    args = p.parse_args()
    bodies = [json.dumps({"inputs": t}).encode() for t in payloads.sentences_of_32_tokens()]
    rows = []
    with contextlib.ExitStack() as stack:
        arrangements = {ONE: ([_start(stack, {})], 8), PAIR: ([_start(stack, ONE_SLOT), _start(stack, ONE_SLOT)], 4)}
        for procs, clients in arrangements.values():  # warm-up
            measure(procs, clients, 2, bodies)
        for n in range(1, args.rounds + 1):
            order = list(arrangements) if n % 2 else list(reversed(arrangements))
            for name in order:
                procs, clients = arrangements[name]
                row = {"round": n, "arrangement": name, **measure(procs, clients, args.seconds, bodies)}
                rows.append(row)
                print(f"round {n} {name}: {row['rps']:.0f} req/s, {row['cpu_pct']:.0f}% CPU", flush=True)
    header = (
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. {machine_line()}\n"
        f"Load generator: wrk -t1 per process (Lua script), {args.rounds} round(s) of {args.seconds} s after 2 s "
        "of warm-up, arrangements in turn, order flipped each round; payload sentences-32; settings "
        "bench/minilm_settings.toml."
    )
    text = report(rows, header)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
