# deadline_run SECONDS COMMAND [ARG...]: runs COMMAND (a program, not a shell function) under
# coreutils `timeout`, which gives it a process group of its own and at the deadline sends TERM to
# the whole group (builds, ctest and the tests it started), then KILL to what is left
# DEADLINE_KILL_AFTER seconds later (default 60).
# Returns COMMAND's status, or 124 when the deadline ended it; a 124 that COMMAND returned on its
# own before the deadline becomes 1, so that 124 always means "cut by the deadline".
# Sourced by .ci/run; tests/style/ci_deadline_test.sh checks it.
deadline_run() {
  local seconds=$1 start=$SECONDS rc=0
  shift
  timeout --kill-after="${DEADLINE_KILL_AFTER:-60}" "$seconds" "$@" || rc=$?
  if ((rc == 124 || rc == 137)) && ((SECONDS - start >= seconds - 1)); then
    return 124
  fi
  ((rc != 124)) || rc=1
  return "$rc"
}
