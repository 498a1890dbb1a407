#!/usr/bin/env bash
# Installs the Debian 12 packages that m3ret needs to build, test and run.
# Idempotent: installs only what is missing, and prints nothing when nothing is missing.
# Used by both Quick start commands of the README and by .ci/run.
set -euo pipefail

# It also makes python/.venv for python/m3ret_encoder.py (loading `m3ret
# export` files with timm) and its test: Debian's torch and torchvision, timm and safetensors from PyPI.
# `bash setup.sh --cuda` also installs what the CUDA build (cmake -DM3RET_CUDA=ON) needs: the
# LibTorch of the PyTorch wheel 2.11.0 (CUDA 13.0, what the GPU machines run) in /opt/m3ret/torch-cuda,
# with the few CUDA libraries it links that the CUDA toolkit lacks (NVSHMEM, cuFILE, cuSPARSELt).
WITH_PYTHON=1 WITH_CUDA=0  # python/.venv is always made (its test runs in the suite); --python is kept
for arg in "$@"; do
  case "$arg" in
    --python) WITH_PYTHON=1 ;;
    --cuda) WITH_CUDA=1 ;;
    *) echo "setup.sh: unknown option '$arg' (known: --python, --cuda)" >&2; exit 2 ;;
  esac
done
VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/python/.venv"

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache git
  # clang: the libFuzzer targets (tests/fuzz, a stage of .ci/run) and the thread-safety analysis;
  # clang-format-14: the style check (tests/style)
  clang clang-format-14
  # LibTorch (CPU) and a fast BLAS (Debian's LibTorch links the reference BLAS by default)
  libtorch-dev libopenblas0-pthread
  # LAPACK (eval's whitening readout; OpenBLAS serves it through the alternatives below)
  liblapack-dev
  # MPI, HDF5, ITK, FFmpeg
  libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libinsighttoolkit5-dev libpng-dev libjpeg-dev
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
  # Boost.Asio/Beast, TOML++, spdlog, CLI11, JSON, SQLite, tests
  libboost-dev libtomlplusplus-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libsqlite3-dev libgtest-dev libgmock-dev libgdcm-tools libzip-dev
  # FAISS (retrieval indices: Flat, HNSW, IVF)
  libfaiss-dev
  # a real one-node Slurm for the orchestrator's integration test (tests/integration/slurm_cluster.sh)
  slurm-wlm munge
  # independent references used by the tests (h5py, PyTorch, numpy)
  python3 python3-numpy python3-h5py python3-torch
  # a venv for TensorBoard's event reader (the trainer's TensorBoard tests)
  python3-venv
  # the orchestrator's report charts (python/m3ret_plots.py) and the status page's browser test
  python3-matplotlib chromium
)

if ((WITH_PYTHON)); then PACKAGES+=(python3-torchvision python3-venv); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup.sh: installing ${#missing[@]} missing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's LibTorch resolves BLAS through the alternatives system; make sure the
# OpenBLAS (pthread) implementation is the one selected, not the reference BLAS.
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  target=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas-pthread | head -n1 || true)
  current=$(update-alternatives --query "$alt" 2>/dev/null | awk '/^Value:/{print $2}')
  if [ -n "$target" ] && [ "$current" != "$target" ]; then
    SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO update-alternatives --quiet --set "$alt" "$target"
  fi
done

# python/.venv: timm and safetensors without their dependencies, so that pip never replaces Debian's torch.
if ((WITH_PYTHON)) && ! "$VENV/bin/python" -c 'import timm, safetensors' 2>/dev/null; then
  echo "setup.sh: making $VENV (timm, safetensors) on Debian's torch"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q --no-deps timm==1.0.31 safetensors==0.8.0 huggingface_hub==0.36.2 \
    tqdm==4.70.1 filelock==4.3.1 fsspec==2026.9.0
fi

# TensorBoard's own event reader for the trainer's TensorBoard tests (Debian 12 packages no
# python3-tensorboard): the wheel from PyPI in a venv of its own, whose numpy cannot shadow Debian's.
TB_VENV=/opt/m3ret/tensorboard-venv
if ! "$TB_VENV/bin/python" -c 'import tensorboard.backend.event_processing.event_accumulator' 2>/dev/null; then
  echo "setup.sh: making $TB_VENV (tensorboard, for its event-file reader)"
  /usr/bin/python3 -m venv "$TB_VENV"
  "$TB_VENV/bin/pip" install -q tensorboard==2.21.0
fi

# --cuda: the wheels without their Python dependencies (only LibTorch's headers, libraries and
# CMake files are used); the CUDA toolkit itself (nvcc, cuDNN, NCCL) comes with the machine.
TORCH_CUDA_VENV=/opt/m3ret/torch-cuda
if ((WITH_CUDA)) && ! ls "$TORCH_CUDA_VENV"/lib/python3*/site-packages/nvidia/cu13/lib/libcufile.so.0 >/dev/null 2>&1; then
  echo "setup.sh: making $TORCH_CUDA_VENV (LibTorch 2.11.0 for CUDA 13.0 from the PyTorch wheel)"
  /usr/bin/python3 -m venv "$TORCH_CUDA_VENV"
  "$TORCH_CUDA_VENV/bin/pip" install -q --no-deps torch==2.11.0 nvidia-nvshmem-cu13==3.4.5 \
    nvidia-cusparselt-cu13==0.8.0 "nvidia-cufile==1.15.1.6.*"
fi
