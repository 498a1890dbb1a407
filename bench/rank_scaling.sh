#!/bin/bash
# 1 rank vs 2 ranks training throughput, against what the machine itself gives
# two processes (benchmark, not a test).
#
#   bash bench/rank_scaling.sh BUILD_DIR [ROUNDS] [BENCH_TRAIN_ARGS...]
#
# Each round runs, one after the other on the idle machine:
#   1. bench_train on 1 rank (1 thread);
#   2. two independent 1-rank bench_train processes at once, pinned to cores 0
#      and 1: the most two ranks could give on this machine (shared caches,
#      memory bandwidth, the hypervisor), with no communication at all;
#   3. bench_train on 2 ranks (gradients all-reduced, overlapped with backward).
# Rounds are interleaved so that a slow spell of a shared machine hits every
# configuration alike. Prints every figure, then per configuration the median
# samples/s over the rounds, and the ratios:
#   scaling  = 2 ranks / 1 rank            (the issue-6 target: >= 1.85)
#   ceiling  = 2 independent / 1 rank      (the machine's own limit)
#   efficiency = 2 ranks / 2 independent   (what data parallelism costs)
# Defaults: 3 rounds of "small 10 8 112" (ViT-S MAE, 10 steps, 8 images of
# 112 x 112 per rank).
set -euo pipefail
build=${1:?usage: rank_scaling.sh BUILD_DIR [ROUNDS] [BENCH_TRAIN_ARGS...]}
rounds=${2:-3}
shift $(( $# >= 2 ? 2 : 1 ))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(small 10 8 112)
bench="$build/bench/bench_train"
[ -x "$bench" ] || { echo "rank_scaling.sh: no $bench (build the bench_train target)" >&2; exit 2; }
mpi=(mpiexec --allow-run-as-root)
rate() { grep -o '[0-9.]* samples/s' | cut -d' ' -f1; }

one=() two=() indep=()
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  a=$("${mpi[@]}" -n 1 "$bench" "${args[@]}" 2>/dev/null | rate)
  tmp=$(mktemp -d)
  "${mpi[@]}" --bind-to none -n 1 taskset -c 0 "$bench" "${args[@]}" >"$tmp/0" 2>/dev/null &
  p0=$!
  "${mpi[@]}" --bind-to none -n 1 taskset -c 1 "$bench" "${args[@]}" >"$tmp/1" 2>/dev/null &
  p1=$!
  wait "$p0" "$p1"
  b0=$(rate <"$tmp/0") b1=$(rate <"$tmp/1")
  rm -rf "$tmp"
  b=$(awk -v x="$b0" -v y="$b1" 'BEGIN {print x + y}')
  c_line=$("${mpi[@]}" -n 2 "$bench" "${args[@]}" 2>/dev/null | grep '^ranks')
  c=$(echo "$c_line" | rate)
  echo "round $r: 1 rank $a | 2 independent $b0 + $b1 = $b | 2 ranks $c (${c_line##*| })"
  one+=("$a") indep+=("$b") two+=("$c")
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck source=bench/scaling_summary.sh
source "$(dirname "$0")/scaling_summary.sh"
scaling_summary "2 ranks"
