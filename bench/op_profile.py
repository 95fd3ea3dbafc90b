"""Where a MiniLM forward pass spends its time, by operator: edge-mm's served int8 graph against the
ONNX Runtime peer's, from ONNX Runtime's own profiler, one thread, one graph after the other.

    python -m bench.op_profile [--batch 1 8] [--runs 60] [--top 8] [--out bench/results/op_profile.md]

Graphs: the form of MiniLM this CPU serves (from the manifest: the 7-bit form where u8 x s8
products saturate, the 8-bit form elsewhere; ``--graph`` to pick one) and the peer's
``build/work/bench-peers/minilm-int8.onnx`` (``bash bench/peers/setup.sh``). Input: 32-token rows of
random word ids with a full attention mask, the same arrays for both. Each graph's share per operator
type is the sum of its kernels' times over ``--runs`` passes (after 5 untimed ones); the ms per pass is
that sum over the runs. Shares hold better than times on a noisy machine; compare times only within
one run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_line
from edge_mm.manifest import ORT_VARIANT, read_manifest
from edge_mm.runtime import cpu_features, fidelity_gate

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "build" / "work" / "bench-peers" / "minilm-int8.onnx"
ARTIFACTS = ROOT / "build" / "artifacts"


def served_graph(root: Path = ARTIFACTS, name: str = "minilm") -> Path:
    """The ONNX file of the form the server picks first on this CPU (fidelity_gate.path_variant: the 7-bit
    form where 8-bit weights saturate), from the manifest under ``root``."""
    entry = read_manifest(root).models[name]
    variant = fidelity_gate.path_variant(entry, ORT_VARIANT, cpu_features.detect())
    return root / entry.variants[variant].files["model"].path


def op_shares(path: Path, batch: int, runs: int) -> tuple[float, dict[str, float]]:
    """(ms per pass, {op type: share of kernel time}) for ``runs`` passes of ``batch`` 32-token rows, 1 thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.gettempdir(), "edge-mm-op-profile")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(1000, 20000, (batch, 32)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones((batch, 32), np.int64)}
    for _ in range(5 + runs):
        session.run(None, feeds)
    events = json.loads(Path(profile := session.end_profiling()).read_text())
    os.remove(profile)
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    events = [e for e in events if e["ts"] >= starts[5]]  # the 5 warm-up passes are left out
    per_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values())
    return total / runs / 1000, {op: us / total for op, us in per_op.most_common()}


def report(rows: list[dict[str, Any]], top: int) -> str:
    lines = [
        "Command: `python -m bench.op_profile`",
        "",
        machine_line(),
        "",
        "ONNX Runtime's profiler, one thread, 32-token rows; share of kernel time per operator type.",
        "",
    ]
    for row in rows:
        lines.append(f"**{row['graph']}**, batch {row['batch']}: {row['ms']:.2f} ms of kernels per pass")
        lines.append("")
        lines += ["| operator | share |", "|---|---|"]
        lines += [f"| {op} | {share:.1%} |" for op, share in list(row["shares"].items())[:top]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--graph", type=Path, help="edge-mm's graph (default: the form this CPU serves)")
    p.add_argument("--peer", type=Path, default=PEER)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "op_profile.md")
    args = p.parse_args()
    graphs = {"edge-mm " + (args.graph or served_graph()).name: args.graph or served_graph()}
    if args.peer.exists():
        graphs["peer " + args.peer.name] = args.peer
    rows = []
    for batch in args.batch:
        for name, path in graphs.items():
            ms, shares = op_shares(path, batch, args.runs)
            rows.append({"graph": name, "batch": batch, "ms": ms, "shares": shares})
            print(f"{name} batch {batch}: {ms:.2f} ms", flush=True)
    text = report(rows, args.top)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
