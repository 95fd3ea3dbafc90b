"""Resident memory of the server once ready, per settings file, side by side.

    python -m bench.serve_rss settings.toml build/ner/settings-all.toml

Starts ``edge-mm serve`` on each settings file in turn (127.0.0.1, a free port), waits for
``/health/ready`` (every model loaded, fidelity-checked and warmed) and records the RSS, whether
torch was loaded (``/info`` ``torch_version``) and which variant serves each model.
Writes bench/results/serve_rss.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

from bench.machine import machine, machine_line
from bench.servers import ROOT, edge_mm_argv, free_port, rss_mb, server


def measure(config: Path) -> dict:
    port = free_port()
    t0 = time.perf_counter()
    env = {"EDGE_MM_SERVER_PORT": str(port), "EDGE_MM_SERVER_HOST": "127.0.0.1"}
    with server(edge_mm_argv(config), port, env=env) as (base, pid):
        ready_s = time.perf_counter() - t0
        time.sleep(2)  # let start-up garbage settle
        with urllib.request.urlopen(base + "/info", timeout=10) as r:
            info = json.load(r)
        return {
            "config": str(config),
            "rss_mb": round(rss_mb(pid), 1),
            "ready_s": round(ready_s, 2),
            "torch_loaded": info["torch_version"] is not None,
            "models": {
                n: {
                    "variant": m["variant"],
                    "backend": m["backend"],
                    "gate": m.get("fidelity_check", {}).get("figures"),
                }
                for n, m in info["models"].items()
            },
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+", type=Path)
    a = p.parse_args()
    rows = [measure(c) for c in a.configs]
    result = {
        "command": "python -m bench.serve_rss " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "rows": rows,
    }
    lines = [
        f"Command: `{result['command']}`",
        "",
        f"Run {result['when']}. {machine_line(result['machine'])}",
        "",
        "| settings | models (variant) | torch loaded | ready s | RSS MB |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        models = ", ".join(f"{n} ({m['variant']})" for n, m in r["models"].items())
        lines.append(f"| `{r['config']}` | {models} | {r['torch_loaded']} | {r['ready_s']} | {r['rss_mb']} |")
    out = ROOT / "bench" / "results"
    (out / "serve_rss.json").write_text(json.dumps(result, indent=2))
    (out / "serve_rss.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
