#!/usr/bin/env bash
# The evaluation harness on the GPU machine (SmolLM2-135M + Qwen2.5-Coder-0.5B, full set, grammar off/on when the
# build has the setting). A device call carries at most 64 MiB and nothing there reaches the registry, so the models
# travel in pieces over consecutive calls and are checked by sha256 there. Untested on the GPU machine so far.
#
# Here (once):
#   training/eval/gpu_run.sh prepare          # .device/eval/: the 4 evaluation PDFs, the QASA file, and the models
#                                             # (SmolLM2, Qwen 0.5B, minilm-colbert as a tar) cut in 56 MiB pieces
#   (plus what bench/README.md prepares: .device/llama-src and .whl, for the CUDA build of llama.cpp)
# There, one call per batch of pieces (carry: .device/eval/pieces/NN only, plus .device/eval/data on the first):
#   bash training/eval/gpu_run.sh receive     # appends the carried pieces under /tmp/eval-models
# Then, when every piece is there (it says so), the run (carry .device/llama-src, .whl, .device/eval/data):
#   bash training/eval/gpu_run.sh run      # grammar off and on (GRAMMAR=off|on|both); tables in $OUT/results.md, replies in $OUT/results.json
set -euo pipefail
mode=${1:?usage: $0 prepare | receive | run}
here=.device/eval
models=/tmp/eval-models
piece=$((56 * 1024 * 1024))

if [[ $mode == prepare ]]; then
    cache=${PAPERBOT_TEST_CACHE:-$HOME/.cache/paperbot-tests}/real-models
    PYTHONPATH=$PWD .venv/bin/python -m training.real_models "$cache" --qwen 0.5b >/dev/null
    rm -rf "$here"; mkdir -p "$here/data/pdfs" "$here/pieces" /tmp/eval-prepare
    shared=${PAPERBOT_SHARED_DIR:-../shared}
    for f in $(python3 -c "import json; print(' '.join(json.load(open('training/eval/split.json'))['papers']['evaluation']))"); do
        cp "$shared/data/pdfs/real/$f" "$here/data/pdfs/"
    done
    cp "$shared/data/qasa/testset_unanswerable_244_v1.1.json" "$here/data/"
    tar cf /tmp/eval-prepare/minilm-colbert.tar -C "$cache" minilm-colbert
    cat /dev/null > "$here/data/SHA256SUMS"
    n=0
    for f in "$cache/SmolLM2-135M-Instruct.Q4_1.gguf" "$cache/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
             /tmp/eval-prepare/minilm-colbert.tar; do
        (cd "$(dirname "$f")" && sha256sum "$(basename "$f")") >> "$here/data/SHA256SUMS"
        split -b $piece -d -a 3 "$f" "/tmp/eval-prepare/$(basename "$f").part."
    done
    for p in /tmp/eval-prepare/*.part.*; do
        n=$((n + 1)); mkdir -p "$here/pieces/$(printf %02d $n)"; mv "$p" "$here/pieces/$(printf %02d $n)/"
    done
    echo "$n pieces in $here/pieces (one device call each, carry .device/eval/pieces/NN); data in $here/data"
    exit 0
fi

if [[ $mode == receive ]]; then
    mkdir -p "$models/parts"
    find "$here/pieces" -name '*.part.*' -exec cp {} "$models/parts/" \; 2>/dev/null || true
    [[ -d $here/data ]] && cp -r "$here/data/." "$models/"
    ls "$models/parts" | wc -l | xargs echo "pieces held:"
    [[ -f $models/SHA256SUMS ]] || { echo "carry .device/eval/data once"; exit 0; }
    for name in $(awk '{print $2}' "$models/SHA256SUMS"); do
        [[ -f $models/$name ]] && continue
        cat "$models/parts/$name".part.* > "$models/$name.tmp" 2>/dev/null || true
        if (cd "$models" && grep " $name\$" SHA256SUMS | sed "s/ $name\$/ $name.tmp/" | sha256sum -c --quiet 2>/dev/null); then
            mv "$models/$name.tmp" "$models/$name"; echo "$name: complete, sha256 ok"
        else
            rm -f "$models/$name.tmp"; echo "$name: pieces missing so far"
        fi
    done
    exit 0
fi

# run
out=${OUT:-/tmp/eval-out}; mkdir -p "$out"
[[ -d $here/data ]] && cp -r "$here/data/." "$models/"
[[ -d $models/minilm-colbert ]] || tar xf "$models/minilm-colbert.tar" -C "$models"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/.device/llama-src:$PWD
export LLAMA_CPP_LIB_PATH=/tmp/llama-build/bin LD_LIBRARY_PATH=/tmp/llama-build/bin:${LD_LIBRARY_PATH:-}
bash bench/gpu_build_llama.sh build .device/llama-src /tmp/llama-build > /tmp/llama-build.log 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
mkdir -p /tmp/eval-qasa && cp "$models/testset_unanswerable_244_v1.1.json" /tmp/eval-qasa/
export PAPERBOT_DEVICE=cuda PAPERBOT_PARALLEL=${PARALLEL:-8} PAPERBOT_N_CTX=${N_CTX:-8192}
python3 -m training evaluate --pdfs "$models/pdfs" --qasa /tmp/eval-qasa --encoder "$models/minilm-colbert" \
    --gguf "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --gguf "$models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
    --grammar "${GRAMMAR:-both}" --out /tmp/eval-run 2>&1 | grep -v "HTTP Request" | tail -80
cp /tmp/eval-run/results.md /tmp/eval-run/results.json "$out/"
