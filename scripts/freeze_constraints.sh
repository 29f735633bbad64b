#!/usr/bin/env bash
# Regenerates constraints.txt from a working .venv (after `make test` passes with newer versions).
# Drops paperbot itself and local version labels (torch==X+cpu → torch==X, which matches the CUDA build too).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Pinned versions of a working environment (pip freeze of the test venv, $(date +%Y-%m-%d)), for reproducible installs:"
  echo "#   pip install -c constraints.txt '.[test,server]'   (make test and CI do this through PIP_CONSTRAINT)"
  echo "# Local version labels are dropped (torch==X matches both X+cpu and the CUDA build). Regenerate: scripts/freeze_constraints.sh"
  .venv/bin/python -m pip freeze --disable-pip-version-check \
    | grep -v -E '^-e |^#|^paperbot' \
    | sed -E 's/^llama_cpp_python @ .*llama_cpp_python-([^-]+)-.*/llama-cpp-python==\1/; s/^([A-Za-z0-9_.-]+==[^+]+)\+[a-z0-9.]+$/\1/'
} > constraints.txt
