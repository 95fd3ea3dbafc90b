"""Hard limits: the requests that once bought gigabytes or tens of seconds now get a 4xx or a cheap 200.

Measured in a server subprocess through its own accounting (peak RSS reset per case via
/proc/<pid>/clear_refs); the bounds are generous: they catch gigabytes, not megabytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.attack_cases import CASES, run_case
from tests.conftest import need
from tests.serving import processes_with, running_server
from tests.vision_fixtures import *  # noqa: F403

pytestmark = pytest.mark.real_models


@pytest.fixture(scope="module")
def live_server(vision_config):
    with running_server(vision_config) as base:
        pids = [p for p in processes_with(str(vision_config)) if b"serve" in Path(f"/proc/{p}/cmdline").read_bytes()]
        need(len(pids) == 1, f"one server process expected, found {pids}")
        yield base, pids[0]


@pytest.mark.parametrize("case", CASES, ids=[c.route.rsplit("/", 1)[-1] + f"-{i}" for i, c in enumerate(CASES)])
def test_attack_case_is_refused_or_cheap(live_server, case):
    base, pid = live_server
    row = run_case(base, pid, case)
    assert row["status"] in case.expect, row
    assert row["peak_added_mb"] < 300, row  # was 1,100-3,600 MB
    assert row["seconds"] < 10, row  # was 3.5-28 s
