"""The bench harness end to end: `python -m bench run` on a tiny scenario against a real peer server
on 127.0.0.1 (a couple of seconds of load, wrk and the Python fallback), and scenario files checked
with clear errors. No timing is asserted; the figures only have to exist and add up."""

import json
import shutil
import subprocess
import sys

import pytest

from bench import scenario
from bench.harness import cpu_split
from bench.servers import ROOT, parse_forward_seconds
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
record = ["rss", "cpu", "split"]
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
        assert r["forward_cpu_ms"] is None  # a peer has no forward metrics
    assert result["aims"][0]["met"] is not None
    md = (tmp_path / "out" / "tiny.md").read_text()
    assert m["cpu_model"] in md
    assert result["commit"]["sha"][:10] in md
    assert "| the same peer, 4 threads | 2 |" in md
    assert "CPU ms/request: forward / rest" in md
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


def test_the_cpu_split_reads_an_edge_mm_servers_forward_metrics(client, tiny_registry):
    """The forward seconds the split is made of come from the app's real /metrics text, summed over its models."""
    batchers = [b for m in tiny_registry.models.values() if (b := getattr(m.runner, "batcher", None)) is not None]
    if not batchers:
        pytest.skip("micro-batching is off in these settings")
    client.post("/v1/embeddings", json={"inputs": ["a", "b"]})
    wall, cpu = parse_forward_seconds(client.get("/metrics").get_data(as_text=True))
    assert wall > 0
    assert wall == pytest.approx(sum(b.forward_time().wall_s for b in batchers))
    assert cpu == pytest.approx(sum(b.forward_time().cpu_s for b in batchers))
    assert parse_forward_seconds("# HELP up a peer's metrics\n# TYPE up gauge\nup 1\n") is None


def test_cpu_split_per_request():
    split = cpu_split([(1.0, 0.8), (0.5, 0.4)], cpu_s=1.8, ok=300, seconds=2.0)
    assert split == {"forward_cpu_ms": 4.0, "rest_cpu_ms": 2.0, "passes_at_once": 0.75}
    assert cpu_split([None, None], 1.0, 10, 1.0)["forward_cpu_ms"] is None  # a peer
    assert cpu_split([(1.0, 1.0), None], 1.0, 10, 1.0)["passes_at_once"] is None  # a round without the metrics
    assert cpu_split([(1.0, 1.0)], 1.0, 0, 1.0)["rest_cpu_ms"] is None
