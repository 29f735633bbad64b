"""What one llama.cpp sampling call costs over Qwen's 151,936-token vocabulary, per chain, on this machine's CPU.

    python bench/bench_sampler.py [MODEL.gguf]     (default: the tiny test GGUF, which has the real vocabulary)

Every chain pays for building the full candidate array first, so even greedy costs about as much as top-k.
"""

import sys
import time
from pathlib import Path

import llama_cpp

TINY = sorted(Path.home().glob(".cache/paperbot-tests/tiny-models-*"))
model = Path(sys.argv[1]) if len(sys.argv) > 1 else TINY[-1] / "qwen2.gguf"
llm = llama_cpp.Llama(str(model), n_ctx=256, n_gpu_layers=0, verbose=False)
ctx = llm.ctx
llm.eval(llm.tokenize(b"hello world, this is a test"))


def chain(kind: str):
    c = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if kind == "greedy":
        llama_cpp.llama_sampler_chain_add(c, llama_cpp.llama_sampler_init_greedy())
        return c
    llama_cpp.llama_sampler_chain_add(c, llama_cpp.llama_sampler_init_top_k(40))
    if kind == "top-k, top-p, min-p, temp, dist (ours)":
        llama_cpp.llama_sampler_chain_add(c, llama_cpp.llama_sampler_init_top_p(0.95, 1))
        llama_cpp.llama_sampler_chain_add(c, llama_cpp.llama_sampler_init_min_p(0.05, 1))
    llama_cpp.llama_sampler_chain_add(c, llama_cpp.llama_sampler_init_temp(0.2))
    llama_cpp.llama_sampler_chain_add(c, llama_cpp.llama_sampler_init_dist(1))
    return c


print(f"| chain | ms per sample (vocab {llm.n_vocab()}) |")
print("| --- | ---: |")
for kind in ("greedy", "top-k, temp, dist", "top-k, top-p, min-p, temp, dist (ours)"):
    sampler = chain(kind)
    n = 300
    started = time.perf_counter()
    for _ in range(n):
        llama_cpp.llama_sampler_sample(sampler, ctx, -1)
    print(f"| {kind} | {(time.perf_counter() - started) / n * 1e3:.3f} |")
