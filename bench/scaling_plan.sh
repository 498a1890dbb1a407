#!/bin/bash
# The measurements behind docs/scaling.md (benchmark, not a test): prints
# markdown tables, each figure with the 1-minute load average it was taken at.
#
#   bash bench/scaling_plan.sh BUILD_DIR WORK_DIR [STAGE...]
#
# Stages (default: all, in this order):
#   sizes        bytes per sample per modality at paper-like sizes (S = 224,
#                16 stored frames, CT V = 64 x D = 16) from `m3ret synth` inputs
#   compression  HDF5 filters for those pixels: size vs encode/decode samples/s
#                per core (bench_compression)
#   clinical     sharding rows/s per core at clinical input sizes, paper-like output
#   rows         sharding a generated manifest of ROWS rows (files repeat through
#                symlinked folders) with RANKS ranks of 1 thread: rows/s, peak RSS
#                of the largest rank (/usr/bin/time), index.json size, open time
#   ceiling      1 rank, two independent 1-rank runs at once, 2 ranks (CEIL_ROWS
#                rows): the 2-rank ceiling of this machine, as rank_scaling.sh
#   loader       loader samples/s per worker with the trainer's augmentations
#                (mae+simdino, mae), per modality, paper-like shards (bench_loader_train)
#   checkpoint   checkpoint size and write time per model preset (1 training
#                step of `m3ret train`, MAE; write time = the log's gap between
#                the step and the "checkpoint" line)
# Environment: ROWS (default "20000 50000 100000 200000"), RANKS ("1 2"),
# PRESETS ("tiny small base"), COMP_SECONDS per compression option (2), CEIL_ROWS
# (50000), COPIES of each clinical file (4), LOADER_STEPS timed batches (10).
# Needs the targets m3ret bench_shard bench_shard_open bench_compression bench_data
# bench_loader_train in BUILD_DIR. Everything runs under `nice`.
set -euo pipefail
build=$(realpath "${1:?usage: scaling_plan.sh BUILD_DIR WORK_DIR [STAGE...]}")
work=${2:?usage: scaling_plan.sh BUILD_DIR WORK_DIR [STAGE...]}
shift 2
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(sizes compression clinical rows ceiling loader checkpoint)
ROWS=${ROWS:-"20000 50000 100000 200000"}
RANKS=${RANKS:-"1 2"}
PRESETS=${PRESETS:-"tiny small base"}
SECONDS_PER_OPTION=${COMP_SECONDS:-2}
mkdir -p "$work"
work=$(realpath "$work")
m3ret="nice $build/m3ret"
mpi=(nice mpiexec --oversubscribe --allow-run-as-root)
load() { cut -d' ' -f1 /proc/loadavg; }
run() { echo "    \$ $*" >&2; "$@"; }
paper_pp=(--set preprocess.image_size=224 --set preprocess.video_frames=16
  --set preprocess.video_frame_stride=1 --set preprocess.video_stored_frames=16)

stage_sizes() {
  if [ ! -f "$work/paper-synth/manifest.csv" ]; then
    run $m3ret synth --out "$work/paper-synth" --set synth.image_size=256 \
      --set synth.volume_size=128 --set synth.volume_slices=64 --set synth.video_frames=32 \
      --set synth.video_width=256 --set synth.video_height=224 --set synth.patients_per_class=2 \
      --set 'synth.modalities=["ct","xray","ultrasound","endoscopy"]' >/dev/null 2>&1
  fi
  rm -rf "$work/paper-shards"
  run $m3ret shard --manifest "$work/paper-synth/manifest.csv" --out "$work/paper-shards" \
    "${paper_pp[@]}" >/dev/null 2>&1
  echo "| modality | samples | stored shape [C, T, H, W] | raw bytes/sample | stored bytes/sample (deflate 4) | of raw | load |"
  echo "|---|---|---|---|---|---|---|"
  python3 - "$work/paper-shards" "$(load)" <<'EOF'
import json, os, sys
d, load = sys.argv[1], sys.argv[2]
idx = json.load(open(os.path.join(d, "index.json")))
for name, m in idx["modalities"].items():
    n = m["count"]
    raw = 1
    for x in m["shape"]:
        raw *= x
    stored = sum(os.path.getsize(os.path.join(d, s["file"])) for s in m["shards"]) / n
    print(f"| {name} | {n} | {m['shape']} | {raw} | {stored:.0f} | {stored / raw:.3f} | {load} |")
EOF
}

stage_compression() {
  [ -f "$work/paper-shards/index.json" ] || stage_sizes >/dev/null
  echo "load before: $(load)"
  run nice "$build/bench/bench_compression" "$work/paper-shards" "$work/compression" \
    "$SECONDS_PER_OPTION"
  echo "load after: $(load)"
}

# rows_manifest N: N rows over the small ultrasound files, through symlinked copies.
rows_manifest() {
  local n=$1 src="$work/rows-synth" out="$work/rows/manifest-$1.csv"
  if [ ! -f "$src/manifest.csv" ]; then
    run $m3ret synth --out "$src" --set synth.image_size=32 --set synth.patients_per_class=12 \
      --set 'synth.modalities=["ultrasound"]' >/dev/null 2>&1
  fi
  local files=$(($(wc -l <"$src/manifest.csv") - 1))
  local copies=$(((n + files - 1) / files))
  mkdir -p "$work/rows/data"
  for k in $(seq 0 $((copies - 1))); do
    [ -e "$work/rows/data/c$k" ] || ln -s "$src/ultrasound" "$work/rows/data/c$k"
  done
  tail -n +2 "$src/manifest.csv" | awk -F, -v copies="$copies" -v n="$n" '
    { row[NR] = $0; f[NR] = $1; sub("^ultrasound/", "", f[NR]) } END {
    print "path,modality,labels,group,split"
    for (k = 0; k < copies; k++) for (i = 1; i <= NR && k * NR + i <= n; i++) {
      split(row[i], c, ","); print "data/c" k "/" f[i] "," c[2] "," c[3] "," c[4] "-c" k "," c[5] } }' \
    >"$out"
  echo "$out"
}

# shard_rows MANIFEST RANKS OUT: prints "rows/s seconds peak_rss_MB".
shard_rows() {
  local man=$1 ranks=$2 out=$3 rss="$work/rows/rss"
  rm -rf "$rss" && mkdir -p "$rss"
  local cmd="/usr/bin/time -f %M -o $rss/\$OMPI_COMM_WORLD_RANK $build/bench/bench_shard $man $out 1 64"
  echo "    \$ ${mpi[*]} -n $ranks sh -c '$cmd'" >&2
  local line
  line=$("${mpi[@]}" -n "$ranks" sh -c "$cmd" 2>"$rss.log" | grep '^ranks') ||
    { echo "scaling_plan.sh: bench_shard failed, see $rss.log" >&2; return 1; }
  local kb
  kb=$(cat "$rss"/* | sort -n | tail -1)
  echo "$line" | awk -v kb="$kb" '{for (i = 1; i < NF; i++) { if ($i == "rows/s") r = $(i + 1);
    if ($i == "seconds") s = $(i + 1) } printf "%s %s %.1f\n", r, s, kb / 1024}'
}

stage_rows() {
  mkdir -p "$work/rows"
  echo "| rows | ranks | seconds | rows/s | µs per row (per rank) | vs first | peak RSS MB (largest rank) | vs first | index.json bytes | open s | open set MB | load |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  declare -A first_us first_rss
  for n in $ROWS; do
    local man
    man=$(rows_manifest "$n")
    for r in $RANKS; do
      local out="$work/rows/shards-$n-$r" res rate secs rss us
      res=$(shard_rows "$man" "$r" "$out")
      read -r rate secs rss <<<"$res"
      us=$(awk -v s="$secs" -v n="$n" -v r="$r" 'BEGIN {printf "%.1f", s * 1e6 * r / n}')
      : "${first_us[$r]:=$us}" "${first_rss[$r]:=$rss}"
      local open
      open=$(nice "$build/bench/bench_shard_open" "$out" 3)
      echo "$open" >&2
      awk -v n="$n" -v r="$r" -v s="$secs" -v rate="$rate" -v us="$us" -v u0="${first_us[$r]}" \
        -v rss="$rss" -v m0="${first_rss[$r]}" -v load="$(load)" -v open="$open" 'BEGIN {
        split(open, w, " "); for (i in w) { if (w[i] == "open" && o == "") o = w[i + 1]; if (w[i] == "holds") h = w[i + 1] }
        printf "| %d | %d | %.1f | %.1f | %.1f | %.3f | %.1f | %.3f | %d | %s | %s | %s |\n",
          n, r, s, rate, us, us / u0, rss, rss / m0, w[2], o, h, load }'
      rm -rf "$out"
    done
  done
}

# Sharding rate per core at clinical input sizes (CT 512^2 x 96 .nii.gz, X-ray
# 2048^2 DICOM, endoscopy 720x576 x 50 frames H.264: bench_data's files),
# preprocessed to the paper-like sizes: COPIES rows of one file per modality,
# one rank with one decoding thread.
stage_clinical() {
  local dir="$work/bench-data" copies=${COPIES:-4}
  if [ ! -d "$dir/clinical" ]; then
    run nice "$build/bench/bench_data" --dir "$dir" --seconds 0.5 >"$work/bench-data.md"
  fi
  echo "| modality (clinical file) | rows | seconds (rank) | rows/s per core | load |"
  echo "|---|---|---|---|---|"
  for f in "$dir"/clinical/*; do
    local m ext name=${f##*/}
    case "$name" in *.nii.gz) m=ct ext=nii.gz ;; *.dcm) m=xray ext=dcm ;; *.mp4) m=endoscopy ext=mp4 ;; *) continue ;; esac
    local d="$work/clinical-$m"
    rm -rf "$d" && mkdir -p "$d/in"
    echo "path,modality,labels,group,split" >"$d/manifest.csv"
    for k in $(seq 1 "$copies"); do
      ln -s "$f" "$d/in/c$k.$ext"
      echo "in/c$k.$ext,$m,,g$k,train" >>"$d/manifest.csv"
    done
    local log
    log=$(run $m3ret shard --manifest "$d/manifest.csv" --out "$d/shards" --set shard.threads=1 \
      "${paper_pp[@]}" 2>&1 | grep 'shard rank 0')
    echo "$log" | awk -v m="$m ($name)" -v load="$(load)" '{
      for (i = 1; i < NF; i++) { if ($(i + 1) == "rows,") r = $i; if ($(i + 1) == "s") s = $i }
      printf "| %s | %d | %.2f | %.2f | %s |\n", m, r, s, r / s, load }'
    rm -rf "$d"
  done
}

# The machine's own ceiling for 2 ranks (as bench/rank_scaling.sh): one rank
# alone, two independent 1-rank runs at once (each on its own core, no
# communication), then 2 ranks; CEIL_ROWS rows (default 50000) each.
stage_ceiling() {
  local n=${CEIL_ROWS:-50000} man a b0 b1 c
  man=$(rows_manifest "$n")
  rate() { grep '^ranks' | awk '{for (i = 1; i < NF; i++) if ($i == "rows/s") print $(i + 1)}'; }
  local one=(nice mpiexec --allow-run-as-root --bind-to none -n 1)
  echo "    \$ ${one[*]} [taskset -c 0|1] $build/bench/bench_shard $man OUT 1 64" >&2
  a=$("${one[@]}" "$build/bench/bench_shard" "$man" "$work/ceil-a" 1 64 2>/dev/null | rate)
  "${one[@]}" taskset -c 0 "$build/bench/bench_shard" "$man" "$work/ceil-0" 1 64 \
    >"$work/ceil-0.txt" 2>/dev/null &
  local p0=$!
  "${one[@]}" taskset -c 1 "$build/bench/bench_shard" "$man" "$work/ceil-1" 1 64 \
    >"$work/ceil-1.txt" 2>/dev/null &
  local p1=$!
  wait "$p0" "$p1"
  b0=$(rate <"$work/ceil-0.txt") b1=$(rate <"$work/ceil-1.txt")
  c=$("${mpi[@]}" -n 2 "$build/bench/bench_shard" "$man" "$work/ceil-2" 1 64 2>/dev/null | rate)
  rm -rf "$work"/ceil-*
  echo "| rows | 1 rank rows/s | 2 independent 1-rank runs rows/s | 2 ranks rows/s | 2 ranks / 1 rank | ceiling (2 independent / 1 rank) | 2 ranks / 2 independent | load |"
  echo "|---|---|---|---|---|---|---|---|"
  awk -v n="$n" -v a="$a" -v b0="$b0" -v b1="$b1" -v c="$c" -v load="$(load)" 'BEGIN {
    b = b0 + b1; printf "| %d | %.1f | %.1f + %.1f = %.1f | %.1f | %.3f | %.3f | %.3f | %s |\n",
      n, a, b0, b1, b, c, c / a, b / a, c / b, load }'
}

# Per modality: the paper-like rows of one modality sharded apart, then
# bench_loader_train (1 and 2 workers) with the trainer's augmentations.
stage_loader() {
  [ -f "$work/paper-synth/manifest.csv" ] || stage_sizes >/dev/null
  echo "| modality | objective | workers | samples/s | load |"
  echo "|---|---|---|---|---|"
  for m in xray ultrasound endoscopy ct; do
    local d="$work/loader-$m"
    rm -rf "$d" && mkdir -p "$d"
    awk -F, -v m="$m" 'NR == 1 || $2 == m' "$work/paper-synth/manifest.csv" >"$work/paper-synth/only-$m.csv"
    run $m3ret shard --manifest "$work/paper-synth/only-$m.csv" --out "$d" "${paper_pp[@]}" \
      >/dev/null 2>&1
    for obj in mae+simdino mae; do
      echo "    \$ nice $build/bench/bench_loader_train $d $obj 32 ${LOADER_STEPS:-10}" >&2
      nice "$build/bench/bench_loader_train" "$d" "$obj" 32 "${LOADER_STEPS:-10}" 2>/dev/null |
        awk -v m="$m" -v o="$obj" -v load="$(load)" '/^workers/ {
          for (i = 1; i < NF; i++) if ($(i + 1) == "samples/s," || $(i + 1) == "samples/s") r = $i
          printf "| %s | %s | %s | %s | %s |\n", m, o, $2, r, load }'
    done
    rm -rf "$d"
  done
}

stage_checkpoint() {
  local man="$work/ck-synth/manifest.csv"
  if [ ! -f "$work/ck-shards/index.json" ]; then
    run $m3ret synth --out "$work/ck-synth" --set 'synth.modalities=["ultrasound"]' >/dev/null 2>&1
    run $m3ret shard --manifest "$man" --out "$work/ck-shards" >/dev/null 2>&1
  fi
  echo "| preset | parameters in total (encoder) | model.pt bytes | optimizer.pt bytes | checkpoint bytes | write s | MB/s | load |"
  echo "|---|---|---|---|---|---|---|---|"
  for p in $PRESETS; do
    rm -rf "$work/ck-$p"
    run $m3ret train --shards "$work/ck-shards" --run-dir "$work/ck-$p" --set model.preset="$p" \
      --set train.global_batch_size=2 --set train.max_steps=1 --set train.warmup_steps=0 \
      >"$work/ck-$p.log" 2>&1
    python3 - "$work/ck-$p" "$work/ck-$p.log" "$p" "$(load)" <<'EOF'
import datetime, glob, os, re, sys
run, log, preset, load = sys.argv[1:]
stamp = lambda l: datetime.datetime.strptime(l[1:24], "%Y-%m-%d %H:%M:%S.%f")
lines = open(log).read().splitlines()
step = [l for l in lines if "train: 1/1" in l][-1]
ck = [l for l in lines if "] checkpoint " in l][-1]
total, enc = re.search(r"model: (\d+) encoder parameters, (\d+) in total", "\n".join(lines)).groups()[::-1]
d = glob.glob(os.path.join(run, "checkpoints", "step-*"))[0]
size = lambda f: os.path.getsize(os.path.join(d, f))
allb = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
s = (stamp(ck) - stamp(step)).total_seconds()
print(f"| {preset} | {int(total):,} ({int(enc):,}) | {size('model.pt')} | {size('optimizer.pt')} | {allb} | {s:.2f} | {allb / s / 1e6:.0f} | {load} |")
EOF
    rm -rf "$work/ck-$p"
  done
}

for s in "${stages[@]}"; do
  echo "## $s ($(date -u +%FT%TZ), load $(load))"
  "stage_$s"
done
