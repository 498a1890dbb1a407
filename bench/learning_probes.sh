#!/usr/bin/env bash
# The shortcut probes alone on the learning benchmark's data, over several seeds
# (about a minute per seed on 2 cores, no pretraining): bench/learning_quick.sh with a
# single training step, which generates configs/learning.toml's dataset, shards it and
# evaluates the test split with the three baselines every report carries: random init
# (the run's initial weights, read as the config's model.embedding says), raw pixels
# and intensity histograms. A generator setting is fit for the benchmark when all
# three stay near chance (docs/data.md). Extra arguments are `--set` overrides for
# every stage, e.g. the generator's geometry.
#
#   bash bench/learning_probes.sh OUT SEEDS [--set KEY=VALUE ...]
#   bash bench/learning_probes.sh /tmp/p 11,12,13 --set synth.pattern_warp=1.0
#
# Prints one Markdown row per seed and probe (recall@1 per modality, chance in the
# last row) and the mean over seeds; OUT/seed-S/report.json holds each full report.
# Then, from `m3ret eval --summarize` over those reports (OUT/summary.json and .md),
# in how many seeds each probe's recall@1 interval lay above chance, per row.
# A run folder is needed for the random-init weights, so each seed trains a single
# step and reads its initial weights; the one-step encoder itself is not reported.
# OUT/seed-S/quick.log holds what learning_quick.sh printed.
set -euo pipefail
out=${1:?usage: learning_probes.sh OUT SEEDS [--set KEY=VALUE ...]}
seeds=${2:?usage: learning_probes.sh OUT SEEDS [--set KEY=VALUE ...]}
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${M3RET:-$here/build/m3ret}
for seed in ${seeds//,/ }; do
  case $seed in *[!0-9]*)
    echo "learning_probes.sh: seed '$seed' in '$seeds' is not a non-negative integer" >&2
    exit 2 ;;
  esac
done
[ -n "${seeds//,/}" ] || { echo "learning_probes.sh: no seed in '$seeds'" >&2; exit 2; }
reports=()
for seed in ${seeds//,/ }; do
  dir=$out/seed-$seed
  mkdir -p "$dir"
  if ! bash "$here/bench/learning_quick.sh" "$dir" --set "synth.seed=$seed" --set "train.seed=$seed" \
      --set train.max_steps=1 --set train.warmup_steps=0 "$@" > "$dir/quick.log" 2> "$dir/quick.err"; then
    sed "s/^/learning_probes.sh: seed $seed: /" "$dir/quick.err" >&2
    exit 1
  fi
  reports+=("$seed=$dir/report.json")
done
python3 - "${reports[@]}" <<'PY'
import json, statistics, sys
PROBES = ["random-init", "raw-pixels", "histogram"]
ORDER = ["xray", "ultrasound", "endoscopy", "ct", "mri"]
reports = [(a.split("=", 1)[0], json.load(open(a.split("=", 1)[1]))["encoders"]) for a in sys.argv[1:]]
first = reports[0][1][PROBES[0]]["per_modality"]
mods = [m for m in ORDER if m in first] + sorted(m for m in first if m not in ORDER)
cell = lambda xs: " | ".join(f"{x:.3f}" for x in xs) + f" | {max(xs):.3f} |"
print("| seed | probe | " + " | ".join(mods) + " | highest |")
print("|---|---|" + "---|" * (len(mods) + 1))
rows = {p: [] for p in PROBES}
for seed, enc in reports:
    for p in PROBES:
        v = [enc[p]["per_modality"][m]["recall@1"] for m in mods]
        rows[p].append(v)
        print(f"| {seed} | {p} | " + cell(v))
for p in PROBES:
    print(f"| mean | {p} | " + cell([statistics.mean(c) for c in zip(*rows[p])]))
chance = [first[m]["chance"]["recall@1"] for m in mods]
print("| | chance | " + " | ".join(f"{x:.3f}" for x in chance) + " | |")
PY
files=()
for r in "${reports[@]}"; do files+=("${r#*=}"); done
if ! "$bin" eval --summarize "${files[@]}" --out "$out/summary.json" > "$out/summary.log" 2>&1; then
  echo "learning_probes.sh: eval --summarize failed; the end of $out/summary.log:" >&2
  tail -n 20 "$out/summary.log" >&2
  exit 1
fi
echo
awk '/^## Shortcut probes over seeds$/ { on = 1 } on && /^## / && !/Shortcut/ { exit } on' \
  "$out/summary.md"
