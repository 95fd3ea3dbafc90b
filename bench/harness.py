"""Run a load scenario (bench/scenario.py) and write its result: bench/results/<out>.{json,md,png}.

Every result records the commit, the machine (CPU model, int8 path and flags, cores: bench/machine.py),
the load average before and after, the load generator and the settings used, so a figure can be
compared only with figures measured where it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.load import run_closed_loop, wrk_available
from bench.machine import machine, machine_line
from bench.payloads import PAYLOADS, sentences_of_32_tokens
from bench.servers import (
    KINDS,
    MINILM,
    ONNX_PY,
    ROOT,
    cpu_seconds,
    forward_seconds,
    free_port,
    onnx_minilm,
    rss_mb,
    server,
)

RESULTS = ROOT / "bench" / "results"

# --- pure figures (tests/bench/test_harness.py) ---


def merge_rounds(rounds: list[dict]) -> dict:
    """Rounds of one server at one client count -> one row: mean req/s, p50 and p99 over the rounds,
    with their lowest and highest; requests and errors summed."""
    n = len(rounds)

    def mean(key: str) -> float:
        return round(sum(r[key] for r in rounds) / n, 2)

    def span(key: str) -> list[float]:
        return [min(r[key] for r in rounds), max(r[key] for r in rounds)]

    return {
        "concurrency": rounds[0]["concurrency"],
        "rounds": n,
        "requests": sum(r["requests"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "rps": mean("rps"),
        "rps_range": span("rps"),
        "p50_ms": mean("p50_ms"),
        "p50_range": span("p50_ms"),
        "p95_ms": mean("p95_ms"),
        "p99_ms": mean("p99_ms"),
        "p99_range": span("p99_ms"),
    }


def forward_ceiling_rps(rows: list[dict], concurrency: int, cores: int) -> float:
    """Requests/s the model alone allows with ``concurrency`` requests in flight on ``cores`` cores.

    ``rows``: in-process forward times ({batch, threads, median_ms}). A batch of b needs b requests
    in flight; with 1 thread, up to ``cores`` such batches run side by side (assumed to scale),
    with ``cores`` threads one at a time. The best such arrangement is the ceiling.
    """
    best = 0.0
    for r in rows:
        b, threads, ms = r["batch"], r["threads"], r["median_ms"]
        if b > concurrency or ms <= 0:
            continue
        side_by_side = max(1, min(cores // threads, concurrency // b))
        best = max(best, side_by_side * b * 1000 / ms)
    return round(best, 1)


def ceilings(
    table: dict[tuple[str, int], dict], http: str | None, forward_rows: list[dict], levels: list[int], cores: int
) -> dict[int, dict]:
    """Per client count: the HTTP ceiling (server ``http``, measured), the forward ceiling, the tighter."""
    out = {}
    for c in levels:
        h = table.get((http, c), {}).get("rps") if http else None
        fwd = forward_ceiling_rps(forward_rows, c, cores) if forward_rows else None
        known = [v for v in (h, fwd) if v]
        out[c] = {"http_rps": h, "forward_rps": fwd, "tighter_rps": min(known) if known else None}
    return out


def cpu_split(
    passes: list[tuple[float, float] | None], cpu_s: float, ok: int, seconds: float
) -> dict[str, float | None]:
    """Where an edge-mm server's CPU went per answered request: its models' forward passes (their calling
    threads' CPU, from /metrics) and the rest (HTTP, JSON, tokenizing, hand-offs); and how many passes ran at
    once on average. ``passes``: each round's (wall, CPU) seconds in forward passes, None for a round where
    the server had no forward metrics (a peer); then every figure is None."""
    if not passes or None in passes or ok == 0:
        return {"forward_cpu_ms": None, "rest_cpu_ms": None, "passes_at_once": None}
    wall = sum(p[0] for p in passes if p is not None)
    fwd_cpu = sum(p[1] for p in passes if p is not None)
    return {
        "forward_cpu_ms": round(1000 * fwd_cpu / ok, 2),
        "rest_cpu_ms": round(1000 * (cpu_s - fwd_cpu) / ok, 2),
        "passes_at_once": round(wall / seconds, 2),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def evaluate_aims(aims: list[dict], table: dict[tuple[str, int], dict], ceiling: dict[int, dict]) -> list[dict]:
    """Each scenario aim -> {aim, figure, value, met (None when a figure is missing)}."""
    out = []
    for a in aims:
        c = a["clients"]
        mine = table.get((a["server"], c), {})
        if "over_metric" in a:
            below = mine.get(a["over_metric"])
        elif a["over"] == "ceiling":
            below = (ceiling.get(c) or {}).get("tighter_rps")
        else:
            below = table.get((a["over"], c), {}).get(a["metric"])
        value = ratio(mine.get(a["metric"]), below)
        bound, higher = (a["at_least"], True) if "at_least" in a else (a["at_most"], False)
        met = None if value is None else (value >= bound if higher else value <= bound)
        spec = "{:.0%}" if a.get("over") == "ceiling" else "{:.2f}" if "over_metric" in a else "{:.2f}x"
        figure = "not measured" if value is None else spec.format(value)
        out.append({"aim": a["text"], "figure": figure, "value": value, "met": met})
    return out


def machine_note(load_before: list[float], cores: int) -> str:
    """What the reader may compare: a run that started with other jobs on the cores gives ratios only."""
    if load_before[0] > cores / 2:
        return (
            f"**This run was on a busy machine** (1-minute load average {load_before[0]:.1f} on {cores} cores at the "
            "start): compare the ratios measured side by side, not the absolute figures."
        )
    return f"The machine was otherwise quiet when the run started (1-minute load average {load_before[0]:.1f})."


def summary_table(rows: list[dict], levels: list[int]) -> str:
    """One line per server: req/s over the rounds (p50, and p99 from the second client count on), RSS."""
    table = {(r["server"], r["concurrency"]): r for r in rows}
    head = " | ".join(
        f"{c} client{'s' if c > 1 else ''} req/s (p50{'' if c == levels[0] else ' / p99'})" for c in levels
    )
    out = [f"| server | {head} | RSS |", "|---" * (len(levels) + 2) + "|"]
    for key in dict.fromkeys(r["server"] for r in rows):
        cells, label, rss = [], key, "-"
        for c in levels:
            r = table.get((key, c))
            if r is None:
                cells.append("-")
                continue
            label, rss = r["label"], f"{r['rss_warm_mb']} MB" if r.get("rss_warm_mb") is not None else "-"
            if c == levels[0]:
                cells.append(f"{_range(r['rps_range'])} ({_range(r['p50_range'], 1)} ms)")
            else:
                cells.append(f"{_range(r['rps_range'])} ({r['p50_ms']:.0f} ms / {r['p99_ms']:.0f} ms)")
        out.append(f"| {label} | {' | '.join(cells)} | {rss} |")
    return "\n".join(out) + "\n"


def _fmt(v: float | None, spec: str = "{:.2f}x") -> str:
    return "-" if v is None else spec.format(v)


def _range(lo_hi: list[float], digits: int = 0) -> str:
    lo, hi = lo_hi
    return f"{lo:.{digits}f}-{hi:.{digits}f}" if round(lo, digits) != round(hi, digits) else f"{lo:.{digits}f}"


# --- running ---


def commit() -> dict[str, Any]:
    """The checkout's commit, and whether edge_mm/ or bench/ differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "sha": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--", "edge_mm", "bench")),
    }


def forward_times(config: Path, texts: list[str], batches: list[int], seconds: float) -> dict[str, list[dict]]:
    """In-process forward times of the edge-mm artifact and the ORT int8 peer (each in its own venv)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts[: max(batches)], f)
    common = ["--texts", f.name, "--batches", *map(str, batches), "--threads", "1", "2", "--seconds", str(seconds)]
    runs = {"edge-mm": [sys.executable, "-m", "bench.peers.forward_time", "served", "--config", str(config), *common]}
    if ONNX_PY.exists():
        runs["onnx-int8"] = [str(ONNX_PY), "bench/peers/forward_time.py", "onnxruntime", "--model", str(onnx_minilm())]
        runs["onnx-int8"] += ["--tokenizer", str(MINILM / "tokenizer.json"), *common]
    out = {}
    try:
        for name, argv in runs.items():
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"forward times for {name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            out[name] = [{**r, "backend": answer["backend"]} for r in answer["rows"]]
    finally:
        os.unlink(f.name)
    return out


def measure(s: dict[str, Any], servers: list[dict], bodies: list[bytes], ctype: str, config: Path) -> list[dict]:
    """Start every server, then per client count: a warm-up, then ``rounds`` rounds over the servers."""
    seconds, rounds, driver = s["seconds"], s["rounds"], s["load"]
    rows: list[dict] = []
    with ExitStack() as stack:
        running: dict[str, tuple[str, int]] = {}
        for spec in servers:
            port = free_port()
            launch = KINDS[spec["kind"]].launch(spec, config, port)
            ctx = server(launch.argv, port, env=launch.env, cwd=launch.cwd)
            running[spec["name"]] = stack.enter_context(ctx)
        labels = {
            spec["name"]: spec.get("label", KINDS[spec["kind"]].label.format(threads=spec.get("threads", 4)))
            for spec in servers
        }
        rss: dict[str, float] = {}
        for c in s["clients"]:
            per: dict[str, list[dict]] = {k: [] for k in running}
            cpu = dict.fromkeys(running, 0.0)
            passes: dict[str, list[tuple[float, float] | None]] = {k: [] for k in running}  # per round, "split"
            for key, (base, pid) in running.items():  # warm-up, not recorded
                if s["warmup_seconds"] > 0:
                    run_closed_loop(base, s["route"], bodies, ctype, c, s["warmup_seconds"], driver)
                rss.setdefault(key, rss_mb(pid))
            names = list(running)
            for k in range(rounds):
                for key in names if k % 2 == 0 else names[::-1]:
                    base, pid = running[key]
                    fwd0 = forward_seconds(base) if "split" in s["record"] else None
                    cpu0 = cpu_seconds(pid)
                    r = run_closed_loop(base, s["route"], bodies, ctype, c, seconds, driver)
                    cpu[key] += cpu_seconds(pid) - cpu0
                    if "split" in s["record"]:
                        fwd1 = forward_seconds(base)
                        passes[key].append(
                            None if fwd0 is None or fwd1 is None else (fwd1[0] - fwd0[0], fwd1[1] - fwd0[1])
                        )
                    per[key].append(r)
                    print(json.dumps({"server": key, "round": k, **r}), flush=True)
            for key in names:
                row = {"server": key, "label": labels[key], **merge_rounds(per[key])}
                if "rss" in s["record"]:
                    row |= {"rss_warm_mb": round(rss[key]), "rss_mb": round(rss_mb(running[key][1]))}
                if "cpu" in s["record"]:
                    row["server_cpu_pct"] = round(100 * cpu[key] / (seconds * rounds))
                if "split" in s["record"]:
                    ok = sum(r.get("ok", r["requests"]) for r in per[key])
                    row |= cpu_split(passes[key], cpu[key], ok, seconds * rounds)
                rows.append(row)
    return rows


def run(s: dict[str, Any], command: str, results: Path = RESULTS) -> dict[str, Any]:
    """Run load scenario ``s`` (bench/scenario.py, overrides applied); write and return its result."""
    if s["load"] == "wrk" and not wrk_available():
        raise SystemExit("this scenario asks for wrk (load = 'wrk'), which is not installed: bash bench/peers/setup.sh")
    config = (ROOT / s["config"]).resolve()
    servers = []
    for spec in s["servers"]:
        needs = KINDS[spec["kind"]].needs
        if needs is not None and not needs.exists():
            print(
                f"skipping {spec['name']}: {needs} not found (bash bench/peers/setup.sh, make bundle)", file=sys.stderr
            )
            continue
        servers.append(spec)
    bodies, ctype = PAYLOADS[s["payload"]](s)
    cores = os.cpu_count() or 1
    load_before = [round(x, 2) for x in os.getloadavg()]
    forward: dict[str, list[dict]] = {}
    if "forward" in s["record"]:
        batches = sorted({1, 8} | {min(c, 8) for c in s["clients"]} | {max(1, c // cores) for c in s["clients"]})
        forward = forward_times(config, sentences_of_32_tokens(), batches, s["forward_seconds"])
    rows = measure(s, servers, bodies, ctype, config)
    table = {(r["server"], r["concurrency"]): r for r in rows}
    ceil = ceilings(table, s.get("ceiling"), forward.get("edge-mm", []), s["clients"], cores)
    use_wrk = s["load"] == "wrk" or (s["load"] == "auto" and wrk_available())
    result = {
        "scenario": s["name"],
        "scenario_file": str(Path(s["file"]).resolve().relative_to(ROOT))
        if Path(s["file"]).resolve().is_relative_to(ROOT)
        else s["file"],
        "description": s["description"],
        "command": command,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
        "machine": machine(),
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "client": "wrk -t1 (Lua script)" if use_wrk else "Python closed loop, keep-alive",
        "settings": {k: s[k] for k in ("route", "payload", "clients", "seconds", "rounds", "warmup_seconds", "record")}
        | {"config": str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config), "servers": servers},
        "forward": forward,
        "ceilings": ceil,
        "aims": evaluate_aims([a for a in s["aims"] if a["server"] in {x["name"] for x in servers}], table, ceil),
        "rows": rows,
    }
    md = render(result, s)
    print(md)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{s['out']}.json").write_text(json.dumps(result, indent=2) + "\n")
    (results / f"{s['out']}.md").write_text(md)
    if len(s["clients"]) > 1 and plot(rows, s["description"], results / f"{s['out']}.png"):
        print(f"plot: {results / (s['out'] + '.png')}")
    return result


# --- reporting ---


def render(result: dict, s: dict[str, Any]) -> str:
    rows, st = result["rows"], result["settings"]
    table = {(r["server"], r["concurrency"]): r for r in rows}
    ceil = {int(k): v for k, v in result["ceilings"].items()}
    lb, la = result["load_average"]["before"], result["load_average"]["after"]
    sha = result["commit"]["sha"][:10] + (" (with uncommitted changes)" if result["commit"]["dirty"] else "")
    lines = [
        f"# {result['description']}",
        "",
        f"Command: `{result['command']}` (scenario file {result['scenario_file']})",
        "",
        f"Run {result['when']} at commit {sha}. " + machine_line(result["machine"]),
        f"Load generator: {result['client']}; {st['rounds']} round(s) of {st['seconds']:g} s per server and client "
        f"count after {st['warmup_seconds']:g} s of warm-up (servers in turn, order flipped each round); payload "
        f"{st['payload']} to {st['route']}; edge-mm settings {st['config']}. Load average before / after: "
        f"{' '.join(map(str, lb))} / {' '.join(map(str, la))}.",
        machine_note(lb, result["machine"]["cores"]),
        "",
    ]
    base = s["compare_to"]
    extra = [f"vs {b}" for b in base] + (["of tighter ceiling"] if s.get("ceiling") or result["forward"] else [])
    extra += [h for h, k in (("RSS MB after warm-up", "rss"), ("server CPU %", "cpu")) if k in st["record"]]
    if "split" in st["record"]:
        extra += ["CPU ms/request: forward / rest", "passes at once"]
    lines += [
        "| server | clients | req/s (rounds) | p50 ms (rounds) | p99 ms | p99/p50 | "
        + " | ".join([*extra, "errors"])
        + " |",
        "|---" * (7 + len(extra)) + "|",
    ]
    for r in rows:
        c = r["concurrency"]
        cells = [_fmt(ratio(r["rps"], table.get((b, c), {}).get("rps"))) for b in base]
        if s.get("ceiling") or result["forward"]:
            cells.append(_fmt(ratio(r["rps"], (ceil.get(c) or {}).get("tighter_rps")), "{:.0%}"))
        cells += [str(r[k]) for k, rec in (("rss_warm_mb", "rss"), ("server_cpu_pct", "cpu")) if rec in st["record"]]
        if "split" in st["record"]:
            known = r.get("forward_cpu_ms") is not None
            cells += (
                [f"{r['forward_cpu_ms']:.2f} / {r['rest_cpu_ms']:.2f}", f"{r['passes_at_once']:.2f}"]
                if known
                else ["-", "-"]
            )
        lines.append(
            f"| {r['label']} | {c} | {r['rps']:.0f} ({_range(r['rps_range'])}) | {r['p50_ms']:.1f} "
            f"({_range(r['p50_range'], 1)}) | {r['p99_ms']:.1f} | {_fmt(ratio(r['p99_ms'], r['p50_ms']), '{:.1f}')} | "
            + " | ".join([*cells, str(r["errors"])])
            + " |"
        )
    if result["forward"]:
        lines += ["", "Ceilings (req/s): HTTP measured above; forward from edge-mm's artifact in process (below), "]
        lines[-1] += "the best arrangement of its forward passes on the cores."
        lines += ["", "| clients | HTTP ceiling | forward ceiling | tighter |", "|---|---|---|---|"]
        for c in st["clients"]:
            cc = ceil.get(c, {})
            lines.append(
                f"| {c} | {_fmt(cc.get('http_rps'), '{:.0f}')} | {_fmt(cc.get('forward_rps'), '{:.0f}')} | "
                f"{_fmt(cc.get('tighter_rps'), '{:.0f}')} |"
            )
        lines += ["", "Forward only, in process (ms per pass; tokenizing not included):", ""]
        lines += [
            "| model | batch | threads | median ms | best ms | req/s at the median |",
            "|---|---|---|---|---|---|",
        ]
        for name, frows in result["forward"].items():
            for f in frows:
                what = f"{name} ({f.get('backend', '?')})"
                rate = f["batch"] * 1000 / f["median_ms"]
                lines.append(
                    f"| {what} | {f['batch']} | {f['threads']} | {f['median_ms']} | {f['best_ms']} | {rate:.0f} |"
                )
    if result["aims"]:
        lines += ["", "Aims, in this run:", ""]
        for a in result["aims"]:
            lines.append(
                f"- {a['aim']}: **{ {True: 'met', False: 'missed', None: 'not measured'}[a['met']] }** ({a['figure']})"
            )
    lines += ["", "Summary:", "", summary_table(rows, st["clients"])]
    return "\n".join(lines)


def plot(rows: list[dict], title: str, path: Path) -> bool:
    """req/s and p99 against clients, one line per server (log scales: the peers differ tenfold)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name in dict.fromkeys(r["server"] for r in rows):
        mine = [r for r in rows if r["server"] == name]
        a.plot([r["concurrency"] for r in mine], [r["rps"] for r in mine], marker="o", label=name)
        b.plot([r["concurrency"] for r in mine], [r["p99_ms"] for r in mine], marker="o", label=name)
    a.set(xlabel="concurrent clients", ylabel="requests/s", title="throughput", yscale="log")
    b.set(xlabel="concurrent clients", ylabel="p99 latency (ms)", title="p99 latency", yscale="log")
    a.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
