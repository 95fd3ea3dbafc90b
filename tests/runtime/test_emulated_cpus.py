"""The start-up fidelity gate on CPUs this machine is not: an x86 without VNNI under qemu-user.

Slow (the server's own `edge-mm check` under ``qemu-x86_64 -cpu Haswell``, a few minutes): CI runs it
once in `make test-slow`. Emulated timings mean nothing; what the int8 kernels compute is real.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from edge_mm.manifest import ORT_7BIT_VARIANT

pytestmark = pytest.mark.slow


def test_an_avx2_machine_serves_the_7bit_form_and_it_meets_the_gates(minilm_config, tmp_path):
    from tests.conftest import need, only_models

    qemu = shutil.which("qemu-x86_64")
    need(qemu, "qemu-x86_64 not installed (Debian qemu-user; scripts/system_deps.sh installs it)")
    config = tmp_path / "settings.toml"
    config.write_text(only_models(minilm_config.read_text(), {"minilm"}))
    proc = subprocess.run(
        [qemu, "-cpu", "Haswell", sys.executable, "-m", "edge_mm", "--config", str(config), "check"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, (out, proc.stderr[-3000:])
    assert "int8 path avx2" in out  # the emulated CPU's cpuid, not the host's /proc/cpuinfo
    rows = [line for line in out.splitlines() if line.startswith("minilm ")]
    assert len(rows) == 1, out  # the first form tried met the gates
    assert ORT_7BIT_VARIANT in rows[0]
    assert rows[0].endswith("serves")
    assert "check passed" in out
