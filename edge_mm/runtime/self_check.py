"""`edge-mm check`: load every model, run the sample recorded at build time, compare outputs."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edge_mm.config import Settings
from edge_mm.runtime.options import KindOptions
from edge_mm.runtime.registry import Served, load_registry
from edge_mm.runtime.runner import Loader

# int8 kernels may round differently on another CPU; a reference that records its own tolerance
# (the CUDA variants' fp16 ones, build/accelerator.py) uses that instead.
TOLERANCE = {"cpu": 2e-2, "cuda": 5e-2}


def run_check(
    settings: Settings,
    loaders: Mapping[str, Loader],
    out: TextIO = sys.stdout,
    *,
    options: Mapping[str, KindOptions],
    cuda_available: bool | None = None,
) -> int:
    """0 when every model reproduces its reference within tolerance, else 1.

    Each serving variant is compared with a reference made by the same variant: its own
    (``variants[v].files["reference"]``, e.g. the CUDA fp16 form's) or else the model's shared
    one, which the CPU form that serves on the build machine made. A CUDA variant is never
    compared with a CPU reference. ``options``, ``cuda_available``: as for load_registry (None asks torch).
    """
    registry = load_registry(settings, loaders, options=options, cuda_available=cuda_available)
    registry.warm_all()
    print_fidelity_table(registry.info, out)
    failures = 0
    root = settings.path("runtime.artifacts_dir")
    for served in registry.every_version():
        name = registry.request_name(served)
        ref, skipped = _reference(served, served.root or root)  # a version reads its own folder
        if ref is None:
            print(f"{name}: {skipped}; skipped", file=out)
            continue
        worst, tolerance = reference_diff(served, ref)
        ok = worst <= tolerance
        failures += not ok
        print(
            f"{name}: {'ok' if ok else 'MISMATCH'} on {served.device} {served.variant} "
            f"(max abs diff {worst:.2e}, tolerance {tolerance:.0e})",
            file=out,
        )
    print("check passed" if not failures else f"check FAILED for {failures} model(s)", file=out)
    return 1 if failures else 0


def reference_diff(served: Served, ref: Mapping[str, Any]) -> tuple[float, float]:
    """(largest abs difference, tolerance) of the model's outputs on the reference sample's inputs."""
    tolerance = float(ref.get("tolerance", TOLERANCE[served.device]))
    got = served.runner.check_outputs(ref["inputs"])
    worst = max(
        float(np.abs(np.asarray(g, dtype=np.float32) - np.asarray(e, dtype=np.float32)).max())
        for g, e in zip(got, ref["outputs"], strict=True)
    )
    return worst, tolerance


def _reference(served: Served, root: Path) -> tuple[dict[str, Any] | None, str]:
    """(the reference sample made by the variant that serves, "") or (None, why there is none to compare)."""
    own = served.entry.variants[served.variant].files.get("reference")
    ref_file = own or served.entry.files.get("reference")
    if ref_file is None:
        return None, "no reference sample recorded"
    ref = json.loads(ref_file.resolve(root).read_text())
    made_by = ref.get("variant", served.variant if own is not None or served.device == "cpu" else "cpu")
    if made_by != served.variant:  # another CPU path's int8 form made it, or the CPU form for a CUDA variant
        vouch = "(its fidelity gate above vouches for it)" if served.device == "cpu" else "(rebuild to record one)"
        return None, f"reference made by {made_by}; {served.variant} serves on {served.device} {vouch}"
    return ref, ""


def reference_miss(served: Served, root: Path) -> str | None:
    """Why the model misses its recorded reference sample (runtime/swap.py checks a version before it
    serves); None when it reproduces it, or has none made by the variant that serves (the fidelity gate
    vouches for that one)."""
    ref, _ = _reference(served, root)
    if ref is None:
        return None
    worst, tolerance = reference_diff(served, ref)
    return (
        None if worst <= tolerance else f"max abs diff {worst:.2e} on its reference sample, tolerance {tolerance:.0e}"
    )


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
