"""The machine a figure was measured on: every bench result records it (CPU model, int8 path, flags).

Int8 figures hold for the int8 path they were measured on (edge_mm/runtime/cpu_features.py), so a
result without its CPU cannot be compared with another machine's.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from edge_mm.runtime import cpu_features


def machine() -> dict[str, Any]:
    """CPU model, int8 path and flags, cores, Python and platform: the ``machine`` field of a result.

    ``cpu_id``: the x86 family and model numbers from /proc/cpuinfo (a virtual machine's brand string
    may say only "AMD EPYC", which covers Zen 3 to Zen 5); ``cpumask``: the CPU ``scripts/cpumask.sh``
    made this one pass for, when it ran under it (the int8 path and flags are then the masked ones)."""
    cpu = cpu_features.detect()
    return {
        "cpu_model": cpu.model,
        "cpu_id": cpu_features.x86_family_model(),
        "machine": cpu.machine,
        "int8_path": cpu.path,
        "int8_flags": cpu.flags,
        "cpumask": os.environ.get("CPUMASK", ""),
        "cores": os.cpu_count(),
        "platform": platform.platform(terse=True),
    }


def machine_line(m: dict[str, Any] | None = None) -> str:
    """One markdown line for a result's header (``m``: a stored :func:`machine` record; default this one)."""
    m = m or machine()
    ident = f"{m['cpu_id']}, " if m.get("cpu_id") else ""
    mask = f", masked by `scripts/cpumask.sh {m['cpumask']}`" if m.get("cpumask") else ""
    return (
        f"Machine: {m['cpu_model']} ({ident}{m['machine']}, {m['cores']} cores), int8 path **{m['int8_path']}**{mask} "
        f"({', '.join(m['int8_flags']) or 'no int8 flags'}), {m['platform']}."
    )
