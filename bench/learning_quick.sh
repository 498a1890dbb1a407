#!/usr/bin/env bash
# A quick probe of learnability on the learning benchmark's data (minutes, not
# the benchmark itself): generate configs/learning.toml's dataset, pretrain on
# X-ray and ultrasound only for 300 steps, and evaluate the test split of every
# modality against random init, raw pixels and histograms. Extra arguments are
# `--set` overrides for every stage (data geometry, objective, model, steps).
#
#   bash bench/learning_quick.sh OUT [--set KEY=VALUE ...]
#   bash bench/learning_quick.sh /tmp/q --set train.max_steps=900 --set train.warmup_steps=60 \
#        --set model.embedding=mean
#
# Prints one line per encoder: recall@1 per modality with the lower end of its
# 95 % interval; the full report is OUT/report.json. Figures: docs/performance.md.
set -euo pipefail
out=${1:?usage: learning_quick.sh OUT [--set KEY=VALUE ...]}; shift
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${M3RET:-$here/build/m3ret}
mpi=(mpiexec -n 2 --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
cfg=(--config "$here/configs/learning.toml" --set 'train.modalities=["xray","ultrasound"]'
     --set train.max_steps=300 --set train.warmup_steps=30 --set train.checkpoint_every=0 "$@")
# step NAME LOG CMD...: run CMD with its output in LOG; on failure name the stage and show the log.
step() {
  local name=$1 log=$2; shift 2
  if ! "$@" > "$log" 2>&1; then
    echo "learning_quick.sh: $name failed; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
}
mkdir -p "$out"
step synth "$out/synth.log" "$bin" synth "${cfg[@]}" --out "$out/data"
step shard "$out/shard.log" "${mpi[@]}" "$bin" shard "${cfg[@]}" \
  --manifest "$out/data/manifest.csv" --out "$out/shards"
start=$(date +%s)
step train "$out/train.log" "${mpi[@]}" "$bin" train "${cfg[@]}" --shards "$out/shards" \
  --run-dir "$out/run"
echo "train: $(( $(date +%s) - start )) s"
step eval "$out/eval.log" "${mpi[@]}" "$bin" eval "${cfg[@]}" --checkpoint "$out/run" \
  --shards "$out/shards" --baselines random-init,raw-pixels,histogram --no-history \
  --out "$out/report.json"
if [ ! -s "$out/report.json" ]; then
  echo "learning_quick.sh: eval wrote no $out/report.json; see $out/eval.log" >&2
  exit 1
fi
python3 - "$out/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for name, e in r["encoders"].items():
    print(name.ljust(12), "  ".join("%s %.3f (lo %.3f, chance %.3f)" % (m, v["recall@1"], v["ci95"]["recall@1"][0], v["chance"]["recall@1"])
                                     for m, v in e["per_modality"].items()))
PY
