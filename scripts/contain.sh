# Sourced by the proof scripts: run one command so that nothing it starts outlives the script.
#
#   contain [UNSHARE-OPTION...] -- COMMAND [ARG...]    run it, wait, return its exit status
#   contain_stop                                       stop whatever is left (call it from the EXIT trap)
#
# COMMAND runs in its own session and process group. With unshare options (root only) it also
# runs as init of a new PID namespace: when it exits, the kernel kills everything left in the
# namespace, and --kill-child takes the namespace down if unshare itself is killed. contain_stop
# sends the group SIGTERM, SIGKILL after CONTAIN_GRACE_S (default 5) seconds, and waits, so a
# proof that fails, is interrupted or whose probe dies still leaves no server behind (strace,
# for one, detaches on SIGTERM and leaves its tracee running). The calling script should
# `trap 'exit 130' INT` and `trap 'exit 143' TERM` so that a signal runs its EXIT trap.

CONTAINED=

contain() {
  local flags=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  if [ ${#flags[@]} -gt 0 ]; then  # <&0: keep stdin (a background job would get /dev/null)
    setsid unshare "${flags[@]}" --pid --fork --kill-child -- "$@" <&0 &
  else
    setsid "$@" <&0 &
  fi
  CONTAINED=$!  # a background job is not a group leader, so setsid execs in place: this is the group id
  wait "$CONTAINED"
}

contain_stop() {
  [ -n "$CONTAINED" ] || return 0
  kill -TERM -- "-$CONTAINED" 2>/dev/null || true
  local _
  for _ in $(seq $((${CONTAIN_GRACE_S:-5} * 10))); do
    kill -0 -- "-$CONTAINED" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$CONTAINED" 2>/dev/null || true
  wait "$CONTAINED" 2>/dev/null || true
  CONTAINED=
}
