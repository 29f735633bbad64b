"""Per-sequence llama.cpp sampler chains, and sampling a batch's outputs with them.

Each sequence samples from its own chain (`llama_sampler_chain_init`), so sampling stays in C. Where the chain runs:
`cpu` (each chain scans the whole vocabulary on the host, chains on a few threads), `backend` (the whole chain in
llama.cpp's compute graph) or `split` (top-k in the graph, the rest on the host over those k candidates). A request
with a grammar gets a top-`GRAMMAR_TOP_K` cut in the graph in both of the last two (a grammar runs on the host only).
"""

from __future__ import annotations

import ctypes
import math
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from rag_engine.llm.base import GenerationRequest
from rag_engine.llm.grammar import grammar_sampler
from rag_engine.llm.vocab import Vocab

TOP_K = 40  # `Llama.create_completion`'s default
# Candidates a grammar request keeps from each step's logits, best first: more than TOP_K, so that when the grammar
# rejects the chain's pick, the TOP_K best tokens it allows are almost always among them (see `SequenceSampler`).
GRAMMAR_TOP_K = 64
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


def make_graph_chain(request: GenerationRequest, sampling: Sampling) -> Any:
    """The part of the request's chain that runs in llama.cpp's graph (`backend` or `split` sampling): a grammar
    request's is a top-`GRAMMAR_TOP_K` cut, whatever its temperature, since its pick must be checked on the host."""
    import llama_cpp

    if request.grammar is None:
        return make_chain(request, top_k_only=sampling == "split")
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(GRAMMAR_TOP_K))
    return chain


def free_chain(chain: Any) -> None:
    import llama_cpp

    llama_cpp.llama_sampler_free(chain)


class SequenceSampler:
    """One sequence's host-side sampling: its chain, and for a request with a grammar, the grammar checked after it.

    A grammar sampler applied first would test every one of the vocabulary's tokens at every step (30-60 ms for
    Qwen's 152k on a CPU core); as llama.cpp's own server does, the chain picks a token first and only that token is
    checked (~10 us). When the grammar rejects it, the grammar filters the `GRAMMAR_TOP_K` best candidates (the
    graph's cut with `split`/`backend` sampling, else the logits' top ones) and the chain picks again among those it
    allows. That is exactly what grammar-first sampling picks whenever enough of them are allowed (one for greedy,
    `TOP_K` for the sampling chain, whose first link is top-k): a token outside them has a lower logit than all of
    them. When too few are, the whole vocabulary is filtered if its logits are on the host; with the graph's cut
    alone (llama.cpp does not copy logits it was not asked for), the chain picks among the allowed few, or, when
    none is allowed, the grammar's closing text goes on (a capped first part allows only that: random weights get
    there, trained models hardly), or as the last resort the allowed token of lowest id is written.
    """

    def __init__(self, request: GenerationRequest, vocab: Any) -> None:
        import llama_cpp

        self.chain = make_chain(request)
        self.grammar = grammar_sampler(vocab, request.grammar) if request.grammar is not None else None
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self._enough = 1 if request.temperature <= 0 else TOP_K  # allowed candidates that make the re-pick exact
        closing = request.grammar.closing if request.grammar is not None else ""
        # the first token of each tail of the closing text: what continues it, however much of it is written
        self._closing = list(dict.fromkeys(t for k in range(len(closing)) for t in Vocab(vocab).tokenize(closing[k:])[:1]))
        # one candidate, checked in place each step: built once, since a grammar reply pays this on every token
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(self._one, 1, -1, False)
        self._one_ref = ctypes.byref(self._one_array)
        self._sample, self._apply, self._accept = (
            llama_cpp.llama_sampler_sample, llama_cpp.llama_sampler_apply, llama_cpp.llama_sampler_accept
        )
        self._cut = np.zeros(GRAMMAR_TOP_K, dtype=_TOKEN_DATA)
        self.rejections = 0  # picks the grammar refused (bench/bench_llm.py reports them)

    def sample(self, ctx: Any, i: int) -> int:
        """The next token from the context's `i`-th output (thread-safe across sequences)."""
        token = self._sample(self.chain, ctx, i)
        if self.grammar is None:
            return token
        if not self._allowed(token):
            self.rejections += 1
            token = self._resample(ctx, i)
        self._accept(self.grammar, token)
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
        one, array = self._one[0], self._one_array
        one.id, one.logit = token, 0.0
        array.size, array.selected = 1, -1
        self._apply(self.grammar, self._one_ref)
        return one.logit != -math.inf  # the grammar sets a refused token's logit to -inf

    def _resample(self, ctx: Any, i: int) -> int:
        """The chain's pick among the tokens the grammar allows: over the best candidates, else the vocabulary."""
        import llama_cpp

        logits = None
        cut_logits = llama_cpp.llama_get_sampled_logits_ith(ctx, i)
        if cut_logits:  # the graph's top-k cut: these are all the host has
            n = min(GRAMMAR_TOP_K, int(llama_cpp.llama_get_sampled_logits_count_ith(ctx, i)))
            cut = self._cut[:n]
            cut["id"] = np.ctypeslib.as_array(llama_cpp.llama_get_sampled_candidates_ith(ctx, i), shape=(n,))
            cut["logit"] = np.ctypeslib.as_array(cut_logits, shape=(n,))
        else:
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(self._n_vocab,))
            best = np.argpartition(logits, -GRAMMAR_TOP_K)[-GRAMMAR_TOP_K:]
            cut = self._cut
            cut["id"], cut["logit"] = best, logits[best]
        cut["p"] = 0.0
        allowed = self._filter(cut)
        if len(allowed) >= self._enough or (logits is None and len(allowed)):
            return self._pick(allowed)
        if logits is not None:
            data = np.zeros(self._n_vocab, dtype=_TOKEN_DATA)
            data["id"] = np.arange(self._n_vocab, dtype=np.int32)
            data["logit"] = logits
            return self._pick(self._filter(data))
        for token in self._closing:
            if self._allowed(token):
                return token
        data = np.zeros(self._n_vocab, dtype=_TOKEN_DATA)
        data["id"] = np.arange(self._n_vocab, dtype=np.int32)
        return int(self._filter(data)["id"].min())

    def _filter(self, data: np.ndarray) -> np.ndarray:
        """The candidates the grammar allows (a copy, in the same order)."""
        import llama_cpp

        data = np.ascontiguousarray(data)
        pointer = data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        candidates = llama_cpp.llama_token_data_array(pointer, len(data), -1, False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(candidates))
        return data[: candidates.size][np.isfinite(data["logit"][: candidates.size])].copy()

    def _pick(self, allowed: np.ndarray) -> int:
        import llama_cpp

        pointer = allowed.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        candidates = llama_cpp.llama_token_data_array(pointer, len(allowed), -1, False)
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
