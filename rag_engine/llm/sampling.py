"""Per-sequence llama.cpp sampler chains, and sampling a batch's outputs with them.

Each sequence samples from its own chain (`llama_sampler_chain_init`), so sampling stays in C. Where the chain runs:
`cpu` (each chain scans the whole vocabulary on the host, chains on a few threads), `backend` (the whole chain in
llama.cpp's compute graph) or `split` (top-k in the graph, the rest on the host over those k candidates).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from rag_engine.llm.base import GenerationRequest

TOP_K = 40  # `Llama.create_completion`'s default
Sampling = Literal["cpu", "backend", "split"]


def make_chain(request: GenerationRequest, *, top_k_only: bool = False) -> Any:
    """The request's chain; `top_k_only`: just its first link, for the graph (greedy stays whole there)."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if request.temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        # The chain `Llama.create_completion` builds with its defaults, so both backends sample alike.
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(TOP_K))
        if top_k_only:
            return chain
        seed = request.seed if request.seed is not None else random.getrandbits(32)
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(0.95, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(0.05, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(request.temperature))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


def free_chain(chain: Any) -> None:
    import llama_cpp

    llama_cpp.llama_sampler_free(chain)


class BatchSampler:
    """Samples the outputs of one decoding step, each with its own chain.

    On the CPU each chain scans the whole vocabulary (0.1-0.3 ms for Qwen's 152k tokens), a large share of a GPU
    decoding step; the chains are independent and ctypes releases the GIL, so they run on a few threads. The
    context's one-time output reordering happens first, on the calling thread. With `split` or `backend` sampling the
    graph already cut each row to its top-k (or picked the token), and the host work is a few microseconds.
    """

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="llama-sampler") if threads > 1 else None

    def sample(self, ctx: Any, jobs: Sequence[tuple[Any, int]], *, threaded: bool = True) -> list[int]:
        """The next token of each `(chain, output index)`."""
        import llama_cpp

        if self._pool is None or len(jobs) < 2 or not threaded:
            return [llama_cpp.llama_sampler_sample(chain, ctx, i) for chain, i in jobs]
        llama_cpp.llama_get_logits_ith(ctx, jobs[0][1])  # reorders the outputs once, before the threads read
        return list(self._pool.map(lambda job: llama_cpp.llama_sampler_sample(job[0], ctx, job[1]), jobs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
