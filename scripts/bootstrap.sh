#!/usr/bin/env bash
# Creates .venv and installs paperbot into it. Usage: scripts/bootstrap.sh [EXTRAS]   (e.g. "test,server")
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
say() { echo "bootstrap: $*" >&2; }
pip install --upgrade pip wheel setuptools

# PyTorch: a CPU build unless a CUDA GPU is present (the CUDA wheels are ~3 GB the CPU machine never uses).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  say "installing PyTorch (a download of 0.2 GB for the CPU build, ~3 GB with CUDA)…"
  if command -v nvidia-smi >/dev/null 2>&1; then
    pip install torch
  else
    pip install "torch==2.13.0+cpu" 2>/dev/null \
      || pip install torch --index-url https://download.pytorch.org/whl/cpu \
      || pip install torch
  fi
fi

# llama-cpp-python compiles llama.cpp from source. With a GPU, build it with CUDA. On x86 CPUs, build it without
# ggml's AMX kernels: on Xeons that report AMX (Sapphire Rapids and later, also inside VMs) they crash with SIGSEGV in
# ggml_backend_amx_mul_mat on Q4_K models, and the AVX-512/AVX2 kernels serve one user's questions as well.
# --no-cache-dir: pip's wheel cache does not know about CMAKE_ARGS, so a wheel built with other flags would come back.
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    default_cmake_args="-DGGML_CUDA=on"
  elif [ "$(uname -m)" = x86_64 ]; then
    no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    default_cmake_args="-DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'"
  else
    default_cmake_args=""
  fi
  # The compile is long and pip is silent through it: say so, and show only the compiler's progress lines
  # ("[ 42%] Building…" from make, "[120/380] Building…" from ninja); the whole log is kept for a failure.
  say "compiling llama.cpp (llama-cpp-python) from source: about 18 minutes on 2 cores (less with more), once per machine."
  say "compiler progress follows; the full log goes to $PWD/.venv/llama-cpp-build.log"
  log=.venv/llama-cpp-build.log
  if ! CMAKE_ARGS="${CMAKE_ARGS:-$default_cmake_args}" .venv/bin/python -m pip --disable-pip-version-check -v \
      install --no-cache-dir "llama-cpp-python>=0.3.8" 2>&1 | tee "$log" | scripts/build_progress.sh; then
    say "building llama-cpp-python failed; the end of $log:"
    tail -n 40 "$log" >&2
    exit 1
  fi
  say "llama.cpp is built."
fi

say "installing paperbot${extras:+ with [$extras]} and its dependencies (a few minutes the first time)…"
if [ -n "$extras" ]; then
  pip install -e ".[$extras]"
else
  pip install -e .
fi
