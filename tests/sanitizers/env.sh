# Sanitizer run-time options for the M3RET_SANITIZE builds: `source tests/sanitizers/env.sh`
# before building (the build runs each test binary to list its tests) and before ctest.
# fast_unwind_on_malloc=0: full allocation stacks through Open MPI (built without frame
# pointers), which lsan.supp needs to recognise its leaks.
# Any report ends the process with an error, so it fails the test that caused it.
_m3ret_san_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# M3RET_ASAN_LEAKS=0: no leak check, and the fast frame-pointer unwinder for allocation stacks.
# The full stacks cost every allocation a slow unwind: LibTorch's start-up alone makes `m3ret
# --help` take about 7 times as long (docs/performance.md, "CI stages"); .ci/run's sanitizer
# stages for the LibTorch suites use this to fit in CI's time (asan-core and --all check leaks).
_m3ret_leaks="detect_leaks=1:fast_unwind_on_malloc=0"
[[ "${M3RET_ASAN_LEAKS:-1}" != 0 ]] || _m3ret_leaks="detect_leaks=0:fast_unwind_on_malloc=1"
export ASAN_OPTIONS="abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:strict_init_order=1:check_initialization_order=1:${_m3ret_leaks}"
export LSAN_OPTIONS="suppressions=${_m3ret_san_dir}/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=${_m3ret_san_dir}/tsan.supp"
unset _m3ret_san_dir _m3ret_leaks
