#!/usr/bin/env bash
# One GPU lease for issues 11 and 12, as consecutive device calls on one warm machine (each call carries at most
# 64 MiB, brings back 8 files of 16 MiB; a machine idle for 30 s is given back). Everything lives under /tmp/lease
# there; the long steps run detached (setsid) so that they outlive the call that started them.
#
#   here:  bash training/gpu_lease.sh pack                  # .device/lease/c1..c3: SmolLM2 in three pieces, data
#   there: bash training/gpu_lease.sh recv1                 # carry .device/llama-src .whl .device/lease/c1: starts the
#                                                           #   builds (CUDA llama.cpp, then a CPU one), the 3B GGUF
#   there: bash training/gpu_lease.sh recv2                 # carry .device/pymupdf .device/lease/c2
#   there: bash training/gpu_lease.sh recv3                 # carry .device/lease/c3: starts the pipeline
#   there: bash training/gpu_lease.sh wait SECONDS          # progress; the results so far into $OUT
#
# The pipeline: SFT warm-up then GRPO on SmolLM2-135M-Instruct (GPU, torch only) → the reply grammar's cost in the
# batched backend on the 3B-shaped GGUF (GPU, llama.cpp only, nothing else running) → export (merge, F16, Q4_K_M)
# and the harness, base vs tuned, grammar off, with a CPU build of llama.cpp (16 cores): no process holds torch and
# the CUDA llama.cpp together (that aborts on this image; `diag.txt` records which pairs do).
set -euo pipefail
mode=${1:?usage: $0 pack | recv1 | recv2 | recv3 | wait SECONDS}
here=.device/lease
work=/tmp/lease
model=SmolLM2-135M-Instruct.Q4_1.gguf

if [[ $mode == pack ]]; then
    cache=${PAPERBOT_TEST_CACHE:-$HOME/.cache/paperbot-tests}
    src=$cache/real-models/$model
    rm -rf "$here"; mkdir -p "$here/c1" "$here/c2" "$here/c3"
    dd if="$src" of="$here/c1/$model.0" bs=1M count=19 status=none
    dd if="$src" of="$here/c2/$model.1" bs=1M skip=19 count=38 status=none
    dd if="$src" of="$here/c3/$model.2" bs=1M skip=57 status=none
    (cd "$(dirname "$src")" && sha256sum "$model") > "$here/c3/SHA256SUMS"
    cp -r .device/train/data "$here/c3/data"  # training/gpu_train.sh pack: papers, QASA, tiny encoder, records
    du -sb "$here"/* .device/llama-src .whl .device/pymupdf
    exit 0
fi

export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/.device/llama-src:$PWD
mkdir -p "$work/out"
log() { echo "[$(date +%T)] $*" | tee -a "$work/pipeline.log"; }

if [[ $mode == recv1 ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    cp "$here"/c1/* "$work/"
    rm -rf /tmp/lease-src && cp -r .device/llama-src /tmp/lease-src && cp -r bench /tmp/lease-bench
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$work/out/machine.txt"
    echo "cores: $(nproc)" >> "$work/out/machine.txt"
    setsid env PYTHONPATH=/tmp/site:/tmp/lease-src bash -c "
        bash /tmp/lease-bench/gpu_build_llama.sh build /tmp/lease-src /tmp/llama-build > $work/build.log 2>&1 || echo CUDA-BUILD-FAILED >> $work/build.log
        cmake -S /tmp/lease-src/llama.cpp -B /tmp/llama-cpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
            -DGGML_CUDA=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
            -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF > $work/build-cpu.log 2>&1 \
            && cmake --build /tmp/llama-cpu -j \$(nproc) --target llama >> $work/build-cpu.log 2>&1 || echo CPU-BUILD-FAILED >> $work/build-cpu.log
        touch $work/builds.done
        LLAMA_CPP_LIB_PATH=/tmp/llama-cpu/bin python3 /tmp/lease-bench/make_qwen3b_gguf.py --llama-src /tmp/lease-src/llama.cpp --out /tmp/qwen3b > $work/qwen3b.log 2>&1 || echo 3B-FAILED >> $work/qwen3b.log
        touch $work/qwen3b.done
    " < /dev/null > /dev/null 2>&1 &
    echo "builds started"; exit 0
fi

if [[ $mode == recv2 ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/pymupdf/*.whl
    cp "$here"/c2/* "$work/"; ls -la "$work"; tail -2 "$work/build.log" || true; exit 0
fi

if [[ $mode == recv3 ]]; then
    cp -r "$here"/c3/* "$work/"
    cat "$work/$model".0 "$work/$model".1 "$work/$model".2 > "$work/$model"
    (cd "$work" && sha256sum -c SHA256SUMS)
    rm -rf /tmp/lease-repo && mkdir -p /tmp/lease-repo && cp -r bot rag_engine storage training bench pyproject.toml /tmp/lease-repo/
    setsid bash /tmp/lease-repo/training/gpu_lease.sh pipeline < /dev/null > "$work/pipeline.out" 2>&1 &
    echo "pipeline started"; exit 0
fi

if [[ $mode == pipeline ]]; then
    set +e +o pipefail  # a failed step is logged and the next one still runs
    cd /tmp/lease-repo
    export PYTHONPATH=/tmp/site:/tmp/lease-src:/tmp/lease-repo
    base=$work/$model data=$work/data/prep
    log "sft"
    python3 -m training sft --data "$data" --out "$work/sft" --base-model "$base" --steps "${SFT_STEPS:-30}" \
        --batch-size 8 --per-device-batch 8 --lr 2e-4 --max-length 3072 2>&1 | grep -vE "it/s\]|s/it\]" | tail -15 >> "$work/pipeline.log"
    log "grpo"
    python3 -m training grpo --data "$data" --out "$work/grpo" --base-model "$base" --init-adapter "$work/sft/adapter" \
        --steps "${GRPO_STEPS:-80}" --max-seconds 360 --batch-size 16 --per-device-batch 16 --num-generations 4 \
        --max-completion-length 128 --lr "${GRPO_LR:-1e-4}" --beta 0 --temperature 0.9 --max-length 3072 2>&1 \
        | grep -vE "it/s\]|s/it\]" | tail -15 >> "$work/pipeline.log"
    for f in sft/train_log.csv sft/curves.png grpo/train_log.csv grpo/curves.png; do
        [[ -f $work/$f ]] && cp "$work/$f" "$work/out/$(echo "$f" | tr / -)"
    done
    log "waiting for the builds"
    while [[ ! -f $work/builds.done ]]; do sleep 5; done
    log "diag: which pairs of torch / llama.cpp share a process here"
    for combo in "cuda|" "cuda|import torch; torch.zeros(1).cuda()" "cuda|import numpy" "cpu|import torch; torch.zeros(1).cuda()" "cpu|import numpy"; do
        lib=${combo%%|*} pre=${combo#*|}
        dir=/tmp/llama-build/bin; ngl=-1; [[ $lib == cpu ]] && { dir=/tmp/llama-cpu/bin; ngl=0; }
        LLAMA_CPP_LIB_PATH=$dir timeout 120 python3 -c "$pre
import llama_cpp
llm = llama_cpp.Llama('$base', n_gpu_layers=$ngl, n_ctx=512, verbose=False)
print(repr(llm('The capital of France is', max_tokens=4)['choices'][0]['text']))" > "$work/diag.one" 2>&1
        rc=$?
        echo "$lib llama.cpp after [${pre:-nothing}]: rc=$rc $(tail -1 "$work/diag.one")" >> "$work/out/diag.txt"
    done
    log "grammar bench"
    while [[ ! -f $work/qwen3b.done ]]; do sleep 5; done
    (cd /tmp/lease-repo && mkdir -p .device && ln -sfn /tmp/lease-src .device/llama-src && \
        OUT=$work/grammar VARIANTS="batched batched-grammar" BUDGET_S=400 bash bench/gpu_run.sh --concurrency 1,8 \
        --repeats 3 --skip bandwidth,native,raw > "$work/grammar.log" 2>&1) || log "grammar bench failed"
    cp "$work/grammar/table.txt" "$work/out/grammar-table.txt" 2>/dev/null || true
    export LLAMA_CPP_LIB_PATH=/tmp/llama-cpu/bin
    log "export"
    python3 -m training export --run "$work/grpo" --out "$work/export" --n-gpu-layers 0 2>&1 | tail -15 >> "$work/pipeline.log"
    log "evaluate: base vs tuned, grammar off, on the CPU build (lexical retrieval: the tiny encoder only indexes)"
    PAPERBOT_DEVICE=cpu PAPERBOT_RETRIEVAL_MODE=lexical PAPERBOT_N_GPU_LAYERS=0 PAPERBOT_PARALLEL=8 \
        PAPERBOT_MAX_NEW_TOKENS=256 PAPERBOT_N_CTX=4096 python3 -m training evaluate --pdfs "$work/data/pdfs" \
        --gguf "$base" --gguf "$work/export/model-q4_k_m.gguf" --grammar off --encoder "$work/data/colbert" \
        --qasa "$work/data" --qasa-limit "${QASA_LIMIT:-30}" ${EVAL_LIMIT:+--limit $EVAL_LIMIT} --out "$work/eval" \
        2>&1 | grep -v " answered in " | tail -60 >> "$work/pipeline.log"
    cp "$work/eval/results.md" "$work/out/eval-results.md" 2>/dev/null || true
    log "done"; touch "$work/pipeline.done"; exit 0
fi

if [[ $mode == wait ]]; then
    end=$(( $(date +%s) + ${2:-500} ))
    while [[ ! -f $work/pipeline.done ]] && (( $(date +%s) < end )); do sleep 10; done
    cat "$work/pipeline.log" 2>/dev/null | tail -40
    tail -3 "$work/build.log" "$work/build-cpu.log" "$work/qwen3b.log" 2>/dev/null || true
    [[ -f $work/eval/records.jsonl && ! -f $work/eval/results.md ]] && (cd /tmp/lease-repo && \
        PYTHONPATH=/tmp/site:/tmp/lease-src:/tmp/lease-repo python3 -m training report "$work/eval" > "$work/out/eval-partial.md" 2>&1 || true)
    (cd "$work" && tar czf out/summaries.tgz pipeline.log pipeline.out grammar.log sft/run.json grpo/run.json \
        export/export.json eval/results.json eval/records.jsonl data/prep/manifest.json grammar/results.json 2>/dev/null) || true
    cp "$work"/out/* "$OUT/" 2>/dev/null || true
    ls -la "$OUT"; exit 0
fi

echo "unknown mode $mode" >&2; exit 2
