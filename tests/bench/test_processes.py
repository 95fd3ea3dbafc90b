"""bench.processes: the report pairs each round's two arrangements and says the ratio."""

from bench import processes


def _row(n, arrangement, rps):
    return {
        "round": n,
        "arrangement": arrangement,
        "rps": rps,
        "p50_ms": [20.0, 21.0],
        "cpu_pct": 180.0,
        "forward_ms": 3.4,
        "rest_ms": 1.6,
        "errors": 0,
    }


def test_report_gives_each_rounds_ratio_and_their_median():
    rows = [
        _row(1, processes.ONE, 400),
        _row(1, processes.PAIR, 440),
        _row(2, processes.PAIR, 380),
        _row(2, processes.ONE, 400),
        _row(3, processes.ONE, 400),
        _row(3, processes.PAIR, 400),
    ]
    text = processes.report(rows, "Machine: test")
    assert "1.10x, 0.95x, 1.00x" in text
    assert "median **1.00x**" in text
    assert "| 1 | 2 processes, 1 slot each, 4 clients each | 440 | 20.0 / 21.0 | 180 | 3.40 / 1.60 | 0 |" in text


def test_a_round_missing_an_arrangement_gives_no_ratio():
    text = processes.report([_row(1, processes.ONE, 400)], "Machine: test")
    assert "median" not in text
