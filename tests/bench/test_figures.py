"""The harness's pure figures: merging rounds, ceilings, ratios, a scenario's aims, the summary table."""

import pytest

from bench import scenario
from bench.harness import (
    ceilings,
    evaluate_aims,
    forward_ceiling_rps,
    machine_note,
    merge_rounds,
    ratio,
    summary_table,
)

OURS, PEER, TUTORIAL, HTTP_CEILING = "edge-mm", "onnx-int8", "tutorial", "http-ceiling"


def _round(rps, p50, p99, c=8, requests=100, errors=0):
    return {
        "concurrency": c,
        "requests": requests,
        "errors": errors,
        "rps": rps,
        "p50_ms": p50,
        "p95_ms": p99,
        "p99_ms": p99,
    }


def test_merge_rounds_means_ranges_and_sums():
    row = merge_rounds([_round(100, 10, 20, errors=1), _round(120, 12, 30, requests=50)])
    assert row["rps"] == 110
    assert row["rps_range"] == [100, 120]
    assert row["p50_ms"] == 11
    assert row["p99_range"] == [20, 30]
    assert row["requests"] == 150
    assert row["errors"] == 1
    assert row["rounds"] == 2


FORWARD = [
    {"batch": 1, "threads": 1, "median_ms": 4.0},
    {"batch": 1, "threads": 2, "median_ms": 2.5},
    {"batch": 4, "threads": 1, "median_ms": 10.0},
    {"batch": 8, "threads": 1, "median_ms": 16.0},
    {"batch": 8, "threads": 2, "median_ms": 12.0},
]


def test_forward_ceiling_one_client_is_the_fastest_single_pass():
    assert forward_ceiling_rps(FORWARD, 1, cores=2) == 400.0  # 1 / 2.5 ms


def test_forward_ceiling_eight_clients_takes_the_best_arrangement():
    # two batches of 4 side by side: 2 * 4 / 10 ms = 800/s beats 8 / 12 ms and 8 / 16 ms
    assert forward_ceiling_rps(FORWARD, 8, cores=2) == 800.0


def test_forward_ceiling_never_uses_a_batch_larger_than_the_clients():
    assert forward_ceiling_rps([{"batch": 8, "threads": 1, "median_ms": 1.0}], 4, cores=2) == 0.0


def test_ceilings_pick_the_tighter():
    table = {(HTTP_CEILING, 8): {"rps": 600.0}, (HTTP_CEILING, 1): {"rps": 1500.0}}
    out = ceilings(table, HTTP_CEILING, FORWARD, [1, 8], cores=2)
    assert out[8] == {"http_rps": 600.0, "forward_rps": 800.0, "tighter_rps": 600.0}
    assert out[1]["tighter_rps"] == 400.0


@pytest.mark.parametrize(("a", "b", "expected"), [(3, 2, 1.5), (None, 2, None), (1, 0, None), (1, None, None)])
def test_ratio(a, b, expected):
    assert ratio(a, b) == expected


def _table(ours_p50=4.0, ours_rps=300.0, ours_p99=12.0):
    return {
        (OURS, 1): {"p50_ms": ours_p50, "rps": 200.0},
        (PEER, 1): {"p50_ms": 5.0, "rps": 190.0},
        (OURS, 8): {"rps": ours_rps, "p50_ms": 10.0, "p99_ms": ours_p99},
        (PEER, 8): {"rps": 200.0},
        (TUTORIAL, 8): {"rps": 50.0},
    }


AIMS = scenario.load("embeddings")["aims"]  # the headline scenario's own aims


def test_aims_met():
    aims = evaluate_aims(AIMS, _table(), {8: {"tighter_rps": 400.0}})
    assert [a["met"] for a in aims] == [True, True, True, True, True]
    assert [a["value"] for a in aims] == [0.8, 1.5, 6.0, 1.2, 0.75]
    assert aims[4]["figure"] == "75%"
    assert aims[3]["figure"] == "1.20"
    assert aims[1]["figure"] == "1.50x"


def test_aims_missed_and_unmeasured():
    aims = evaluate_aims(AIMS, _table(ours_p50=6.0, ours_rps=240.0, ours_p99=30.0), {})
    assert [a["met"] for a in aims] == [False, False, False, False, None]
    assert aims[4]["figure"] == "not measured"


def test_summary_table_has_one_line_per_server():
    rows = [
        {
            **merge_rounds([_round(100, 10, 20, c=1), _round(110, 11, 21, c=1)]),
            "server": OURS,
            "label": "edge-mm",
            "rss_warm_mb": 900,
        },
        {
            **merge_rounds([_round(300, 20, 40), _round(300, 20, 40)]),
            "server": OURS,
            "label": "edge-mm",
            "rss_warm_mb": 900,
        },
        {**merge_rounds([_round(1500, 0.5, 1, c=1)]), "server": HTTP_CEILING, "label": "ceiling", "rss_warm_mb": 30},
    ]
    lines = summary_table(rows, [1, 8]).splitlines()
    assert lines[2] == "| edge-mm | 100-110 (10.0-11.0 ms) | 300 (20 ms / 40 ms) | 900 MB |"
    assert lines[3] == "| ceiling | 1500 (0.5 ms) | - | 30 MB |"


def test_the_report_calls_a_run_busy_only_when_the_machine_was():
    assert "busy machine" in machine_note([2.5, 1.0, 0.8], cores=2)
    assert "otherwise quiet" in machine_note([0.1, 1.2, 3.2], cores=2)
