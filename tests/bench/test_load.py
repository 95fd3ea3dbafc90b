"""wrk's Lua script and the parsing of its done() line."""

import json

import pytest

from bench.load import WRK_MARK, parse_wrk, wrk_script


def _line(**over):
    s = {"requests": 1000, "duration_us": 10_000_000, "connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    s |= {"p50_us": 4500, "p95_us": 7000, "p99_us": 9100, "mean_us": 5000.5, "max_us": 20000}
    return WRK_MARK + json.dumps(s | over)


def test_parse_wrk_summary():
    out = "Running 10s test @ http://127.0.0.1:1\n  1 threads and 8 connections\n" + _line() + "\n"
    assert parse_wrk(out, 8) == {
        "concurrency": 8,
        "requests": 1000,
        "ok": 1000,
        "rps": 100.0,
        "p50_ms": 4.5,
        "p95_ms": 7.0,
        "p99_ms": 9.1,
        "mean_ms": 5.0,
        "errors": 0,
    }


def test_parse_wrk_counts_non_2xx_and_socket_errors():
    s = parse_wrk(_line(status=100, read=2, timeout=3), 1)
    assert s["ok"] == 897
    assert s["errors"] == 105
    assert s["rps"] == 89.7


def test_parse_wrk_without_summary_line():
    with pytest.raises(ValueError, match="done"):
        parse_wrk("Running 10s test\n", 1)


def test_wrk_script_posts_each_body_file():
    lua = wrk_script("/v1/embeddings", ["/tmp/a", "/tmp/b"], "application/json")
    assert 'local files = {"/tmp/a", "/tmp/b"}' in lua
    assert 'wrk.format("POST", "/v1/embeddings", {["Content-Type"] = "application/json"}' in lua
    assert WRK_MARK + '{"requests":%d' in lua


def test_parse_wrk_keeps_counted_statuses():
    s = parse_wrk(_line(status=5, statuses={"200": 995, "503": 5}), 8)
    assert s["statuses"] == {"200": 995, "503": 5}
    assert "statuses" not in parse_wrk(_line(), 8)


def test_wrk_counts_answers_by_status_against_a_real_server():
    import shutil
    import sys

    from bench.load import run_wrk
    from bench.servers import free_port, server
    from tests.conftest import need

    need(shutil.which("wrk"), "wrk not installed (scripts/system_deps.sh)")
    port = free_port()
    argv = [sys.executable, "-m", "bench.peers", "http-ceiling", "--port", str(port), "--threads", "2"]
    with server(argv, port) as (base, _):
        body = [json.dumps({"inputs": "a"}).encode()]
        ok = run_wrk(base, "/v1/embeddings", body, "application/json", 2, 1, count_statuses=True)
        missing = run_wrk(base, "/v1/nowhere", body, "application/json", 2, 1, count_statuses=True)
    assert ok["statuses"] == {"200": ok["requests"]}
    assert ok["errors"] == 0
    assert missing["statuses"] == {"404": missing["requests"]}
    assert missing["ok"] == 0
    assert missing["errors"] >= missing["requests"]
