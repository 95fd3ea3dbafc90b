#!/usr/bin/env bash
# Offline proof: run a bundle in a network namespace that has only loopback, call every route
# over 127.0.0.1, and record every connect/sendto/sendmsg the bundle makes with strace; fails on
# a wrong answer or on any peer that is not loopback (or AF_UNIX). Needs root (unshare -n) and strace.
#
#   scripts/offline_check.sh [dist/edge-mm/edge-mm] [python]
set -euo pipefail
cd "$(dirname "$0")/.."
EXE=$(realpath "${1:-dist/edge-mm/edge-mm}")
PY=${2:-.venv/bin/python}
command -v strace >/dev/null || { echo "offline_check: strace is missing (apt-get install strace)" >&2; exit 2; }
LOG=$(mktemp --suffix=.strace)
trap 'rm -f "$LOG"' EXIT
# Inside the namespace: bring loopback up, show that nothing else exists, then probe.
unshare --net sh -c '
  ip link set lo up
  echo "offline_check: interfaces in the namespace: $(ip -o link show | cut -d: -f2 | tr -d " " | paste -sd,)" >&2
  exec "$@"' sh "$PY" -m tests.bundle_probe "$EXE" --strace "$LOG"
