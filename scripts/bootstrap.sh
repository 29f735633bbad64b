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
pip install --upgrade pip wheel setuptools

# PyTorch: a CPU build unless a CUDA GPU is present (the CUDA wheels are ~3 GB the CPU machine never uses).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    pip install torch
  else
    pip install "torch==2.13.0+cpu" 2>/dev/null \
      || pip install torch --index-url https://download.pytorch.org/whl/cpu \
      || pip install torch
  fi
fi

# llama-cpp-python compiles llama.cpp (minutes on a laptop; pip caches the built wheel). With a GPU, build it with CUDA.
if command -v nvidia-smi >/dev/null 2>&1 && ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_CUDA=on}" pip install llama-cpp-python
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

if [ -n "$extras" ]; then
  pip install -e ".[$extras]"
else
  pip install -e .
fi
