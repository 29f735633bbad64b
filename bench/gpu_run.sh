#!/usr/bin/env bash
# One device call: build llama.cpp with CUDA (reused when already built), write the random Qwen2.5-3B-shaped Q4_K_M
# GGUF (reused when there), then run bench_llm.py. Run from the repository root on the GPU machine, with the trimmed
# source from `bench/gpu_build_llama.sh prepare` in .device/llama-src and pure-Python wheels the image lacks
# (diskcache for llama_cpp, aiosqlite for storage) in .whl:
#
#   bench/gpu_run.sh [bench_llm.py options…]        e.g. --variants "" (native + raw only), --skip bandwidth,native
#
# Logs and results go to $OUT (or /tmp/bench-out).
set -euo pipefail
out=${OUT:-/tmp/bench-out}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/.device/llama-src:${PYTHONPATH:-}
export LLAMA_CPP_LIB_PATH=/tmp/llama-build/bin
export LD_LIBRARY_PATH=/tmp/llama-build/bin:${LD_LIBRARY_PATH:-}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "cores: $(nproc); $(nvcc --version | tail -1)"
t0=$(date +%s)
bash bench/gpu_build_llama.sh build .device/llama-src /tmp/llama-build 2>&1 | tee /tmp/llama-build.log
model=/tmp/qwen3b/qwen-3b-q4_k_m.gguf
if [[ ! -f $model ]]; then
    python3 bench/make_qwen3b_gguf.py --llama-src .device/llama-src/llama.cpp --out /tmp/qwen3b 2>&1 \
        | grep -v '^\[' | tail -3
fi
echo "setup took $(( $(date +%s) - t0 ))s"
# Each of our backends in its own process: a crash in one cannot take the other figures with it. Work files stay
# in /tmp/bench-work; $OUT gets the merged results, the table and one archive of the logs (8 files come back at most).
work=/tmp/bench-work; rm -rf "$work"; mkdir -p "$work"
bench() { python3 bench/bench_llm.py --model "$model" --tools /tmp/llama-build/bin "$@"; }
variants=${VARIANTS:-batched batched-unified-kv-cpu-sampling-chunk512-no-hold batched-no-sampling serial}
# The device call has a hard limit: variants that would start after BUDGET_S seconds (from the start of this script)
# are skipped so that the table still comes back. Progress lines go to stdout as they come.
deadline=$(( t0 + ${BUDGET_S:-540} ))
bench "$@" --variants "" --out "$work/native.json" 2>&1 | tee "$work/native.log" | grep -E "^  llama|ERROR" \
    || echo "native/raw run failed: $(tail -5 "$work/native.log")"
files=("$work/native.json")
for v in $variants; do
    if (( $(date +%s) + 45 > deadline )); then echo "$v: skipped, out of time"; continue; fi
    echo "$v:"
    bench "$@" --variants "$v" --skip bandwidth,native,raw --out "$work/$v.json" 2>&1 | tee "$work/$v.log" \
        | grep -E "^  |FAILED" || echo "$v failed: $(grep -v '^ *File "/usr' "$work/$v.log" | tail -8)"
    files+=("$work/$v.json")
done
python3 bench/bench_llm.py --merge "${files[@]}" --out "$out/results.json" | tee "$out/table.txt"
cp /tmp/llama-build.log /tmp/llama-build.*.log "$work/" 2>/dev/null || true
tar czf "$out/logs.tgz" -C "$work" .
