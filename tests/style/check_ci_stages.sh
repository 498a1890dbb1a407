#!/usr/bin/env bash
# Every test binary runs under ASan+UBSan in CI: each one named in tests/*/CMakeLists.txt
# (m3ret_test, m3ret_mpi_test, or an add_executable of test_*) is in exactly one of the sanitizer
# stages of .ci/run (ASAN_SUITES), and every name there is a test binary. Given a build folder
# (ctest passes it), also every test of it but the style checks carries its binary's name as a
# label, which is how the stages pick their tests (ctest -L).
set -euo pipefail
build="${1:-}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
block=$(sed -n '/^declare -A ASAN_SUITES=(/,/^)/p' "$root/.ci/run")
[[ -n "$block" ]] || { echo "check_ci_stages: no ASAN_SUITES in .ci/run" >&2; exit 1; }
eval "$block"
mapfile -t binaries < <(grep -ho 'm3ret_test([a-z0-9_]*\|m3ret_mpi_test([a-z0-9_]*\|add_executable(test_[a-z0-9_]*' \
  "$root"/tests/*/CMakeLists.txt | sed 's/.*(//' | sort -u)
declare -A stage_of=()
bad=0
for stage in "${!ASAN_SUITES[@]}"; do
  for name in ${ASAN_SUITES[$stage]}; do
    if [[ -n "${stage_of[$name]:-}" ]]; then
      echo "check_ci_stages: $name is in two sanitizer stages of .ci/run: ${stage_of[$name]} and $stage" >&2
      bad=1
    fi
    stage_of[$name]=$stage
  done
done
for name in "${binaries[@]}"; do
  if [[ -z "${stage_of[$name]:-}" ]]; then
    echo "check_ci_stages: test binary $name is in no sanitizer stage of .ci/run (ASAN_SUITES)" >&2
    bad=1
  fi
done
for name in "${!stage_of[@]}"; do
  if [[ " ${binaries[*]} " != *" $name "* ]]; then
    echo "check_ci_stages: .ci/run's ${stage_of[$name]} names $name, which no tests/*/CMakeLists.txt builds" >&2
    bad=1
  fi
done
if [[ -n "$build" && -f "$build/CTestTestfile.cmake" ]]; then
  names=$(IFS='|'; echo "${!stage_of[*]}")
  unlabelled=$(ctest --test-dir "$build" -N -LE "^(${names}|style)\$" | grep 'Test *#' || true)
  if [[ -n "$unlabelled" ]]; then
    echo "check_ci_stages: these tests carry no test binary's label, so no sanitizer stage runs them:" >&2
    echo "$unlabelled" >&2
    bad=1
  fi
fi
((bad == 0)) || exit 1
echo "check_ci_stages: ${#binaries[@]} test binaries, each in one sanitizer stage"
