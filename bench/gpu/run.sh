#!/usr/bin/env bash
# The GPU check and benchmark, in one call on a GPU machine (at most ~9 minutes, no network, no
# build there). Prepare here first: build the CUDA tree's test_gpu and bench_gpu_mae, then
# `bash bench/gpu/bundle.sh` (build-gpu/, git-ignored: carry it with the working tree, e.g. the
# device tool's carry: ["build-gpu"]). On the GPU machine:
#
#   bash bench/gpu/run.sh            # results in $OUT/gpu-results.md (OUT defaults to ./gpu-results)
#
# 1. tests/gpu (test_gpu): fp32 step CUDA == CPU, bf16 loss near fp32, checkpoint GPU -> CPU, NCCL.
# 2. ViT-B/16 MAE, 224x224 images, mask ratio 0.75, bf16 autocast, batch BATCH (default 256), one
#    GPU: images/s of m3ret (bench_gpu_mae: the trainer's model, objective and optimizer step) and
#    of PyTorch-Python eager (bench/gpu/mae_eager.py: the same model, batch and mask ratio) in the
#    same run, model FLOPs utilisation against the bf16 dense peak PEAK_TFLOPS (default 989.4, the
#    H100/H200 SXM figure), peak GPU memory, and the time split of a step.
# 3. The CLI on the GPU (m3ret-node, on the shards bundle.sh made): 40 bf16 training steps on
#    cuda:0, embedding on the GPU, evaluation, and the GPU checkpoint resumed on the CPU.
# The binaries use the machine's own PyTorch (python3: torch 2.11.0 + CUDA 13.0) libraries.
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle=$PWD/build-gpu
out=${OUT:-$PWD/gpu-results}
mkdir -p "$out"
results=$out/gpu-results.md
batch=${BATCH:-256}
peak_tflops=${PEAK_TFLOPS:-989.4}
py=${PYTHON:-python3}
log() { echo "$*" | tee -a "$results"; }
: > "$results"

if [[ -f $bundle/bundle.tar.xz ]]; then  # as bundle.sh packs it
  $py -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$bundle/bundle.tar.xz" "$bundle" || { log "run.sh: cannot unpack $bundle/bundle.tar.xz"; exit 1; }
fi
[[ -x $bundle/bin/test_gpu && -x $bundle/bin/bench_gpu_mae && -x $bundle/bin/m3ret-node ]] || {
  log "run.sh: $bundle/bin lacks test_gpu, bench_gpu_mae or m3ret-node: run bash bench/gpu/bundle.sh where they were built"
  exit 1
}
torch_lib=$($py -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || {
  log "run.sh: $py cannot import torch"
  exit 1
}
site=$(dirname "$(dirname "$torch_lib")")
nvidia_libs=$(find "$site/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$bundle/lib:$torch_lib:$nvidia_libs${LD_LIBRARY_PATH:-}"

log "# m3ret GPU results ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
log ""
log '```'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$results"
$py -c 'import torch; print("python torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tee -a "$results"
for b in "$bundle"/bin/*; do
  if ldd "$b" | grep -q "not found"; then log "missing libraries of $(basename "$b"):"; ldd "$b" | grep "not found" | tee -a "$results"; fi
done
log '```'

log ""
log "## tests/gpu"
log '```'
timeout 150 "$bundle/bin/test_gpu" --gtest_output="xml:$out/test_gpu.xml" > "$out/test_gpu.log" 2>&1
rc=$?
grep -E '^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|Failure|Expected|Which is|max difference' "$out/test_gpu.log" | tee -a "$results"
log "test_gpu exit code $rc"
log '```'

log ""
log "## ViT-B/16 MAE, 224x224, mask 0.75, bf16, batch $batch, one GPU"
common=(--precision bf16 --preset base --batch "$batch" --size 224 --mask 0.75 --steps 20 --warmup 5)
side() {  # side NAME LOG: after a run, its exit code and, on failure, the end of its log
  local rc=$1
  log "$2 exit code $rc"
  if [[ $rc != 0 ]]; then log '```'; tail -n 5 "$3" | tee -a "$results"; log '```'; fi
}
timeout 180 "$bundle/bin/bench_gpu_mae" --device cuda "${common[@]}" > "$out/m3ret.json" 2> "$out/m3ret.log"
side $? m3ret "$out/m3ret.log"
timeout 180 $py bench/gpu/mae_eager.py bench --device cuda "${common[@]}" > "$out/eager.json" 2> "$out/eager.log"
side $? "pytorch eager" "$out/eager.log"
flops=$($py bench/gpu/mae_eager.py flops --preset base --size 224 --mask 0.75)
$py - "$out/m3ret.json" "$out/eager.json" "$peak_tflops" "$flops" <<'PY' | tee -a "$results"
import json, sys
m3ret_file, eager_file, peak, flops = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])["flops_per_image"]
rows = []
for f in (m3ret_file, eager_file):
    try:
        rows.append(json.loads(open(f).read().strip().splitlines()[-1]))
    except Exception as e:
        print(f"{f}: no result ({e}); see the .log beside it")
print(f"Training FLOPs per image (3 x forward matmuls): {flops / 1e9:.1f} GFLOP; "
      f"MFU denominator: bf16 dense peak {peak} TFLOP/s\n")
print("| side | torch | images/s | MFU | fwd+bwd ms | optimizer ms | peak memory GiB | loss |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    mfu = r["images_per_s"] * flops / (peak * 1e12)
    print(f"| {r['side']} | {r['torch']} | {r['images_per_s']:.1f} | {100 * mfu:.1f} % | "
          f"{r['ms_forward_backward']:.1f} | {r['ms_optimizer']:.1f} | {r['peak_memory_gib']} | {r['loss']:.4f} |")
if len(rows) == 2:
    print(f"\nm3ret / PyTorch eager images/s: {rows[0]['images_per_s'] / rows[1]['images_per_s']:.3f}")
PY
log ""

log ""
log "## The CLI on the GPU (m3ret-node: train, embed, eval; resume on the CPU)"
source bench/gpu/data.sh
node=$bundle/bin/m3ret-node
run=$out/cli-run
cli() {  # cli NAME ARGS...: one verb, its exit code, and the end of its log on failure
  local name=$1; shift
  timeout 120 "$node" "$@" "${GPU_DATA[@]}" > "$out/cli-$name.log" 2>&1
  side $? "m3ret-node $name" "$out/cli-$name.log"
}
rm -rf "$run"
cli train train --shards "$bundle/shards" --run-dir "$run" --set train.max_steps=40 \
  --set train.checkpoint_every=20 --set 'train.device="cuda"' --set 'train.precision="bf16"'
cli embed embed --checkpoint "$run" --shards "$bundle/shards" --split test --device cuda --out "$out/cli-emb.h5"
cli eval eval --embeddings "$out/cli-emb.h5" --out "$out/cli-report.json"
cli resume-cpu train --shards "$bundle/shards" --run-dir "$run" --resume auto --set train.max_steps=44 \
  --set train.checkpoint_every=20 --set 'train.device="cpu"' --set 'train.precision="fp32"'
$py - "$run/metrics.jsonl" <<'PY' | tee -a "$results"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gpu = [r for r in rows if r.get("step", 0) <= 40]
print(f"steps logged: {len(rows)} (last {rows[-1].get('step')}); loss at step 1 {gpu[0].get('loss'):.4f}, "
      f"step 40 {gpu[-1].get('loss'):.4f}; median samples/s on the GPU "
      f"{sorted(r.get('samples_per_s', 0) for r in gpu[5:])[len(gpu[5:]) // 2]:.1f}")
PY
log ""
log "Raw: m3ret.json, eager.json, test_gpu.log, test_gpu.xml, cli-*.log, cli-run/ beside this file."
