"""Per-sequence llama.cpp sampler chains, and sampling a batch's outputs with them.

Each sequence samples from its own chain (`llama_sampler_chain_init`), so sampling stays in C. Where the chain runs:
`cpu` (each chain scans the whole vocabulary on the host, chains on a few threads), `backend` (the whole chain in
llama.cpp's compute graph) or `split` (top-k in the graph, the rest on the host over those k candidates).
"""

from __future__ import annotations

import ctypes
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from rag_engine.llm.base import GenerationRequest
from rag_engine.llm.grammar import grammar_sampler

TOP_K = 40  # `Llama.create_completion`'s default
Sampling = Literal["cpu", "backend", "split"]
# llama_token_data: {int32 id; float logit; float p}
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


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


class SequenceSampler:
    """One sequence's host-side sampling: its chain, and for a request with a grammar, the grammar checked after it.

    A grammar sampler applied first would test every one of the vocabulary's tokens at every step (~0.1 s for
    Qwen's 152k on a CPU core); as llama.cpp's own server does, the chain picks a token first and only that token
    is checked; when the grammar rejects it, the grammar filters the whole vocabulary and the chain picks again.
    Greedy picks exactly what grammar-first would; sampling differs only in the rare resampled steps.
    """

    def __init__(self, request: GenerationRequest, vocab: Any) -> None:
        import llama_cpp

        self.chain = make_chain(request)
        self.grammar = grammar_sampler(vocab, request.grammar) if request.grammar is not None else None
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self._one = (llama_cpp.llama_token_data * 1)()

    def sample(self, ctx: Any, i: int) -> int:
        """The next token from the context's `i`-th output (thread-safe across sequences)."""
        import llama_cpp

        token = llama_cpp.llama_sampler_sample(self.chain, ctx, i)
        if self.grammar is None:
            return token
        if not self._allowed(token):
            token = self._resample(ctx, i)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        return token

    def accept(self, token: int) -> None:
        """A token written for the sequence instead of sampled: the chain and the grammar move past it."""
        import llama_cpp

        llama_cpp.llama_sampler_accept(self.chain, token)
        if self.grammar is not None:
            llama_cpp.llama_sampler_accept(self.grammar, token)

    def free(self) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_free(self.chain)
        if self.grammar is not None:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None

    def _allowed(self, token: int) -> bool:
        import llama_cpp

        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        candidates = llama_cpp.llama_token_data_array(self._one, 1, -1, False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(candidates))
        return bool(np.isfinite(self._one[0].logit))

    def _resample(self, ctx: Any, i: int) -> int:
        """The chain's pick among the tokens the grammar allows, over the whole vocabulary."""
        import llama_cpp

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(self._n_vocab,))
        data = np.zeros(self._n_vocab, dtype=_TOKEN_DATA)
        data["id"] = np.arange(self._n_vocab, dtype=np.int32)
        data["logit"] = logits
        pointer = data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        candidates = llama_cpp.llama_token_data_array(pointer, self._n_vocab, -1, False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(candidates))
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(candidates))
        return int(candidates.data[candidates.selected].id)  # a sampler may sort, cut or replace the array


class BatchSampler:
    """Samples the outputs of one decoding step, each with its own chain.

    On the CPU each chain scans the whole vocabulary (0.1-0.3 ms for Qwen's 152k tokens), a large share of a GPU
    decoding step; the chains are independent and ctypes releases the GIL, so they run on a few threads. The
    context's one-time output reordering happens first, on the calling thread. With `split` or `backend` sampling the
    graph already cut each row to its top-k (or picked the token), and the host work is a few microseconds.
    """

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="llama-sampler") if threads > 1 else None

    def sample(self, ctx: Any, jobs: Sequence[tuple[SequenceSampler, int]]) -> list[int]:
        """The next token of each `(sampler, output index)`."""
        import llama_cpp

        if self._pool is None or len(jobs) < 2:
            return [sampler.sample(ctx, i) for sampler, i in jobs]
        llama_cpp.llama_get_logits_ith(ctx, jobs[0][1])  # reorders the outputs once, before the threads read
        return list(self._pool.map(lambda job: job[0].sample(ctx, job[1]), jobs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
