#!/usr/bin/env bash
# Prepares what the GPU machine needs to run bench/gpu/run.sh, in build-gpu/ (git-ignored):
#   build-gpu/bin/   test_gpu, bench_gpu_mae and m3ret-node (the compute-node binary) of the CUDA build
#   build-gpu/shards/  a small demo dataset's shards (made here with the build's m3ret) for run.sh's
#                    end-to-end check of `m3ret-node train/embed/eval` on the GPU
#   build-gpu/lib/   the shared libraries they need that the GPU machine's PyTorch does not bring
# The binaries run there against that machine's own LibTorch (the PyTorch 2.11.0 + CUDA 13.0 wheel,
# the version the CUDA build is made with) and its pip CUDA libraries (cuDNN, cuBLAS, NCCL, ...).
# Left out: LibTorch, CUDA and NCCL (found there) and the C library (glibc) of the system.
#
#   bash bench/gpu/bundle.sh [BUILD_DIR=/work/build-cuda]
# then on the GPU machine, with build-gpu carried: bash bench/gpu/run.sh
# Packs it as build-gpu/bundle.tar.xz and prints its size; the device machine takes at most 64 MiB
# with the working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-/work/build-cuda}
dest=build-gpu
bins=("$build/tests/gpu/test_gpu" "$build/bench/gpu/bench_gpu_mae" "$build/m3ret-node")
for b in "${bins[@]}" "$build/m3ret"; do
  [[ -x $b ]] || { echo "bundle.sh: $b is missing: cmake --build $build --target test_gpu bench_gpu_mae m3ret m3ret-node" >&2; exit 1; }
done
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib"
cp "${bins[@]}" "$dest/bin/"
# The shards for run.sh's end-to-end check (the settings are run.sh's GPU_DATA).
source bench/gpu/data.sh
"$build/m3ret" synth --out "$dest/data" "${GPU_DATA[@]}" > "$dest/data.log" 2>&1 &&
  "$build/m3ret" shard --manifest "$dest/data/manifest.csv" --out "$dest/shards" "${GPU_DATA[@]}" >> "$dest/data.log" 2>&1 ||
  { echo "bundle.sh: making the shards failed:" >&2; tail -5 "$dest/data.log" >&2; exit 1; }
rm -rf "$dest/data" "$dest/data.log"
# A library the GPU machine provides: LibTorch's and the pip CUDA packages' (the CUDA build's
# torch prefix), the CUDA toolkit's, and glibc's.
provided() {
  case "$1" in
    /opt/m3ret*|/usr/local/cuda*|*/site-packages/*) return 0 ;;
  esac
  case "$(basename "$1")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|ld-linux*|libutil.so*) return 0 ;;
    libcuda.so*|libnvidia-*) return 0 ;;  # the driver
  esac
  return 1
}
for b in "${bins[@]}"; do
  ldd "$b" | awk '/=> \// {print $3}' | while read -r lib; do
    provided "$lib" || cp -Ln "$lib" "$dest/lib/"
  done
  if ldd "$b" | grep -q "not found"; then
    echo "bundle.sh: $b has unresolved libraries here:" >&2
    ldd "$b" | grep "not found" >&2
    exit 1
  fi
done
strip --strip-unneeded "$dest"/bin/* "$dest"/lib/* 2>/dev/null || true
echo "bundle.sh: $dest: $(ls "$dest/lib" | wc -l) libraries; $(du -sh --apparent-size "$dest" | cut -f1) unpacked"
# Packed (OpenBLAS alone is 36 MB unpacked): run.sh unpacks it with Python's tarfile there.
tar -C "$dest" -cf - bin lib shards | xz -9 -T2 > "$dest.tar.xz"
rm -rf "$dest" && mkdir "$dest" && mv "$dest.tar.xz" "$dest/bundle.tar.xz"
echo "bundle.sh: $dest/bundle.tar.xz: $(du -h --apparent-size "$dest/bundle.tar.xz" | cut -f1)"
du -b --apparent-size "$dest" | tail -1 | awk '{ if ($1 > 60 * 1024 * 1024) { print "bundle.sh: over 60 MiB: too big to carry (64 MiB with the working tree)"; exit 1 } }'
