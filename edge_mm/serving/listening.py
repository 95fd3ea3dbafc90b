"""The line that says where the server listens, on stdout: tests, scripts and supervisors wait for it."""

from __future__ import annotations

import sys

PREFIX = "edge-mm listening on "


def announce(url: str, note: str = "") -> None:
    """``edge-mm listening on URL[ note]`` as one write. Log records from other threads (warm-up starts as the
    server listens) go to the same pipe when stdout and stderr share it, and under ``python -u`` print() writes
    its text and its newline separately: a record written between the two ended the line in the log's text."""
    sys.stdout.write(f"{PREFIX}{url}{note}\n")
    sys.stdout.flush()
