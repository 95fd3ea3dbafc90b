"""One bench harness: ``python -m bench list`` and ``python -m bench run SCENARIO``.

    python -m bench list
    python -m bench run embeddings                      # bench/scenarios/embeddings.toml
    python -m bench run embeddings --seconds 15 --rounds 1 --clients 1 8 --only edge-mm onnx-int8
    python -m bench run overload -- --label after       # a script scenario: arguments after -- go to it
    python -m bench run path/to/my.toml --results /tmp/out

Scenario files are data (bench/scenario.py says what they hold). Load scenarios start their servers
on 127.0.0.1 and write bench/results/<out>.{md,json,png}, each recording the commit, the CPU, its
int8 path and flags, the cores, the load average and the settings used. The peers need
`bash bench/peers/setup.sh` once (wrk, .venv-onnx); servers whose needs are missing are skipped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench import scenario
from bench.servers import ROOT


def _list() -> int:
    for name, path in scenario.available().items():
        try:
            s = scenario.load(str(path))
        except scenario.ScenarioError as e:
            print(f"{name:22} INVALID: {e}")
            continue
        what = s["module"] if s["kind"] == "script" else ", ".join(x["name"] for x in s["servers"])
        print(f"{name:22} {s['description']}\n{'':22} ({s['kind']}: {what})")
    return 0


def _run(a: argparse.Namespace, extra: list[str]) -> int:
    s = scenario.load(a.scenario)
    command = "python -m bench run " + " ".join(sys.argv[2:])
    if s["kind"] == "script":
        argv = [sys.executable, "-m", s["module"], *s["args"], *extra]
        print("+ " + " ".join(argv[1:]), flush=True)
        return subprocess.run(argv, cwd=ROOT).returncode
    if extra:
        raise scenario.ScenarioError(f"arguments after -- are for script scenarios; {s['name']} is a load scenario")
    for key in ("seconds", "rounds", "clients", "out", "config", "load"):
        if getattr(a, key) is not None:
            s[key] = getattr(a, key)
    if a.warmup is not None:
        s["warmup_seconds"] = a.warmup
    if a.only:
        unknown = set(a.only) - {x["name"] for x in s["servers"]}
        if unknown:
            raise scenario.ScenarioError(f"--only {sorted(unknown)}: not servers of {s['name']}")
        s["servers"] = [x for x in s["servers"] if x["name"] in a.only]
    names = [x["name"] for x in s["servers"]]  # what --only and --clients leave to compare
    s["compare_to"] = [x for x in s["compare_to"] if x in names]
    if s.get("ceiling") not in names:
        s.pop("ceiling", None)
    s["aims"] = [
        x
        for x in s["aims"]
        if x["server"] in names and x.get("over", "ceiling") in [*names, "ceiling"] and x["clients"] in s["clients"]
    ]
    s = scenario.validate({k: v for k, v in s.items() if k not in ("name", "file")}, Path(s["file"]))
    from bench import harness

    harness.run(s, command, a.results or harness.RESULTS)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the scenarios in bench/scenarios/")
    r = sub.add_parser("run", help="run one scenario (a name from `list`, or a .toml file)")
    r.add_argument("scenario")
    r.add_argument("--seconds", type=float, help="per round, server and client count")
    r.add_argument("--rounds", type=int)
    r.add_argument("--warmup", type=float, help="seconds of unrecorded load per server and client count")
    r.add_argument("--clients", type=int, nargs="+")
    r.add_argument("--only", nargs="+", help="run only these servers of the scenario")
    r.add_argument("--config", help="edge-mm settings file (default: the scenario's, else settings.toml)")
    r.add_argument("--load", choices=["auto", "wrk", "python"], help="load generator (auto: wrk where installed)")
    r.add_argument("--out", help="result name under the results folder (default: the scenario's)")
    r.add_argument("--results", type=Path, help="results folder (default: bench/results)")
    a = p.parse_args(argv)
    try:
        return _list() if a.command == "list" else _run(a, extra)
    except scenario.ScenarioError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
