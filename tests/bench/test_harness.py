"""The bench harness end to end: `python -m bench run` on a tiny scenario against a real peer server
on 127.0.0.1 (a couple of seconds of load, wrk and the Python fallback), and scenario files checked
with clear errors. No timing is asserted; the figures only have to exist and add up."""

import json
import shutil
import subprocess
import sys

import pytest

from bench import scenario
from bench.servers import ROOT
from tests.conftest import need

TINY = """
description = "tiny: the HTTP ceiling peer, two bodies"
route = "/v1/embeddings"
payload = "json"
bodies = [{inputs = "a sentence"}, {inputs = ["two", "texts"]}]
clients = [1, 2]
seconds = 1
rounds = 1
warmup_seconds = 0
record = ["rss", "cpu"]
load = "LOAD"
compare_to = ["other"]
ceiling = "ceiling"

[[servers]]
name = "ceiling"
kind = "http-ceiling"
threads = 2

[[servers]]
name = "other"
kind = "http-ceiling"
label = "the same peer, 4 threads"

[[aims]]
text = "2 clients: at least 0.01x the other's req/s"
server = "ceiling"
clients = 2
metric = "rps"
over = "other"
at_least = 0.01
"""


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("load", ["python", "wrk"])
def test_a_tiny_scenario_runs_end_to_end_and_records_the_machine(tmp_path, load):
    if load == "wrk":
        need(shutil.which("wrk"), "wrk not installed (scripts/system_deps.sh)")
    (tmp_path / "tiny.toml").write_text(TINY.replace("LOAD", load))
    done = _bench("run", str(tmp_path / "tiny.toml"), "--results", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "tiny.json").read_text())
    m = result["machine"]
    assert m["cpu_model"]
    assert m["cores"] >= 1
    assert isinstance(m["int8_flags"], list)
    assert m["int8_path"]
    assert len(result["load_average"]["before"]) == 3
    assert len(result["load_average"]["after"]) == 3
    assert len(result["commit"]["sha"]) == 40
    assert result["client"].startswith("wrk" if load == "wrk" else "Python")
    assert result["settings"]["clients"] == [1, 2]
    assert [s["name"] for s in result["settings"]["servers"]] == ["ceiling", "other"]
    rows = {(r["server"], r["concurrency"]): r for r in result["rows"]}
    assert set(rows) == {("ceiling", 1), ("ceiling", 2), ("other", 1), ("other", 2)}
    for r in rows.values():
        assert r["requests"] > 0
        assert r["errors"] == 0
        assert r["rps"] > 0
        assert r["p50_ms"] <= r["p99_ms"]
        assert r["rss_warm_mb"] > 0
    assert result["aims"][0]["met"] is not None
    md = (tmp_path / "out" / "tiny.md").read_text()
    assert m["cpu_model"] in md
    assert result["commit"]["sha"][:10] in md
    assert "| the same peer, 4 threads | 2 |" in md
    assert (tmp_path / "out" / "tiny.png").stat().st_size > 0


def test_list_names_every_scenario_file():
    done = _bench("list")
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines() if line and not line.startswith(" ")]
    assert names == sorted(p.stem for p in (ROOT / "bench" / "scenarios").glob("*.toml"))
    assert "INVALID" not in done.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "bench" / "scenarios").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_is_valid(path):
    s = scenario.load(str(path))
    if s["kind"] == "script":
        assert (ROOT / (s["module"].replace(".", "/") + ".py")).is_file()


def test_the_headline_scenarios_keep_the_result_paths_the_docs_quote():
    assert scenario.load("embeddings")["out"] == "compare"
    assert scenario.load("images")["out"] == "vision_throughput"


BAD = [
    ("speed = 3", "unknown key 'speed'"),
    ("clients = [0]", "'clients' must be a list of positive whole numbers"),
    ("clients = 8", "'clients' must be list"),
    ("payload = 'poems'", "unknown payload 'poems'"),
    ("record = ['forward']", "needs payload 'sentences-32'"),
    ("load = 'ab'", "'load' must be"),
    ("compare_to = ['nobody']", "'nobody' (compare_to / ceiling) is not one of the servers"),
    ("[[servers]]\nname = 'b'\nkind = 'flask-dev'", "unknown kind 'flask-dev'"),
    ("[[servers]]\nname = 'a'\nkind = 'http-ceiling'", "the name 'a' is used twice"),
    ("[[servers]]\nkind = 'http-ceiling'", "servers[1]: 'name' is missing"),
    (
        "[[aims]]\ntext = 't'\nserver = 'a'\nclients = 4\nmetric = 'rps'\nover = 'a'\nat_least = 1",
        "clients 4 is not measured",
    ),
    ("[[aims]]\ntext = 't'\nserver = 'a'\nclients = 1\nmetric = 'rps'\nat_least = 1", "give one of 'over'"),
    ("[[aims]]\ntext = 't'\nserver = 'a'\nclients = 1\nmetric = 'speed'\nover = 'a'\nat_most = 1", "metric 'speed'"),
    ("clients = [", "not valid TOML"),
]
GOOD = """description = "d"
route = "/v1/embeddings"
payload = "json"
bodies = [{inputs = "x"}]
clients = [1]
"""


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _, m in BAD])
def test_a_bad_scenario_gets_a_clear_error(tmp_path, extra, message):
    servers = "[[servers]]\nname = 'a'\nkind = 'http-ceiling'\n"
    if extra.startswith("[["):
        text = GOOD + servers + extra + "\n"
    else:  # a top-level key: it replaces the good file's line for the same key
        key = extra.split()[0]
        text = extra + "\n" + "".join(ln + "\n" for ln in GOOD.splitlines() if ln.split()[0] != key) + servers
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(scenario.ScenarioError, match="bad.toml") as err:
        scenario.load(str(tmp_path / "bad.toml"))
    assert message in str(err.value)


def test_the_good_base_of_the_bad_cases_is_valid(tmp_path):
    (tmp_path / "good.toml").write_text(GOOD + "[[servers]]\nname = 'a'\nkind = 'http-ceiling'\n")
    s = scenario.load(str(tmp_path / "good.toml"))
    assert s["seconds"] == 10
    assert s["rounds"] == 2
    assert s["out"] == "good"


def test_the_cli_reports_a_bad_scenario_without_a_traceback(tmp_path):
    (tmp_path / "bad.toml").write_text(GOOD + "[[servers]]\nname = 'a'\nkind = 'flask-dev'\n")
    done = _bench("run", str(tmp_path / "bad.toml"))
    assert done.returncode == 2
    assert "unknown kind 'flask-dev'" in done.stderr
    assert "Traceback" not in done.stderr
    done = _bench("run", "no-such-scenario")
    assert done.returncode == 2
    assert "known: " in done.stderr
    assert "embeddings" in done.stderr
