#!/usr/bin/env bash
# The GPU benchmarks that need no trained model, as a few consecutive device calls on one warm machine (a call carries
# at most 64 MiB; a machine idle for 30 s is given back): the Qwen2.5-3B-shaped GRPO step without and with Unsloth
# (issue 12), then ingest and search on the GPU (issue 13). Everything lives under /tmp/lb there; the benchmarks run
# detached (setsid), one after another, each starting once what it needs has arrived.
#
#   there: bash bench/gpu_bench_lease.sh start     # carry .whl .device/llama-src .device/train/data: the 3B step bench
#   there: bash bench/gpu_bench_lease.sh feed      # carry .device/uns1, then .device/uns2 (Unsloth's wheels),
#                                                  #   then .device/pymupdf + .device/search-real.npz
#   there: bash bench/gpu_bench_lease.sh wait SECONDS   # progress, and the tables so far into $OUT
#
# Here first: `bash training/gpu_train.sh pack` (.device/train/data), bench/synthetic.py's sample, and the wheel
# folders of docs/training.md.
set -euo pipefail
mode=${1:?usage: $0 start | feed | wait SECONDS | run}
work=/tmp/lb
export PYTHONUNBUFFERED=1
mkdir -p "$work/out"
log() { echo "[$(date +%T)] $*" | tee -a "$work/bench.log"; }

if [[ $mode == start ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    rm -rf /tmp/lb-src /tmp/lb-repo && cp -r .device/llama-src /tmp/lb-src && mkdir -p /tmp/lb-repo
    cp -r bot rag_engine storage training bench pyproject.toml /tmp/lb-repo/
    cp -r .device/train/data "$work/data"
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "cores: $(nproc)"; } \
        | tee "$work/out/machine.txt"
    setsid bash /tmp/lb-repo/bench/gpu_bench_lease.sh run < /dev/null > "$work/run.out" 2>&1 &
    echo "started"; exit 0
fi

if [[ $mode == feed ]]; then
    for d in .device/uns1 .device/uns2; do
        if compgen -G "$d/*.whl" > /dev/null; then
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-uns \
                "$d"/*.whl && log "installed $(ls "$d" | wc -l) wheels from $d" && touch "$work/$(basename "$d").ready"
        fi
    done
    if compgen -G ".device/pymupdf/*.whl" > /dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/pymupdf/*.whl \
            && touch "$work/pymupdf.ready" && log "installed pymupdf"
    fi
    [[ ! -f .device/search-real.npz ]] || { cp .device/search-real.npz "$work/" && log "search sample here"; }
    exit 0
fi

# Waits up to $2 seconds for the file $1 (0: it is there).
arrived() { local end=$(( $(date +%s) + $2 )); while [[ ! -f $1 ]] && (( $(date +%s) < end )); do sleep 3; done; [[ -f $1 ]]; }

if [[ $mode == run ]]; then
    set +e +o pipefail  # a failed step is logged and the next one still runs
    cd /tmp/lb-repo
    export PYTHONPATH=/tmp/site:/tmp/lb-src:/tmp/lb-repo
    data=$work/data/prep
    log "GRPO step time and memory, Qwen2.5-3B shape, transformers + PEFT"
    python3 bench/bench_grpo_step.py --llama-src /tmp/lb-src/llama.cpp --data "$data" --work /tmp/grpo3b \
        --steps "${STEPS_3B:-2}" --backends off > "$work/grpo3b.log" 2>&1
    tail -30 "$work/grpo3b.log" > "$work/out/grpo3b-table.txt"
    # Unsloth pins trl <= 1.15 and datasets < 5: its wheels live in their own folder, first on the path for this run
    if arrived "$work/uns1.ready" 60 && arrived "$work/uns2.ready" 60; then
        log "the same with Unsloth"
        HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site-uns:$PYTHONPATH TORCH_EXTENSIONS_DIR=$(mktemp -d) \
            timeout "${UNSLOTH_SECONDS:-360}" python3 bench/bench_grpo_step.py --llama-src /tmp/lb-src/llama.cpp \
            --data "$data" --work /tmp/grpo3b --steps "${STEPS_3B:-2}" --backends on > "$work/grpo3b-unsloth.log" 2>&1
        tail -40 "$work/grpo3b-unsloth.log" >> "$work/out/grpo3b-table.txt"
    else
        log "Unsloth's wheels did not arrive"
    fi
    if arrived "$work/pymupdf.ready" 60; then
        log "ingest on the GPU: 15 distinct copies of the 8 papers, one and 8 at a time"
        mkdir -p "$work/allpdfs" && ln -sf "$work"/data/pdfs/*.pdf "$work"/data/train-pdfs/*.pdf "$work/allpdfs/"
        timeout 300 python3 bench/bench_ingest.py --models "$work/data" --base --device cuda --papers "$work/allpdfs" \
            --copies 15 --concurrency 1,8 > "$work/out/ingest-gpu.txt" 2>&1 || log "ingest bench failed"
    fi
    if arrived "$work/search-real.npz" 30; then
        log "search on the GPU, 10k and 100k chunks"
        timeout 420 python3 bench/bench_search.py --device cuda --chunks 10000,100000 --repeats 3 \
            --sample "$work/search-real.npz" > "$work/out/search-gpu.txt" 2>&1 || log "search bench failed"
    fi
    log "done"; touch "$work/done"; exit 0
fi

if [[ $mode == wait ]]; then
    end=$(( $(date +%s) + ${2:-500} ))
    while [[ ! -f $work/done ]] && (( $(date +%s) < end )); do sleep 5; done
    tail -20 "$work/bench.log" 2>/dev/null; tail -3 "$work/run.out" 2>/dev/null || true
    for f in grpo3b grpo3b-unsloth; do
        grep -q Traceback "$work/$f.log" 2>/dev/null && { echo "== $f.log"; tail -8 "$work/$f.log"; }
    done
    (cd "$work" && tar czf "$OUT/logs.tgz" out *.log *.out /tmp/grpo3b/run-*/run.json 2>/dev/null) || true
    cp "$work"/out/* "$OUT/" 2>/dev/null || true
    ls -la "$OUT"; exit 0
fi

echo "unknown mode $mode" >&2; exit 2
