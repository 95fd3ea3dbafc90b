"""`edge-mm check`: load every model, run the sample recorded at build time, compare outputs."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import numpy as np

from edge_mm.config import Settings
from edge_mm.runtime.registry import load_registry
from edge_mm.runtime.runner import Loader

# int8 kernels may round differently on another CPU; fp16 on GPU differs more.
TOLERANCE = {"cpu": 2e-2, "cuda": 5e-2}


def run_check(settings: Settings, loaders: Mapping[str, Loader], out: TextIO = sys.stdout) -> int:
    """0 when every model reproduces its reference within tolerance, else 1."""
    registry = load_registry(settings, loaders)
    registry.warm_all()
    print_fidelity_table(registry.info, out)
    failures = 0
    root = settings.path("runtime.artifacts_dir")
    for name, served in registry.models.items():
        ref_file = served.entry.files.get("reference")
        if ref_file is None:
            print(f"{name}: no reference sample recorded; skipped", file=out)
            continue
        ref = json.loads(ref_file.resolve(root).read_text())
        if ref.get("variant", served.variant) != served.variant:  # another CPU path's int8 form made it
            print(
                f"{name}: reference made by {ref['variant']}; {served.variant} serves on this CPU "
                "(its fidelity gate above vouches for it); skipped",
                file=out,
            )
            continue
        got = served.runner.check_outputs(ref["inputs"])
        worst = max(
            float(np.abs(np.asarray(g, dtype=np.float32) - np.asarray(e, dtype=np.float32)).max())
            for g, e in zip(got, ref["outputs"], strict=True)
        )
        ok = worst <= TOLERANCE[served.device]
        failures += not ok
        print(
            f"{name}: {'ok' if ok else 'MISMATCH'} on {served.device} (max abs diff {worst:.2e}, tolerance {TOLERANCE[served.device]:.0e})",
            file=out,
        )
    print("check passed" if not failures else f"check FAILED for {failures} model(s)", file=out)
    return 1 if failures else 0


def print_fidelity_table(info: Mapping[str, Any], out: TextIO = sys.stdout) -> None:
    """The start-up fidelity gate per model and variant tried, on this CPU (runtime/fidelity_gate.py)."""
    cpu = info.get("cpu", {})
    print(f"CPU: {cpu.get('model', '?')} ({cpu.get('machine', '?')}); int8 path {cpu.get('path', '?')}", file=out)
    rows = [("model", "variant", "figures", "gates", "verdict")]
    for name, model in info.get("models", {}).items():
        gate = model.get("fidelity_check")
        if gate is None:
            rows.append((name, model["variant"], "-", "-", "no int8 form: not gated"))
            continue
        gates = ", ".join(f"{k} {v}" for k, v in gate["gates"].items())
        for v in gate["tried"]:
            figs = ", ".join(f"{k} {x}" for k, x in v["figures"].items()) or "-"
            verdict = "serves" if v["variant"] == gate["variant"] else (v["error"] or "; ".join(v["misses"]))
            rows.append((name, v["variant"], figs, gates, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4], file=out)
