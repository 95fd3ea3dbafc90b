"""Which modules does the runtime import? Checks the bundle's exclusion lists against reality.

    .venv-cpu/bin/python scripts/runtime_modules.py [settings.toml]

Loads every configured model, warms it, runs `edge-mm check` and builds the Flask app, then
prints each module of edge_mm.build.bundle_contents.excluded_modules() that got imported (there must be
none: the frozen bundle would fail there) and exits 1 if any.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edge_mm.server  # noqa: E402, F401
from edge_mm.api import create_app  # noqa: E402
from edge_mm.build.bundle_contents import excluded_modules  # noqa: E402
from edge_mm.config import load_settings  # noqa: E402
from edge_mm.runtime.self_check import run_check  # noqa: E402
from edge_mm.tasks.table import LOADERS, OPTIONS  # noqa: E402

settings = load_settings(sys.argv[1] if len(sys.argv) > 1 else ROOT / "settings.toml")
before = set(sys.modules)
assert run_check(settings, LOADERS, out=io.StringIO(), options=OPTIONS) == 0
from edge_mm.runtime.registry import load_registry  # noqa: E402

create_app(settings, load_registry(settings, LOADERS, options=OPTIONS))
loaded = set(sys.modules)
mine = {"edge_mm.build", "edge_mm.build.bundle_contents"}  # this script imports them to read the lists
bad = sorted(m for m in loaded - mine for x in excluded_modules() if m == x or m.startswith(x + "."))
for m in bad:
    print("imported but excluded from the bundle:", m)
print(f"{len(loaded)} modules loaded; {len(bad)} of them excluded from the bundle")
sys.exit(1 if bad else 0)
