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
