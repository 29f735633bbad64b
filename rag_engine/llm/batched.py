"""llama.cpp in process, decoding all active requests together: continuous batching over one context.

What llama.cpp's own server does with parallel slots, through llama-cpp-python's low-level API:

- ONE `llama_context` with `n_seq_max = parallel`; each active request owns a sequence id (its slot).
- Each step builds one `llama_batch` and calls `llama_decode` once: the last sampled token of every generating
  sequence (logits on) and up to `prefill_chunk` prompt tokens of requests still reading their prompt (logits only on
  a prompt's last token). Prompts go first: while one is being read, generating sequences sit out for at most
  `max_decode_stall_s`, so questions that arrive together decode together, in full batches, to the end.
- Each sequence samples from its own llama.cpp sampler chain (`llama_sampler_chain_init`: top-k/top-p/min-p/
  temperature/dist, or greedy), so sampling stays in C; `llama_sampler_sample(chain, ctx, i)` reads the i-th output.
  Where the chain runs: `cpu` (each chain scans the whole 152k vocabulary on the host, chains on a few threads),
  `backend` (the whole chain in llama.cpp's compute graph) or `split`, the default on a GPU (top-k in the graph, the
  rest on the host over those k candidates: no 152k-entry scans on the host and no full logits copied back).
- The KV cache has one stream per sequence (`kv_unified=False`): each sequence attends over its own cells only.
  llama.cpp runs one micro-batch per run of consecutive sequence ids, so ids are kept contiguous: when a request
  ends, the highest active sequence moves into its id (`_compact`).
- A finished or cancelled sequence leaves the KV cache with `llama_memory_seq_rm` and its id is reused.
- New requests are admitted between steps. Text is decoded incrementally (a UTF-8 character split across tokens
  waits for its last byte). Deltas reach the event loop in one `call_soon_threadsafe` for all sequences, at most
  every `flush_interval_s` (30 ms; a first token or an end goes at once), never once per token.

`timings` says where the model thread's time goes (bench/bench_llm.py prints it); bench/README.md has the figures.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rag_engine.errors import InvalidQuestion
from rag_engine.llm.base import BackendInfo, ChatMessage, GenerationRequest, LLMBackend
from rag_engine.llm.llama_cpp_backend import (
    ChatTemplate,
    LoopBridge,
    default_threads,
    gpu_layers,
    runs_on,
)

logger = logging.getLogger(__name__)

_END = object()
_CLOSED = object()
_TOP_K = 40  # `Llama.create_completion`'s default


class BackendClosed(RuntimeError):
    """The backend was closed while this request was still being generated."""


class _Sequence:
    """One request in the batch. Touched by the model thread only, except `cancelled` (set from the loop)."""

    __slots__ = (
        "backend_sampler",
        "cancelled",
        "decoder",
        "first_token_at",
        "held",
        "i_batch",
        "last_token",
        "loop",
        "max_stop",
        "max_tokens",
        "n_generated",
        "n_past",
        "n_read",
        "prompt",
        "queue",
        "request",
        "sampler",
        "seq_id",
        "stop",
        "submitted",
    )

    def __init__(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = False
        self.seq_id = -1
        self.prompt: list[int] = []
        self.n_read = 0  # prompt tokens already decoded
        self.n_past = 0  # next position in this sequence
        self.sampler: Any = None
        self.backend_sampler: Any = None  # the part of the chain that runs in the graph (`backend`/`split` sampling)
        self.last_token = -1  # sampled but not yet decoded
        self.n_generated = 0
        self.max_tokens = request.max_tokens
        self.i_batch = -1  # index of this sequence's output in the current batch, -1 if none
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.held = ""  # decoded text held back because it may be the start of a stop string
        self.stop = tuple(s for s in request.stop if s)
        self.max_stop = max((len(s) for s in self.stop), default=0)
        self.submitted = time.perf_counter()
        self.first_token_at = 0.0

    @property
    def prefilling(self) -> bool:
        return self.n_read < len(self.prompt)


@dataclass
class StepTimings:
    """Where the model thread's time goes, summed over steps (seconds); for benchmarks, cheap enough to keep on."""

    steps: int = 0
    build: float = 0.0  # filling the llama_batch
    decode: float = 0.0  # the llama_decode call (graph build + launch; on a GPU it returns before the work ends)
    wait: float = 0.0  # llama_synchronize: waiting for the device to finish the step
    sample: float = 0.0  # all sequences' sampler chains
    deliver: float = 0.0  # detokenizing, stop strings, queueing deltas
    between: float = 0.0  # admitting, reaping, handing deltas to the event loop

    def per_step_ms(self) -> dict[str, float]:
        n = max(1, self.steps)
        phases = ("build", "decode", "wait", "sample", "deliver", "between")
        return {name: 1e3 * getattr(self, name) / n for name in phases}


Sampling = Literal["cpu", "backend", "split"]


class BatchedLlamaBackend(LLMBackend):
    """Up to `parallel` requests decoded together in one llama.cpp context, on one dedicated model thread."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        parallel: int = 8,
        n_ctx: int = 8192,
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
        flash_attn: bool = True,
        prefill_chunk: int | None = None,
        kv_unified: bool = False,
        sampling: Sampling | Literal["auto"] = "auto",
        sampler_threads: int | None = None,
        max_decode_stall_s: float = 0.25,
        flush_interval_s: float = 0.03,
        model_name: str | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.model_path = Path(model_path)
        self.model_name = model_name or self.model_path.name
        self.slots = parallel
        self.parallel = parallel
        self.n_ctx = n_ctx  # per request
        self.n_gpu_layers = gpu_layers(n_gpu_layers)
        self.n_threads = n_threads
        self.flash_attn = flash_attn
        on_gpu = self.n_gpu_layers != 0
        # A GPU reads a 2,048-token chunk in ~0.1 s; a CPU needs seconds for one, which would stall every stream.
        self.prefill_chunk = max(1, prefill_chunk or (2048 if on_gpu else 512))
        self.kv_unified = kv_unified
        if sampling == "auto":
            sampling = "split" if on_gpu else "cpu"  # a CPU backend's top-k is no cheaper than the host chain's
        if sampling not in ("cpu", "backend", "split"):
            raise ValueError("sampling is 'auto', 'cpu', 'backend' or 'split'")
        self.sampling: Sampling = sampling
        self.max_decode_stall_s = max_decode_stall_s
        self._held_since: float | None = None  # when decoding sequences were last held back for prompt reading
        cores = os.cpu_count() or 1
        self.sampler_threads = sampler_threads if sampler_threads is not None else max(1, min(parallel, cores // 2))
        self._sample_pool: ThreadPoolExecutor | None = None
        self.flush_interval_s = flush_interval_s
        self._last_flush = 0.0
        self._urgent = False  # a first token, an end or an error is waiting: send it after this step
        self._inbox: deque[_Sequence] = deque()  # loop → model thread
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._load_lock = asyncio.Lock()
        self._model: Any = None
        self._ctx: Any = None
        self._mem: Any = None
        self._vocab: Any = None
        self._batch: Any = None
        self._n_batch = 0
        self._n_layer = 0
        self._template: ChatTemplate | None = None
        # model-thread state
        self._active: list[_Sequence] = []
        self._free_ids: list[int] = []
        self._bridge = LoopBridge()
        self._piece = ctypes.create_string_buffer(256)
        self.timings = StepTimings()

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        async with self._load_lock:
            if self._thread is not None:
                return
            await asyncio.to_thread(self._load)
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="llama-batched", daemon=True)
            self._thread.start()

    def _load(self) -> None:
        import llama_cpp

        t0 = time.perf_counter()
        _quiet_llama_logs()
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        # "all layers" spelled as `Llama` spells it
        mparams.n_gpu_layers = 0x7FFFFFFF if self.n_gpu_layers < 0 else self.n_gpu_layers
        model = llama_cpp.llama_model_load_from_file(str(self.model_path).encode(), mparams)
        if not model:
            raise RuntimeError(f"llama.cpp could not load {self.model_path}")
        threads, batch_threads = default_threads(self.n_threads)
        self._n_batch = self.prefill_chunk + self.parallel
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = self.n_ctx * self.parallel
        cparams.n_batch = self._n_batch
        cparams.n_ubatch = self._n_batch  # one step = one micro-batch (see the module docstring)
        cparams.n_seq_max = self.parallel
        cparams.n_threads = threads
        cparams.n_threads_batch = batch_threads
        cparams.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.kv_unified = self.kv_unified
        cparams.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise RuntimeError("llama.cpp could not create a context (out of memory? lower n_ctx or parallel)")
        self._model, self._ctx = model, ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._n_layer = int(llama_cpp.llama_model_n_layer(model))
        template = llama_cpp.llama_model_chat_template(model, None)
        self._template = ChatTemplate(
            template.decode("utf-8") if template else None,
            bos_token=self._token_text(llama_cpp.llama_vocab_bos(self._vocab)),
            eos_token=self._token_text(llama_cpp.llama_vocab_eos(self._vocab)),
        )
        self._free_ids = list(range(self.parallel))
        if self.sampling == "cpu" and self.sampler_threads > 1 and self.parallel > 1:
            self._sample_pool = ThreadPoolExecutor(self.sampler_threads, thread_name_prefix="llama-sampler")
        logger.info(
            "loaded %s in %.1fs: %d slots × %d tokens, %s",
            self.model_name, time.perf_counter() - t0, self.parallel, self.n_ctx, self.info().runs_on,
        )

    async def close(self) -> None:
        async with self._load_lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._stopping = True
                self._wake.set()
                await asyncio.to_thread(thread.join)
            await asyncio.to_thread(self._free)

    def _free(self) -> None:
        import llama_cpp

        if self._sample_pool is not None:
            self._sample_pool.shutdown(wait=True)
            self._sample_pool = None

        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    @property
    def steps(self) -> int:
        """llama_decode calls so far (tests, benchmarks)."""
        return self.timings.steps

    # --- what the worker uses -----------------------------------------------------------------------------------------
    def info(self) -> BackendInfo:
        return BackendInfo(
            backend="llama_cpp_batched",
            model=self.model_name,
            runs_on=runs_on(self.n_gpu_layers, self._n_layer),
            n_ctx=self.n_ctx,
            parallel=self.parallel,
        )

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        import llama_cpp

        if self._vocab is None:
            raise RuntimeError("the model is not loaded: await start() first")
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), tokens, capacity, special, special)
        if n < 0:  # cannot happen for byte-level BPE (≤ 1 token a byte), but the API allows it
            capacity = -n
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), tokens, capacity, special, special)
        return list(tokens[:n])

    def count_tokens(self, text: str) -> int:
        if self._vocab is None:
            return super().count_tokens(text)
        return len(self.tokenize(text))

    def render(self, messages: Sequence[ChatMessage]) -> str:
        if self._template is None:
            raise RuntimeError("the model is not loaded: await start() first")
        return self._template.render(messages)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if self._thread is None:
            raise RuntimeError("the model is not loaded: await start() first")
        seq = _Sequence(request, asyncio.get_running_loop())
        seq.prompt = self.tokenize(self.render(request.messages), special=True)
        if len(seq.prompt) + 1 > self.n_ctx:
            raise InvalidQuestion(
                f"The question and its sources take {len(seq.prompt)} tokens, more than the model's "
                f"{self.n_ctx}-token context. Ask a shorter question."
            )
        seq.max_tokens = min(request.max_tokens, self.n_ctx - len(seq.prompt))
        self._inbox.append(seq)
        self._wake.set()
        try:
            while True:
                item = await seq.queue.get()
                if item is _END:
                    return
                if item is _CLOSED:
                    raise BackendClosed("the model was shut down")
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            seq.cancelled = True  # a no-op once finished; else the model thread frees the slot before its next step
            self._wake.set()

    # --- the model thread ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stopping:
                t0 = time.perf_counter()
                self._admit()
                self._reap()
                self.timings.between += time.perf_counter() - t0
                if not self._active:
                    self._bridge.flush()
                    self._wake.wait()
                    self._wake.clear()
                    continue
                self._step()
                t0 = time.perf_counter()
                self._flush_if_due()
                self.timings.between += time.perf_counter() - t0
        except BaseException:  # never leave streams hanging on a dead thread
            logger.exception("the batched llama.cpp loop failed")
            for seq in self._active:
                self._bridge.put(seq.loop, seq.queue, RuntimeError("the model loop failed; see the log"))
            raise
        finally:
            for seq in [*self._active, *self._inbox]:
                self._bridge.put(seq.loop, seq.queue, _CLOSED)
            for seq in list(self._active):
                self._release(seq)
            self._inbox.clear()
            self._bridge.flush()

    def _flush_if_due(self) -> None:
        """Hand the deltas to the event loop at most every `flush_interval_s` (first tokens and ends at once).

        Each hand-over wakes the loop, whose Python work then competes for the GIL with this thread right when it
        should launch the next step; on a fast GPU a step is a few milliseconds, so waking the loop for every step
        measurably slows decoding, while a chat display gains nothing from updates faster than ~30 per second.
        """
        now = time.perf_counter()
        if self._urgent or now - self._last_flush >= self.flush_interval_s:
            self._bridge.flush()
            self._last_flush = now
            self._urgent = False

    def _admit(self) -> None:
        import llama_cpp

        while self._inbox and self._free_ids:
            seq = self._inbox.popleft()
            if seq.cancelled:
                continue
            seq.seq_id = self._free_ids.pop(0)
            seq.sampler = self._make_sampler(seq.request, llama_cpp)
            if self.sampling != "cpu":
                seq.backend_sampler = self._make_sampler(seq.request, llama_cpp, top_k_only=self.sampling == "split")
                if not llama_cpp.llama_set_sampler(self._ctx, seq.seq_id, seq.backend_sampler):
                    logger.warning("this llama.cpp cannot sample on its backend; sampling on the CPU")
                    llama_cpp.llama_sampler_free(seq.backend_sampler)
                    seq.backend_sampler = None
                    self.sampling = "cpu"
            self._active.append(seq)

    def _reap(self) -> None:
        for seq in [s for s in self._active if s.cancelled]:
            self._release(seq)

    @staticmethod
    def _make_sampler(request: GenerationRequest, llama_cpp: Any, *, top_k_only: bool = False) -> Any:
        """The request's chain; `top_k_only`: just its first link, for the graph (greedy stays whole there)."""
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if request.temperature <= 0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            # The chain `Llama.create_completion` builds with its defaults, so both backends sample alike.
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(_TOP_K))
            if top_k_only:
                return chain
            seed = request.seed if request.seed is not None else random.getrandbits(32)
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(0.95, 1))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(0.05, 1))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(request.temperature))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def _release(self, seq: _Sequence) -> None:
        """Free the sequence's KV cells, sampler and id."""
        import llama_cpp

        if seq in self._active:
            self._active.remove(seq)
        if seq.backend_sampler is not None:
            llama_cpp.llama_set_sampler(self._ctx, seq.seq_id, None)
            llama_cpp.llama_sampler_free(seq.backend_sampler)
            seq.backend_sampler = None
        if seq.sampler is not None:
            llama_cpp.llama_sampler_free(seq.sampler)
            seq.sampler = None
        if seq.seq_id >= 0:
            llama_cpp.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
            self._free_ids.append(seq.seq_id)
            seq.seq_id = -1
            if not self.kv_unified:
                self._compact()
            self._free_ids.sort()

    def _compact(self) -> None:
        """Keep the active sequence ids contiguous from 0 (per-sequence KV only).

        With one KV stream per sequence llama.cpp cuts a batch into one micro-batch (one more graph run) per run of
        consecutive ids, so a finished request in the middle would slow every later step. The highest active
        sequence moves into the lowest free id instead: a copy of its KV stream, done on the device at the next
        decode (tens of microseconds).
        """
        import llama_cpp

        while self._active and self._free_ids:
            low = min(self._free_ids)
            top = max(self._active, key=lambda s: s.seq_id)
            if top.seq_id < low:
                return
            old = top.seq_id
            llama_cpp.llama_memory_seq_cp(self._mem, old, low, -1, -1)
            llama_cpp.llama_memory_seq_rm(self._mem, old, -1, -1)
            if top.backend_sampler is not None:
                # a chain is bound to its sequence's graph buffers once: the new id gets a new chain (top-k has no
                # state; a whole chain on the backend restarts its random stream)
                llama_cpp.llama_set_sampler(self._ctx, old, None)
                llama_cpp.llama_sampler_free(top.backend_sampler)
                top.backend_sampler = self._make_sampler(top.request, llama_cpp, top_k_only=self.sampling == "split")
                llama_cpp.llama_set_sampler(self._ctx, low, top.backend_sampler)
            top.seq_id = low
            self._free_ids.remove(low)
            self._free_ids.append(old)

    def _step(self) -> None:
        """One `llama_decode` for every active sequence, then sample each sequence that has an output."""
        import llama_cpp

        timings = self.timings
        t_start = time.perf_counter()
        batch = self._batch
        n = 0
        decoding = self._decoding_this_step(t_start)
        # Decoding sequences first, in seq-id order; then prompt chunks, oldest request first.
        for seq in decoding:
            batch.token[n] = seq.last_token
            batch.pos[n] = seq.n_past
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.seq_id
            batch.logits[n] = 1
            seq.i_batch = n
            n += 1
        budget = min(self.prefill_chunk, self._n_batch - n)
        reading: list[tuple[_Sequence, int]] = []
        for seq in self._active:
            if budget <= 0:
                break
            if not seq.prefilling:
                continue
            take = min(len(seq.prompt) - seq.n_read, budget)
            start = seq.n_read
            for j in range(take):
                batch.token[n] = seq.prompt[start + j]
                batch.pos[n] = start + j
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq.seq_id
                batch.logits[n] = 0
                n += 1
            finishes = start + take == len(seq.prompt)
            if finishes:
                batch.logits[n - 1] = 1
            seq.i_batch = n - 1 if finishes else -1
            reading.append((seq, take))
            budget -= take
        batch.n_tokens = n

        t_built = time.perf_counter()
        rc = llama_cpp.llama_decode(self._ctx, batch)
        t_decoded = time.perf_counter()
        if rc != 0:
            self._decode_failed(rc, decoding, [s for s, _ in reading])
            return
        llama_cpp.llama_synchronize(self._ctx)
        t_synced = time.perf_counter()

        for seq in decoding:
            seq.n_past += 1
        for seq, take in reading:
            seq.n_read += take
            seq.n_past += take
        outputs = [s for s in [*decoding, *(s for s, _ in reading)] if s.i_batch >= 0]
        tokens = self._sample(outputs)
        t_sampled = time.perf_counter()
        for seq, token in zip(outputs, tokens):
            seq.i_batch = -1
            self._on_token(seq, token)
        timings.steps += 1
        timings.build += t_built - t_start
        timings.decode += t_decoded - t_built
        timings.wait += t_synced - t_decoded
        timings.sample += t_sampled - t_synced
        timings.deliver += time.perf_counter() - t_sampled

    def _decoding_this_step(self, now: float) -> list[_Sequence]:
        """The generating sequences that take a step now, in seq-id order: none while prompts wait to be read.

        Prompts are read first: sequences that start together then decode together to the end, in full batches (a
        burst of 8 questions finishes as soon as llama-batched-bench's 8 sequences). Generating streams wait at most
        `max_decode_stall_s` for that (plus one prompt chunk), then a step carries both.
        """
        decoding = sorted((s for s in self._active if not s.prefilling), key=lambda s: s.seq_id)
        if not decoding or len(decoding) == len(self._active):
            self._held_since = None
            return decoding
        if self._held_since is None:
            self._held_since = now
        if now - self._held_since < self.max_decode_stall_s:
            return []
        self._held_since = None
        return decoding

    def _sample(self, outputs: list[_Sequence]) -> list[int]:
        """Each sequence's next token from its own llama.cpp sampler chain.

        On the CPU each chain scans the whole vocabulary (0.1-0.3 ms for Qwen's 152k tokens), a large share of a GPU
        decoding step; the chains are independent and ctypes releases the GIL, so they run on a few threads. The
        context's one-time output reordering happens first, on this thread. With `split` or `backend` sampling the
        graph already cut each row to its top-k (or picked the token), and the host work is a few microseconds.
        """
        import llama_cpp

        ctx = self._ctx
        if self._sample_pool is None or len(outputs) < 2 or self.sampling != "cpu":
            return [llama_cpp.llama_sampler_sample(s.sampler, ctx, s.i_batch) for s in outputs]
        llama_cpp.llama_get_logits_ith(ctx, outputs[0].i_batch)  # reorders the outputs once, before the threads read
        return list(self._sample_pool.map(lambda s: llama_cpp.llama_sampler_sample(s.sampler, ctx, s.i_batch), outputs))

    def _decode_failed(self, rc: int, decoding: list[_Sequence], reading: list[_Sequence]) -> None:
        # rc 1: no KV room (cannot happen within the per-request limit, but never loop on it); < 0: fatal.
        logger.error("llama_decode returned %d for %d decoding + %d reading sequences", rc, len(decoding), len(reading))
        victims = reading if rc == 1 and reading else [*decoding, *reading]
        self._urgent = True
        for seq in victims:
            self._bridge.put(seq.loop, seq.queue, RuntimeError(f"llama.cpp could not decode this request (code {rc})"))
            self._release(seq)

    def _on_token(self, seq: _Sequence, token: int) -> None:
        import llama_cpp

        if seq.n_generated == 0:
            seq.first_token_at = time.perf_counter()
            self._urgent = True
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(seq)
            return
        seq.n_generated += 1
        seq.last_token = token
        text = seq.decoder.decode(self._token_bytes(token))
        if text and self._emit(seq, text):
            return
        if seq.n_generated >= seq.max_tokens or seq.n_past + 1 >= self.n_ctx:
            self._finish(seq)

    def _emit(self, seq: _Sequence, text: str) -> bool:
        """Send text, holding back a possible start of a stop string; True when a stop string ended the reply."""
        if not seq.stop:
            self._bridge.put(seq.loop, seq.queue, text)
            return False
        held = seq.held + text
        cut = min((i for i in (held.find(s) for s in seq.stop) if i >= 0), default=-1)
        if cut >= 0:
            if cut:
                self._bridge.put(seq.loop, seq.queue, held[:cut])
            seq.held = ""
            self._finish(seq, flush_decoder=False)
            return True
        keep = 0
        for size in range(min(seq.max_stop - 1, len(held)), 0, -1):
            if any(s.startswith(held[-size:]) for s in seq.stop):
                keep = size
                break
        ready, seq.held = (held[:-keep], held[-keep:]) if keep else (held, "")
        if ready:
            self._bridge.put(seq.loop, seq.queue, ready)
        return False

    def _finish(self, seq: _Sequence, *, flush_decoder: bool = True) -> None:
        self._urgent = True
        tail = seq.held + (seq.decoder.decode(b"", final=True) if flush_decoder else "")
        if tail:
            self._bridge.put(seq.loop, seq.queue, tail)
        self._bridge.put(seq.loop, seq.queue, _END)
        self._release(seq)

    def _token_bytes(self, token: int) -> bytes:
        import llama_cpp

        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        if n < 0:  # longer than the buffer: grow it once
            self._piece = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:n]

    def _token_text(self, token: int) -> str:
        import llama_cpp

        if token < 0:
            return ""
        text = llama_cpp.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", errors="replace") if text else ""


def _quiet_llama_logs() -> None:
    """llama.cpp logs every load detail to stderr; keep errors only, as `Llama(verbose=False)` does."""
    try:
        from llama_cpp._logger import set_verbose
    except ImportError:  # a llama-cpp-python without it just stays chatty
        return
    set_verbose(False)
