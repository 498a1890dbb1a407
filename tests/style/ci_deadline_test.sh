#!/usr/bin/env bash
# .ci/deadline.sh, which stops .ci/run's rotating stage at the run's deadline: the command's own
# status passes through, a command cut by the deadline gives 124 together with everything it
# started, a command that returns 124 itself is not taken for the deadline, and one that ignores
# TERM is killed. Also .ci/run's refusal of an unknown stage.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/.ci/deadline.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
# Running: it exists and is not a zombie (an ended process that its new parent has not reaped yet).
running() { [[ -r /proc/$1/stat ]] && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
expect() {  # expect WHAT WANT GOT
  if [[ "$2" != "$3" ]]; then
    echo "ci_deadline_test: $1: expected $2, got $3" >&2
    bad=1
  fi
}
rc=0; deadline_run 30 true || rc=$?
expect "a command that succeeds" 0 "$rc"
rc=0; deadline_run 30 bash -c 'exit 3' || rc=$?
expect "a command that fails with 3" 3 "$rc"
rc=0; deadline_run 30 bash -c 'exit 124' || rc=$?
expect "a command that returns 124 itself, before the deadline" 1 "$rc"

# Cut by the deadline: the command and the process it started in the background both end.
start=$SECONDS rc=0
deadline_run 2 bash -c "sleep 300 & echo \$! > '$tmp/child'; wait" || rc=$?
expect "a command past its 2 s deadline" 124 "$rc"
((SECONDS - start < 60)) || expect "the time a 2 s deadline took" "under 60 s" "$((SECONDS - start)) s"
sleep 0.5
child=$(cat "$tmp/child" 2>/dev/null || echo none)
if [[ "$child" == none ]]; then
  expect "the background child's pid file" "written" "missing"
elif running "$child"; then
  expect "the command's background child after the deadline" "ended" "still running (pid $child)"
  kill "$child" 2>/dev/null
fi

# A command that ignores TERM is killed DEADLINE_KILL_AFTER seconds after the deadline.
start=$SECONDS rc=0
DEADLINE_KILL_AFTER=1 deadline_run 2 bash -c 'trap "" TERM; sleep 300' || rc=$?
expect "a command that ignores TERM" 124 "$rc"
((SECONDS - start < 60)) || expect "the time it took to kill it" "under 60 s" "$((SECONDS - start)) s"

out=$(bash "$root/.ci/run" --only no-such-stage 2>&1); rc=$?
expect ".ci/run --only no-such-stage" 2 "$rc"
[[ "$out" == *"unknown stage 'no-such-stage'"* ]] ||
  expect ".ci/run's message for an unknown stage" "unknown stage 'no-such-stage'" "$out"

((bad == 0)) || exit 1
echo "ci_deadline_test: the deadline cuts commands and their children, statuses pass through"
