#!/bin/bash
# The user documentation (README.md, docs/, the shipped configs and Slurm templates) is written for
# users: it cites no issue numbers or development notes, points at no file outside the repository,
# and every relative Markdown link in it reaches a file of the repository.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
docs=(README.md docs/*.md configs/*.toml configs/sweeps/*.toml slurm/*.sbatch)
fail=0
complain() { echo "check_docs: $*" >&2; fail=1; }
while IFS= read -r hit; do
  complain "$hit: cites an issue number (docs are for users; history goes in docs/performance.md)"
done < <(grep -nHiE '\bissues? #?[0-9]+\b' "${docs[@]}")
while IFS= read -r hit; do
  complain "$hit: points at a file users do not have"
done < <(grep -nHE '(DESIGN|STYLE|DATASETS)\.md|\.\./shared/' "${docs[@]}")
for f in README.md docs/*.md; do
  while IFS= read -r link; do
    target=${link#](}
    case "$target" in http://* | https://* | mailto:* | '') continue ;; esac
    [ -e "$(dirname "$f")/$target" ] || complain "$f: the link '$target' reaches no file"
  done < <(grep -oE '\]\([^)# ]+' "$f")
done
[ "$fail" = 0 ] && echo "check_docs: ${#docs[@]} files: no issue numbers, no outside files, every link reaches a file"
exit "$fail"
