"""`edge-mm serve` re-executes itself once with jemalloc preloaded (edge_mm/runtime/malloc.py): the choice
(`preload_env`) and the real server process (same PID, jemalloc mapped, /info says so; glibc when asked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_mm.errors import ConfigError
from edge_mm.runtime.malloc import JEMALLOC_CONF, REEXEC_MARK, allocator_in_use, jemalloc_library, preload_env
from tests.serving import ROOT, request, running_server

LIB = Path("/opt/lib/libjemalloc.so.2")


def test_auto_preloads_jemalloc_ahead_of_what_is_preloaded_already():
    env, why = preload_env("auto", {"LD_PRELOAD": "/x/libother.so", "PATH": "/bin"}, LIB, page_size=4096)
    assert env is not None, why
    assert env["LD_PRELOAD"] == f"{LIB} /x/libother.so"
    assert env["MALLOC_CONF"] == JEMALLOC_CONF
    assert env[REEXEC_MARK] == "1"
    assert env["PATH"] == "/bin"


def test_an_operators_malloc_conf_is_kept():
    env, _ = preload_env("jemalloc", {"MALLOC_CONF": "narenas:1"}, LIB, page_size=4096)
    assert env is not None
    assert env["MALLOC_CONF"] == "narenas:1"


@pytest.mark.parametrize(
    ("env", "library", "page_size", "onefile", "why"),
    [
        ({REEXEC_MARK: "1"}, LIB, 4096, False, "already re-executed"),  # never a second exec, whatever happened
        ({}, None, 4096, False, "no libjemalloc.so.2"),
        ({}, LIB, 16384, False, "page size is 16384"),  # jemalloc built for 4 KiB pages aborts on 16 KiB ones
        ({}, LIB, 4096, True, "onefile"),
    ],
)
def test_auto_stays_on_glibc_where_jemalloc_cannot_serve(env, library, page_size, onefile, why):
    new, reason = preload_env("auto", env, library, page_size=page_size, frozen_onefile=onefile)
    assert new is None
    assert why in reason


def test_jemalloc_required_but_missing_refuses_to_start():
    with pytest.raises(ConfigError, match="runtime.allocator = jemalloc: no libjemalloc"):
        preload_env("jemalloc", {}, None, page_size=4096)
    with pytest.raises(ConfigError, match="did not load it"):  # re-executed, yet jemalloc is not mapped
        preload_env("jemalloc", {REEXEC_MARK: "1", "LD_PRELOAD": str(LIB)}, LIB, page_size=4096)
    with pytest.raises(ConfigError, match="one of auto, jemalloc, glibc"):
        preload_env("tcmalloc", {}, LIB, page_size=4096)
    assert preload_env("glibc", {}, LIB, page_size=4096)[0] is None


def test_this_process_reports_its_allocator(tmp_path):
    assert allocator_in_use() in ("glibc", "system")  # pytest was not preloaded
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f10 r-xp 0 08:01 1 /opt/edge-mm/_internal/jemalloc/libjemalloc.so.2\n")
    assert allocator_in_use(maps) == "jemalloc"


@pytest.fixture(scope="module")
def jemalloc() -> Path:
    """The checkout's jemalloc, fetched as `make run` does (scripts/jemalloc.sh; apt-get download, no root)."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "jemalloc.sh")], capture_output=True, text=True, check=True)
    lib = jemalloc_library()
    assert lib is not None, out.stderr
    return lib


def _server_processes(config: Path) -> list[int]:
    """PIDs whose command line names ``config`` (the server: no wrapper, as running_server starts it)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(config).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc are Linux's")
def test_the_server_runs_on_jemalloc_in_the_process_it_started_as(jemalloc, tiny_config):
    with running_server(tiny_config) as base:
        status, _, info = request(base + "/info")
        assert status == 200
        assert info["allocator"] == "jemalloc"
        pids = _server_processes(tiny_config)
        assert len(pids) == 1, pids  # exec replaced the process: one process, the PID its parent started
        assert str(jemalloc) in Path(f"/proc/{pids[0]}/maps").read_text()
        status, _, body = request(base + "/v1/embeddings", {"inputs": ["hello there", "john smith"]})
        assert status == 200
        assert len(body["data"]) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc are Linux's")
def test_glibc_when_the_settings_say_so(jemalloc, tiny_config):
    with running_server(tiny_config, ("EDGE_MM_RUNTIME_ALLOCATOR", "glibc")) as base:
        assert request(base + "/info")[2]["allocator"] == "glibc"
        (pid,) = _server_processes(tiny_config)
        assert "libjemalloc" not in Path(f"/proc/{pid}/maps").read_text()
