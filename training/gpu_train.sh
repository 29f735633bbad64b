#!/usr/bin/env bash
# The real training run on the GPU machine (issue 12): SmolLM2-135M-Instruct, SFT warm-up then GRPO on the prepared
# records, merged and exported to Q4_K_M, then base vs tuned through the evaluation harness (grammar off). Tables,
# curves and the run summaries come back in $OUT; weights stay there.
#
# A device call carries at most 64 MiB and nothing there reaches a registry, so it runs as consecutive calls on one
# warm machine, everything kept under /tmp there:
#   here:  [DATA=dir] training/gpu_train.sh pack    # .device/train/: QASA, the 4+4 papers of the split, the tiny encoder,
#                                                   # SmolLM2 cut in three pieces (checked by sha256 there), and
#                                                   # records prepared here (DATA) if given, else prepared there
#   there: bash training/gpu_train.sh setup         # carry .device/llama-src and .whl: llama.cpp with CUDA, wheels
#   there: bash training/gpu_train.sh receive       # carry .device/train/piece0 + .device/pymupdf (its 23 MB wheel)
#   there: bash training/gpu_train.sh receive       # carry .device/train/piece1 + .device/train/data
#   there: bash training/gpu_train.sh run           # carry .device/train/piece2: assemble, train, export, evaluate
# Step counts: SFT_STEPS, GRPO_STEPS, GRPO_SECONDS (GRPO's time cap), GRPO_COMPLETION, GRPO_LR, EVAL_LIMIT, QASA_LIMIT.
set -euo pipefail
mode=${1:?usage: $0 pack | setup | receive | run}
here=.device/train
work=/tmp/train
model=SmolLM2-135M-Instruct.Q4_1.gguf

if [[ $mode == pack ]]; then
    cache=${PAPERBOT_TEST_CACHE:-$HOME/.cache/paperbot-tests}
    shared=${PAPERBOT_SHARED_DIR:-../shared}
    rm -rf "$here"; mkdir -p "$here/data/pdfs" "$here/data/train-pdfs" "$here/piece0" "$here/piece1" "$here/piece2"
    for side in evaluation training; do
        dest=$here/data/pdfs; [[ $side == training ]] && dest=$here/data/train-pdfs
        for f in $(python3 -c "import json; print(' '.join(json.load(open('training/eval/split.json'))['papers']['$side']))"); do
            cp "$shared/data/pdfs/real/$f" "$dest/"
        done
    done
    cp "$shared/data/qasa/testset_unanswerable_244_v1.1.json" "$here/data/"
    if [[ -n ${DATA:-} ]]; then mkdir -p "$here/data/prep" && cp "$DATA"/*.jsonl "$DATA"/manifest.json "$here/data/prep/"; fi
    tiny=$(ls -d "$cache"/tiny-models-*/colbert | head -1)
    cp -r "$tiny" "$here/data/colbert"
    (cd "$cache/real-models" && sha256sum "$model") > "$here/data/SHA256SUMS"
    split -n 3 -d -a 1 "$cache/real-models/$model" "/tmp/$model.part."
    for i in 0 1 2; do mv "/tmp/$model.part.$i" "$here/piece$i/"; done
    du -sh "$here"/*
    exit 0
fi

export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/.device/llama-src:$PWD
export LLAMA_CPP_LIB_PATH=/tmp/llama-build/bin LD_LIBRARY_PATH=/tmp/llama-build/bin:${LD_LIBRARY_PATH:-}
out=${OUT:-/tmp/train-out}; mkdir -p "$out" "$work"

if [[ $mode == setup ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    bash bench/gpu_build_llama.sh build .device/llama-src /tmp/llama-build
    # export's converter: the vendored llama.cpp where training.tiny_models looks for it
    mkdir -p /tmp/pbcache && rm -rf /tmp/pbcache/llama.cpp-0.3.36 && cp -r .device/llama-src/llama.cpp /tmp/pbcache/llama.cpp-0.3.36
    echo 0.3.36 > /tmp/pbcache/llama.cpp-0.3.36/EXTRACTED
    exit 0
fi

if [[ $mode == receive ]]; then
    if compgen -G ".device/pymupdf/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/pymupdf/*.whl
    fi
    for d in "$here"/piece*; do [[ -d $d ]] && cp "$d"/* "$work/"; done
    [[ -d $here/data ]] && cp -r "$here/data" "$work/"
    ls -la "$work"
    exit 0
fi

[[ $mode == run ]] || { echo "unknown mode $mode" >&2; exit 2; }
for d in "$here"/piece*; do [[ -d $d ]] && cp "$d"/* "$work/"; done
cat "$work/$model".part.0 "$work/$model".part.1 "$work/$model".part.2 > "$work/$model"
(cd "$work" && sha256sum -c data/SHA256SUMS)
export PAPERBOT_BUILD_CACHE=/tmp/pbcache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/machine.txt"
t0=$(date +%s)
log() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
# What comes back in $OUT; called after each step too, so results return even if a later step fails or runs past the call.
collect() {
    local f
    for f in sft/train_log.csv sft/curves.png grpo/train_log.csv grpo/curves.png eval/results.md; do
        if [[ -f $work/$f ]]; then cp "$work/$f" "$out/$(echo "$f" | tr / -)"; fi
    done
    cp "$out/machine.txt" "$work/machine.txt" 2>/dev/null || true
    # at most 8 files come back: the summaries travel together
    (cd "$work" && tar czf "$out/summaries.tgz" machine.txt sft/run.json grpo/run.json export/export.json \
        eval/results.json prep/manifest.json 2>/dev/null) || true
    rm -f "$out/machine.txt"
    return 0
}
data=$work/prep
base=$work/$model

# Records: QASA's training half (abstention), and questions for the 4 training papers written by SmolLM2 itself
# (a stronger generator does not fit the transfer budget), sampled 4 times per passage and kept only when supported.
if [[ -f $work/data/prep/train.jsonl ]]; then  # prepared here (pack copies DATA= if given)
    log "prepare: using the carried records"; cp -r "$work/data/prep" "$data"
else
log "prepare"
python3 -m training prepare --qasa "$work/data/testset_unanswerable_244_v1.1.json" --pdfs "$work/data/train-pdfs" \
    --out "$data" --generator "$base" --tries "${TRIES:-4}" --temperature 0.8 --parallel 8 \
    --per-paper "${PER_PAPER:-12}" --tokenizer "$base" --abstain-ratio 1.0 2>&1 | tail -25
fi

log "sft"
python3 -m training sft --data "$data" --out "$work/sft" --base-model "$base" --steps "${SFT_STEPS:-30}" \
    --batch-size 8 --per-device-batch 8 --lr 2e-4 --max-length 3072 2>&1 | grep -vE "it/s\]|s/it\]" | tail -30
# GRPO sized for ~6 minutes: the last run (64 completions x 160 tokens, lr 5e-6) took 13.3 s a step and moved
# nothing in 15. 4 prompts x 4 completions of <=128 tokens, a LoRA-sized lr, beta 0 (the PEFT reference model would be
# the base without the SFT adapter), and a time cap so export still fits the call; docs/training.md says why.
log "grpo"
python3 -m training grpo --data "$data" --out "$work/grpo" --base-model "$base" --init-adapter "$work/sft/adapter" \
    --steps "${GRPO_STEPS:-80}" --max-seconds "${GRPO_SECONDS:-360}" --batch-size 16 --per-device-batch 16 \
    --num-generations 4 --max-completion-length "${GRPO_COMPLETION:-128}" --lr "${GRPO_LR:-1e-4}" --beta 0 \
    --temperature 0.9 --max-length 3072 2>&1 | grep -vE "it/s\]|s/it\]" | tail -30
python3 -m training.curves "$work/grpo/train_log.csv" || true
collect
# llama.cpp's steps (quantize, the GGUF's logits, the answer check) run in child processes: this one holds torch
log "export"
python3 -m training export --run "$work/grpo" --out "$work/export" --n-gpu-layers -1 2>&1 | tail -25
python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print('export: parity', r['parity_f16'], 'check', \
r['check']['seconds'], 's:', repr(r['check']['reply'][:160]))" "$work/export/export.json"
collect
log "evaluate: base vs tuned, grammar off, lexical retrieval (the tiny encoder only indexes)"
PAPERBOT_RETRIEVAL_MODE=lexical PAPERBOT_N_GPU_LAYERS=-1 python3 -m training evaluate --pdfs "$work/data/pdfs" \
    --gguf "$base" --gguf "$work/export/model-q4_k_m.gguf" --grammar off --encoder "$work/data/colbert" \
    --qasa "$work/data" --qasa-limit "${QASA_LIMIT:-30}" ${EVAL_LIMIT:+--limit $EVAL_LIMIT} --out "$work/eval" 2>&1 | tail -60
log "done"
collect
python3 -m training.curves "$work/grpo/train_log.csv" || true  # the reward trend, last in the output's tail
