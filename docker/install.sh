#!/usr/bin/env bash
# The Docker image's install steps, in one place: the Dockerfile runs this, and tests/test_docker.py runs the same
# script in a fresh venv to prove the steps work. Run from the repository root.
#
#   docker/install.sh VENV EXTRAS        e.g. docker/install.sh /opt/venv discord,slack,web
#
# TORCH_SPEC: which torch (the CPU target pins the +cpu build; the CUDA target takes PyPI's CUDA build).
# CMAKE_ARGS: how llama.cpp is compiled (-DGGML_CUDA=on for the CUDA target).
# Every version comes from constraints.txt, so the image holds what `make test` tested.
set -euo pipefail
venv="$1"
extras="$2"
torch_spec="${TORCH_SPEC:-torch}"
llama_version="$(sed -n 's/^llama-cpp-python==//p' constraints.txt)"

python3 -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check --no-cache-dir "$@"; }
pip install --upgrade pip wheel
pip install -c constraints.txt "$torch_spec"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
CMAKE_ARGS="${CMAKE_ARGS:-}" pip install -c constraints.txt "llama-cpp-python==${llama_version}"
pip install -c constraints.txt ".[${extras}]"
# What the container's HEALTHCHECK and entry point run must import, from the venv (not this checkout: cd /).
(cd / && "$venv/bin/python" -c "import bot.health, bot.cli, llama_cpp")
