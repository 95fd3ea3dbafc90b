#!/usr/bin/env bash
# Offline proof: run a bundle in a network namespace that has only loopback, call every route
# over 127.0.0.1, and record every connect/sendto/sendmsg the bundle makes with strace; fails on
# a wrong answer or on any peer that is not loopback (or AF_UNIX). Needs root (unshare -n) and strace.
# The probe and the served executable run in their own PID namespace and process group; on exit
# (pass, fail or signal) nothing of them survives (scripts/contain.sh).
#
#   scripts/offline_check.sh [dist/edge-mm/edge-mm] [python]
#
# OFFLINE_CHECK_PROBE='shell command' replaces the probe (it gets the executable as $1): the
# tests run the namespace and the cleanup with a stub server that way.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/contain.sh
EXE=$(realpath "${1:-dist/edge-mm/edge-mm}")
PY=${2:-.venv/bin/python}
LOG=$(mktemp --suffix=.strace)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  contain_stop
  rm -f "$LOG"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -n "${OFFLINE_CHECK_PROBE:-}" ]; then
  PROBE=(sh -c "$OFFLINE_CHECK_PROBE" sh "$EXE")
else
  command -v strace >/dev/null || { echo "offline_check: strace is missing (apt-get install strace)" >&2; exit 2; }
  PROBE=("$PY" -m tests.bundle_probe "$EXE" --strace "$LOG")
fi
# Inside the namespaces: bring loopback up, show that nothing else exists, then probe.
contain --net --mount-proc -- sh -c '
  ip link set lo up
  echo "offline_check: interfaces in the namespace: $(ip -o link show | cut -d: -f2 | tr -d " " | paste -sd,)" >&2
  exec "$@"' sh "${PROBE[@]}"
