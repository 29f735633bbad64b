#!/usr/bin/env bash
# Builds the separate environment in which tests/test_colbert_parity.py runs PyLate, the independent ColBERT
# implementation that our encoder is checked against. Separate, because pylate 1.6.0 pins transformers <= 5.3.0 and
# (through fast-plaid, used only by its indexes) a CUDA torch 2.11: neither may touch .venv.
#
# What goes in: the same torch as .venv (so no CUDA download), PyLate's own pins of sentence-transformers and
# transformers, and pylate itself without its index dependencies (fast-plaid, fastkmeans), which `pylate.models`
# does not import. Idempotent: a finished environment has a READY file. About a minute from the package registry.
#
# Usage: tests/parity_env.sh [VENV_DIR]   (default: $PAPERBOT_PARITY_VENV or .venv-parity beside .venv)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${PAPERBOT_PARITY_VENV:-$repo/.venv-parity}}"
main_python="${PAPERBOT_MAIN_PYTHON:-$repo/.venv/bin/python}"

PYLATE="pylate==1.6.0"
PYLATE_DEPS=("sentence-transformers==5.3.0" "transformers==5.3.0" "datasets" "scipy" "ujson==5.12.0" "numpy")

if [[ -f "$venv/READY" ]]; then
    exit 0
fi

torch_spec="torch==$("$main_python" -c 'import torch; print(torch.__version__)')"
rm -rf "$venv"
"$main_python" -m venv "$venv"
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install --quiet --disable-pip-version-check "$torch_spec" "${PYLATE_DEPS[@]}"
"${pip[@]}" install --quiet --disable-pip-version-check --no-deps "$PYLATE"
"$venv/bin/python" -c "import pylate.models, transformers, torch; print('pylate env:', transformers.__version__, torch.__version__)"
touch "$venv/READY"
