#!/usr/bin/env bash
# One GPU lease for issues 12 and 13, as consecutive device calls on one warm machine (each call carries at most
# 64 MiB, brings back 8 files of 16 MiB; a machine idle for 30 s is given back). Everything lives under /tmp/lease
# there; the long steps run detached (setsid) so that they outlive the call that started them.
#
#   here:  bash training/gpu_lease.sh pack                  # .device/lease/c1..c3: SmolLM2 in three pieces, data,
#                                                           #   the base's tokenizer as this machine's transformers reads it
#   there: bash training/gpu_lease.sh recv1                 # carry .device/llama-src .whl .device/lease/c1: starts the
#                                                           #   builds (CUDA llama.cpp, then a CPU one)
#   there: bash training/gpu_lease.sh recv2                 # carry .device/pymupdf .device/lease/c2
#   there: bash training/gpu_lease.sh recv3                 # carry .device/lease/c3: starts the pipeline
#   there: bash training/gpu_lease.sh wait SECONDS          # progress; the results so far into $OUT
# Switches (environment of recv1/recv3): NO_CUDA, NO_3B (skip the 3B GRPO step bench), NO_INGEST, GRAMMAR_BENCH (issue
# 11's grammar cost on a 3B-shaped GGUF, on the idle GPU after GRPO), SFT_STEPS, GRPO_STEPS, GRPO_SECONDS, QASA_LIMIT.
#
# The pipeline: SmolLM2-135M-Instruct's HF folder (dequantized from its GGUF, with the tokenizer written here: the
# image's older transformers rebuilds a tokenizer from a GGUF that llama.cpp cannot load back) → SFT warm-up then GRPO
# (GPU, torch only) → prompt-lookup decoding and llama-batched-bench on the GPU (llama.cpp only) → export (merge, F16,
# Q4_K_M) and the harness, base vs tuned, grammar off, with a CPU build of llama.cpp (16 cores) → GRPO step time and
# memory for a Qwen2.5-3B-shaped model (bench/bench_grpo_step.py). No process holds torch and the CUDA llama.cpp
# together (that aborts on this image; `diag.txt` records which pairs do).
set -euo pipefail
mode=${1:?usage: $0 pack | recv1 | recv2 | recv3 | wait SECONDS}
here=.device/lease
work=/tmp/lease
model=SmolLM2-135M-Instruct.Q4_1.gguf

if [[ $mode == pack ]]; then
    cache=${PAPERBOT_TEST_CACHE:-$HOME/.cache/paperbot-tests}
    src=$cache/real-models/$model
    rm -rf "$here"; mkdir -p "$here/c1" "$here/c2" "$here/c3"
    dd if="$src" of="$here/c1/$model.0" bs=1M count=20 status=none
    dd if="$src" of="$here/c2/$model.1" bs=1M skip=20 count=38 status=none
    dd if="$src" of="$here/c3/$model.2" bs=1M skip=58 status=none
    (cd "$(dirname "$src")" && sha256sum "$model") > "$here/c3/SHA256SUMS"
    cp -r .device/train/data "$here/c3/data"  # training/gpu_train.sh pack: papers, QASA, tiny encoder, records
    .venv/bin/python -c "
from transformers import AutoTokenizer
AutoTokenizer.from_pretrained('$(dirname "$src")', gguf_file='$model').save_pretrained('$here/c3/base-tokenizer')"
    if [[ -n ${BEFORE_REV:-} ]]; then git show "$BEFORE_REV:rag_engine/prompting.py" > "$here/c3/prompting_before.py"; fi
    du -sb "$here"/* .device/llama-src .whl .device/pymupdf
    exit 0
fi

export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/.device/llama-src:$PWD
mkdir -p "$work/out"
log() { echo "[$(date +%T)] $*" | tee -a "$work/pipeline.log"; }

if [[ $mode == recv1 ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    cp "$here"/c1/* "$work/"
    # what the image lacks shows here, before anything starts (pymupdf comes with the next call)
    python3 -c "
import importlib
for m in 'trl datasets peft accelerate gguf pandas pyarrow matplotlib pydantic_settings langchain_text_splitters aiosqlite diskcache cachetools platformdirs aiohttp click'.split():
    try:
        importlib.import_module(m)
    except Exception as e:
        print('IMPORT FAILED', m, type(e).__name__, e)
print('imports checked')"
    rm -rf /tmp/lease-src && cp -r .device/llama-src /tmp/lease-src && cp -r bench /tmp/lease-bench
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$work/out/machine.txt"
    echo "cores: $(nproc)" >> "$work/out/machine.txt"
    # the CPU build without AMX: ggml's AMX kernels crash on Q4_K models (scripts/bootstrap.sh says more)
    setsid env PYTHONPATH=/tmp/site:/tmp/lease-src NO_CUDA="${NO_CUDA:-}" bash -c "
        [[ -n \"\$NO_CUDA\" ]] || bash /tmp/lease-bench/gpu_build_llama.sh build /tmp/lease-src /tmp/llama-build > $work/build.log 2>&1 || echo CUDA-BUILD-FAILED >> $work/build.log
        cmake -S /tmp/lease-src/llama.cpp -B /tmp/llama-cpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
            -DGGML_CUDA=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
            -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF > $work/build-cpu.log 2>&1 \
            && cmake --build /tmp/llama-cpu -j \$(nproc) --target llama >> $work/build-cpu.log 2>&1 || echo CPU-BUILD-FAILED >> $work/build-cpu.log
        touch $work/builds.done
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
    rm -rf /tmp/lease-repo /tmp/lease-repo-before && mkdir -p /tmp/lease-repo
    cp -r bot rag_engine storage training bench pyproject.toml /tmp/lease-repo/
    # the serving prompt before this round's change (pack's BEFORE_REV), for the before/after table
    cp -r /tmp/lease-repo /tmp/lease-repo-before
    [[ ! -f $work/prompting_before.py ]] || cp "$work/prompting_before.py" /tmp/lease-repo-before/rag_engine/prompting.py
    cp -r tests /tmp/lease-repo/  # bench_speculative.py takes its questions from tests/test_retrieval_quality.py
    setsid bash /tmp/lease-repo/training/gpu_lease.sh pipeline < /dev/null > "$work/pipeline.out" 2>&1 &
    setsid bash /tmp/lease-repo/training/gpu_lease.sh side < /dev/null > "$work/side.out" 2>&1 &
    echo "pipeline started"; exit 0
fi

# The harness on the CPU build of llama.cpp (lexical retrieval: the carried encoder is the tiny random one, so it
# only indexes). Usage: evaluate REPO OUT_NAME THREADS [evaluate options…]
evaluate() {
    local repo=$1 name=$2 threads=$3; shift 3
    (cd "$repo" && LD_PRELOAD=$(cat "$work/llama.env" 2>/dev/null) PYTHONPATH=/tmp/site:/tmp/lease-src:$repo LLAMA_CPP_LIB_PATH=/tmp/llama-cpu/bin PAPERBOT_DEVICE=cpu \
        PAPERBOT_RETRIEVAL_MODE=lexical PAPERBOT_N_GPU_LAYERS=0 PAPERBOT_N_THREADS=$threads PAPERBOT_PARALLEL=8 \
        PAPERBOT_MAX_NEW_TOKENS=256 PAPERBOT_N_CTX=4096 python3 -m training evaluate --pdfs "$work/data/pdfs" \
        --encoder "$work/data/colbert" --qasa "$work/data" --out "$work/$name" "$@" 2>&1 \
        | grep -v " answered in " | tail -40 >> "$work/$name.log")
    cp "$work/$name/results.md" "$work/out/$name.md" 2>/dev/null || log "$name: no results.md (see $name.log)"
}

if [[ $mode == side ]]; then
    # While the GPU trains: which torch / llama.cpp pairs share a process here, then the prompt's before/after
    # table for SmolLM2 (grammar off and on) on the CPU build, on 8 of the 16 cores.
    set +e +o pipefail
    while [[ ! -f $work/builds.done ]]; do sleep 5; done
    base=$work/$model
    preload=$(ls /tmp/llama-cpu/bin/libggml-base.so /tmp/llama-cpu/bin/libggml-cpu.so /tmp/llama-cpu/bin/libggml.so /tmp/llama-cpu/bin/libllama.so 2>/dev/null | paste -sd:)
    combos=("cpu||" "cpu|import numpy|" "cpu|import numpy|$preload" "cpu|import torch; torch.zeros(1).cuda()|$preload")
    [[ -n ${NO_CUDA:-} ]] || combos+=("cuda||" "cuda|import numpy|" "cuda|import torch; torch.zeros(1).cuda()|")
    for combo in "${combos[@]}"; do
        IFS='|' read -r lib pre ld <<< "$combo"
        dir=/tmp/llama-build/bin; ngl=-1; [[ $lib == cpu ]] && { dir=/tmp/llama-cpu/bin; ngl=0; }
        LD_PRELOAD=$ld LLAMA_CPP_LIB_PATH=$dir timeout 120 python3 -c "$pre
import llama_cpp
llm = llama_cpp.Llama('$base', n_gpu_layers=$ngl, n_ctx=512, verbose=False)
print(repr(llm('The capital of France is', max_tokens=4)['choices'][0]['text']))" > "$work/diag.one" 2>&1
        rc=$?
        echo "$lib llama.cpp after [${pre:-nothing}]${ld:+ (libraries preloaded)}: rc=$rc $(tail -1 "$work/diag.one")" >> "$work/out/diag.txt"
        # the harness imports numpy and torch first: it runs with the first setting that survives that
        [[ $lib == cpu && -n $pre && $rc == 0 && ! -f $work/llama.env ]] && echo "$ld" > "$work/llama.env"
    done
    touch "$work/diag.done"
    # issue 11's grammar cost needs the Qwen2.5-3B-shaped GGUF: written and quantized here, on the CPU, while GRPO trains
    if [[ -n ${GRAMMAR_BENCH:-} ]]; then
        log "side: the 3B-shaped GGUF for the grammar bench"
        (cd /tmp/lease-repo && PYTHONPATH=/tmp/site:/tmp/lease-src LD_PRELOAD=$(cat "$work/llama.env" 2>/dev/null) LLAMA_CPP_LIB_PATH=/tmp/llama-cpu/bin \
            python3 bench/make_qwen3b_gguf.py --llama-src /tmp/lease-src/llama.cpp --out /tmp/qwen3b > "$work/qwen3b.log" 2>&1) \
            || log "side: the 3B-shaped GGUF failed (qwen3b.log)"
        touch "$work/qwen3b.done"
    fi
    [[ -n ${SKIP_SIDE_EVAL:-} || ! -f $work/prompting_before.py ]] && { log "side: done (diag only)"; touch "$work/side.done"; exit 0; }
    log "side: prompt before/after, SmolLM2 base, grammar both"
    sub=(--limit "${SUB_LIMIT:-30}" --qasa-limit "${SUB_QASA:-10}")
    evaluate /tmp/lease-repo-before eval-prompt-before 8 --gguf "$base" --grammar both "${sub[@]}"
    evaluate /tmp/lease-repo eval-prompt-after 8 --gguf "$base" --grammar both "${sub[@]}"
    log "side: done"; touch "$work/side.done"; exit 0
fi

if [[ $mode == pipeline ]]; then
    set +e +o pipefail  # a failed step is logged and the next one still runs
    cd /tmp/lease-repo
    export PYTHONPATH=/tmp/site:/tmp/lease-src:/tmp/lease-repo
    gguf=$work/$model data=$work/data/prep base=$work/base-hf
    log "base: $model dequantized, with the tokenizer written by the dev machine's transformers"
    python3 -c "from pathlib import Path; from training.base_model import prepare_base; prepare_base('$gguf', Path('$base'))" \
        > "$work/base.log" 2>&1 && cp "$work"/base-tokenizer/* "$base/"
    log "sft"
    [[ -f $work/sft/adapter/adapter_config.json ]] || python3 -m training sft --data "$data" --out "$work/sft" --base-model "$base" --steps "${SFT_STEPS:-30}" \
        --batch-size 8 --per-device-batch 8 --lr 2e-4 --max-length 3072 > "$work/sft.log" 2>&1
    grep -vE "it/s\]|s/it\]" "$work/sft.log" | tail -12 >> "$work/pipeline.log"
    log "grpo"
    python3 -m training grpo --data "$data" --out "$work/grpo" --base-model "$base" --init-adapter "$work/sft/adapter" \
        --steps "${GRPO_STEPS:-80}" --max-seconds "${GRPO_SECONDS:-360}" --batch-size 16 --per-device-batch 16 \
        --num-generations 4 --max-completion-length 128 --lr "${GRPO_LR:-1e-4}" --beta 0 --temperature 0.9 \
        --max-length 3072 > "$work/grpo.log" 2>&1
    grep -vE "it/s\]|s/it\]" "$work/grpo.log" | tail -25 >> "$work/pipeline.log"
    python3 -m training.curves "$work/grpo/train_log.csv" >> "$work/pipeline.log" 2>&1
    for f in sft/train_log.csv sft/curves.png grpo/train_log.csv grpo/curves.png; do
        [[ -f $work/$f ]] && cp "$work/$f" "$work/out/$(echo "$f" | tr / -)"
    done
    while [[ ! -f $work/diag.done ]]; do sleep 5; done
    if [[ -z ${NO_CUDA:-} ]]; then
        log "prompt-lookup decoding on the GPU (SmolLM2, CUDA llama.cpp, nothing else running)"
        mkdir -p "$work/allpdfs" && ln -sf "$work"/data/pdfs/*.pdf "$work"/data/train-pdfs/*.pdf "$work/allpdfs/"
        LLAMA_CPP_LIB_PATH=/tmp/llama-build/bin timeout 300 python3 bench/bench_speculative.py --model "$gguf" \
            --papers "$work/allpdfs" --drafts 0,4,8 --questions 10 --max-tokens 160 --n-gpu-layers -1 --flash-attn \
            --parallel 4 --n-ctx 4096 > "$work/spec.log" 2>&1 || log "speculative bench failed"
        tail -16 "$work/spec.log" > "$work/out/speculative-table.txt"
        for kvu in "" -kvu; do
            timeout 120 /tmp/llama-build/bin/llama-batched-bench -m "$gguf" -c 16384 -b 2048 -ub 512 -ngl 99 -fa on \
                -npp 1500 -ntg 160 -npl 1,4 $kvu >> "$work/out/speculative-table.txt" 2>&1
        done
    fi
    if [[ -n ${GRAMMAR_BENCH:-} && -z ${NO_CUDA:-} ]]; then
        # the GPU is idle now (GRPO is over, export and the harness come after): issue 11's grammar cost, in one call
        while [[ ! -f $work/qwen3b.done ]]; do sleep 5; done
        log "grammar cost: batched backend, 3B-shaped GGUF, 1 and 8 sequences, with and without the reply grammar"
        LLAMA_CPP_LIB_PATH=/tmp/llama-build/bin timeout 360 python3 bench/bench_llm.py --model /tmp/qwen3b/qwen-3b-q4_k_m.gguf \
            --concurrency 1,8 --variants batched,batched-grammar --skip bandwidth,native,raw --repeats 3 \
            > "$work/grammar.log" 2>&1 || log "grammar bench failed"
        tail -24 "$work/grammar.log" > "$work/out/grammar-table.txt"
    fi
    # the converter from the carried sources: nothing can be downloaded here (training/tiny_models.llama_cpp_source)
    export PAPERBOT_BUILD_CACHE=$work/build-cache
    v=$(python3 -c "from training.tiny_models import llama_cpp_version as v; print(v())")
    mkdir -p "$PAPERBOT_BUILD_CACHE/llama.cpp-$v" && (cd /tmp/lease-src/llama.cpp && \
        cp -r convert_hf_to_gguf.py conversion gguf-py models "$PAPERBOT_BUILD_CACHE/llama.cpp-$v/") && \
        touch "$PAPERBOT_BUILD_CACHE/llama.cpp-$v/EXTRACTED"
    log "export (LD_PRELOAD=$(cat "$work/llama.env" 2>/dev/null))"
    LD_PRELOAD=$(cat "$work/llama.env" 2>/dev/null) LLAMA_CPP_LIB_PATH=/tmp/llama-cpu/bin python3 -m training export --run "$work/grpo" --out "$work/export" \
        --n-gpu-layers 0 > "$work/export.log" 2>&1
    tail -12 "$work/export.log" >> "$work/pipeline.log"
    # the base was an HF folder, so export's own check had no GGUF to compare with: the tuned F16 against the base GGUF
    python3 -c "
from pathlib import Path; from training.export import vocabulary
a, b = vocabulary(Path('$gguf')), vocabulary(Path('$work/export/model-f16.gguf'))
print('vocabulary', 'same as the base GGUF' if a == b else f'DIFFERS: base {a} tuned {b}')" >> "$work/pipeline.log" 2>&1
    # The harness runs on the CPU while the 3B step bench below uses the GPU: its quality figures do not depend on
    # the machine, its seconds per answer then read high.
    log "evaluate: base vs tuned, grammar off, every question"
    evaluate /tmp/lease-repo eval-base-vs-tuned "${EVAL_THREADS:-12}" --gguf "$gguf" --gguf "$work/export/model-q4_k_m.gguf" \
        --grammar off --qasa-limit "${QASA_LIMIT:-30}" ${EVAL_LIMIT:+--limit $EVAL_LIMIT} &
    eval_pid=$!
    if [[ -z ${NO_3B:-} ]]; then
        log "GRPO step time and memory, Qwen2.5-3B shape"
        python3 bench/bench_grpo_step.py --llama-src /tmp/lease-src/llama.cpp --data "$data" --work /tmp/grpo3b \
            --steps "${STEPS_3B:-3}" --backends off > "$work/grpo3b.log" 2>&1
        # Unsloth pins trl <= 1.15 and datasets < 5: its wheels (carried by the wait calls) live in their own folder,
        # first on the path for this run only
        log "the same with Unsloth ($(ls -d /tmp/site-uns/unsloth /tmp/site-uns/bitsandbytes 2>/dev/null | wc -l) of 2 packages here)"
        HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site-uns:$PYTHONPATH TORCH_EXTENSIONS_DIR=$(mktemp -d) timeout "${UNSLOTH_SECONDS:-420}" python3 \
            bench/bench_grpo_step.py --llama-src /tmp/lease-src/llama.cpp --data "$data" --work /tmp/grpo3b \
            --steps "${STEPS_3B:-3}" --backends on > "$work/grpo3b-unsloth.log" 2>&1
        tail -30 "$work/grpo3b.log" > "$work/out/grpo3b-table.txt"
        tail -40 "$work/grpo3b-unsloth.log" >> "$work/out/grpo3b-table.txt"
    fi
    wait "$eval_pid"; log "evaluate: done"
    # issue 13's ingest figure: 15 distinct copies of the 8 papers (~2,100 pages), one and 8 papers at a time
    [[ -n ${NO_INGEST:-} ]] || log "ingest on the GPU"
    mkdir -p "$work/allpdfs" && ln -sf "$work"/data/pdfs/*.pdf "$work"/data/train-pdfs/*.pdf "$work/allpdfs/"
    [[ -n ${NO_INGEST:-} ]] || timeout 300 python3 bench/bench_ingest.py --models "$work/data" --base --device cuda --papers "$work/allpdfs" \
        --copies 15 --concurrency 1,8 > "$work/out/ingest-gpu.txt" 2>&1 || log "ingest bench failed"
    # issue 13's GPU search figure, once the GPU and the CPU are free (the sample rides along with a wait call)
    deadline=$(( $(date +%s) + 120 ))
    while [[ -n ${SEARCH_GPU:-} && ! -f $work/search-real.npz ]] && (( $(date +%s) < deadline )); do sleep 5; done
    if [[ -f $work/search-real.npz ]]; then
        log "search on the GPU, 10k and 100k chunks"
        timeout 300 python3 bench/bench_search.py --device cuda --chunks 10000,100000 --repeats 3 \
            --sample "$work/search-real.npz" > "$work/out/search-gpu.txt" 2>&1 || log "search bench failed"
    fi
    log "done"; touch "$work/pipeline.done"; exit 0
fi

if [[ $mode == wait ]]; then
    # Unsloth's wheels ride along with the wait calls (.device/uns1, .device/uns2: over one call's 64 MiB together)
    for d in .device/uns1 .device/uns2; do
        if compgen -G "$d/*.whl" > /dev/null; then
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-uns "$d"/*.whl \
                && log "installed $(ls "$d" | wc -l) wheels from $d"
        fi
    done
    [[ ! -f .device/search-real.npz ]] || cp .device/search-real.npz "$work/"
    end=$(( $(date +%s) + ${2:-500} ))
    while [[ ! -f $work/pipeline.done ]] && (( $(date +%s) < end )); do sleep 10; done
    tail -45 "$work/pipeline.log" 2>/dev/null
    tail -2 "$work/build.log" "$work/build-cpu.log" "$work/side.out" "$work/pipeline.out" 2>/dev/null || true
    for f in base sft grpo export spec grammar qwen3b grpo3b grpo3b-unsloth; do grep -q Traceback "$work/$f.log" 2>/dev/null && { echo "== $f.log"; tail -8 "$work/$f.log"; }; done
    for d in eval-prompt-before eval-prompt-after eval-base-vs-tuned; do
        if [[ -f $work/$d/records.jsonl && ! -f $work/$d/results.md ]]; then
            (cd /tmp/lease-repo && PYTHONPATH=/tmp/site:/tmp/lease-src:/tmp/lease-repo python3 -m training report \
                "$work/$d" > "$work/out/$d-partial.md" 2>&1 || true)
        fi
    done
    # At most 8 files come back: the tables as they are, everything else in one archive.
    (cd "$work" && tar czf /tmp/summaries.tgz out *.log *.out sft/run.json grpo/run.json export/export.json \
        eval-*/results.json eval-*/records.jsonl data/prep/manifest.json /tmp/grpo3b/run-*/run.json 2>/dev/null) || true
    cp /tmp/summaries.tgz "$OUT/"
    for f in speculative-table.txt grammar-table.txt grpo3b-table.txt diag.txt grpo-train_log.csv eval-prompt-before.md eval-prompt-after.md eval-base-vs-tuned.md search-gpu.txt ingest-gpu.txt; do
        [[ -f $work/out/$f ]] && cp "$work/out/$f" "$OUT/"
    done
    ls "$work/out"; ls -la "$OUT"; exit 0
fi

echo "unknown mode $mode" >&2; exit 2
