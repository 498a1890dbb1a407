#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for SECONDS each (default 30) on a working copy
# of its seed corpus (tests/fuzz/corpus/<name>/, never modified), ASan + UBSan on.
#   bash tests/fuzz/run.sh BUILD_FUZZ_DIR [SECONDS] [NAME ...]
# A crash, leak, timeout (10 s per input) or out-of-memory (2 GB) fails the run; the input is
# kept as BUILD_FUZZ_DIR/fuzz-artifacts/<name>/crash-* (reproduce: fuzz_<name> THAT_FILE).
# The random seed is M3RET_FUZZ_SEED (default 1), so that a run repeats; set another to explore.
# M3RET_FUZZ_FAIL_FAST=1 ends the run at the first failing target (.ci/run's rotating stage).
set -euo pipefail
build=${1:?usage: run.sh BUILD_FUZZ_DIR [SECONDS] [NAME ...]}; shift
seconds=${1:-30}; shift || true
here=$(cd "$(dirname "$0")" && pwd)
names=("$@")
if ((${#names[@]} == 0)); then
  for d in "$here"/corpus/*/; do names+=("$(basename "$d")"); done
fi
# The sanitizer options of the sanitizer builds, but fast unwinding (fuzzing speed).
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$here/../sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=()
for name in "${names[@]}"; do
  bin="$build/tests/fuzz/fuzz_$name"
  [[ -x "$bin" ]] || { echo "run.sh: $bin is not built (cmake --build $build --target fuzzers)" >&2; exit 2; }
  work="$build/fuzz-corpus/$name" artifacts="$build/fuzz-artifacts/$name"
  mkdir -p "$work" "$artifacts"
  log="$build/fuzz-artifacts/$name.log"
  if "$bin" -seed="${M3RET_FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$artifacts/" "$work" "$here/corpus/$name" > "$log" 2>&1; then
    # The last statistics are the fuzzer's: a reading child that libFuzzer's malloc limit stops
    # prints its own first (and leaves an oom-* file that is not a finding of the fuzzer).
    inputs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$')
    echo "fuzz_$name: clean for ${seconds} s ($inputs inputs, corpus $(ls "$work" | wc -l) files)"
  else
    echo "fuzz_$name: FAILED (log $log, inputs in $artifacts)"; tail -30 "$log"; failed+=("$name")
    [[ "${M3RET_FUZZ_FAIL_FAST:-0}" == 0 ]] || break
  fi
done
((${#failed[@]} == 0)) || { echo "run.sh: failed: ${failed[*]}" >&2; exit 1; }
