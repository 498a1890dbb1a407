#!/usr/bin/env bash
# Checks that every tracked C++ file (.h, .cc, .cu) follows .clang-format (clang-format 14,
# Debian 12's: other versions format differently). With --fix, rewrites them instead.
# Exit 77 (CTest: skipped) without clang-format-14 or outside a git checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
CF=${CLANG_FORMAT:-clang-format-14}
if ! command -v "$CF" >/dev/null; then
  echo "check_format: $CF not found (bash setup.sh installs it)"
  exit 77
fi
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "check_format: not a git checkout, nothing to check"
  exit 77
fi
mapfile -t files < <(git ls-files -- '*.h' '*.cc' '*.cu')
if [[ "${1:-}" == --fix ]]; then
  "$CF" -i "${files[@]}"
  exit 0
fi
# The check must be able to fail: a badly indented line is reported.
if printf 'int f() {\nreturn 1;\n}\n' | "$CF" --dry-run --Werror --assume-filename=x.cc 2>/dev/null; then
  echo "check_format: the self-test failed: $CF --dry-run --Werror accepted misformatted code" >&2
  exit 1
fi
if ! "$CF" --dry-run --Werror "${files[@]}"; then
  echo "check_format: the files above do not follow .clang-format;" \
       "fix them with: bash tests/style/check_format.sh --fix" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files follow .clang-format"
