"""llama.cpp in process, decoding all active requests together: continuous batching over one context.

What llama.cpp's own server does with parallel slots, through llama-cpp-python's low-level API:

- ONE `llama_context` with `n_seq_max = parallel`; each active request owns a sequence id (its slot).
- Each step builds one `llama_batch` and calls `llama_decode` once: the last sampled token of every generating
  sequence (logits on) and up to `prefill_chunk` prompt tokens of requests still reading their prompt
  (`rag_engine.llm.scheduling`: prompts first, generating streams wait at most `max_decode_stall_s`).
- Each sequence samples from its own llama.cpp sampler chain (`rag_engine.llm.sampling`), so sampling stays in C;
  `split`, the default on a GPU, runs top-k in the graph and the rest on the host over those k candidates.
- The KV cache has one stream per sequence (`kv_unified=False`): each sequence attends over its own cells only.
  llama.cpp runs one micro-batch per run of consecutive sequence ids, so ids are kept contiguous: when a request
  ends, the highest active sequence moves into its id (`rag_engine.llm.slots`).
- A finished or cancelled sequence leaves the KV cache with `llama_memory_seq_rm` and its id is reused.
- Speculative decoding (`draft_tokens` > 0): a generating sequence whose last tokens also occur earlier in its prompt
  or reply (answers quote their sources) decodes the tokens that followed them there as a draft, in the same step,
  logits on for each (`rag_engine.llm.speculative`); its sampler then samples row after row while the draft holds,
  so one step may give several tokens, each exactly the token a step of its own would have given (`_verify`).
- New requests are admitted between steps. Text is decoded incrementally (a UTF-8 character split across tokens
  waits for its last byte). Deltas reach the event loop in one `call_soon_threadsafe` for all sequences, at most
  every `flush_interval_s` (30 ms; a first token or an end goes at once), never once per token.

`timings` says where the model thread's time goes (bench/bench_llm.py prints it); bench/README.md has the figures.

About 400 lines after the split (scheduling, sampling, slots, vocab live in their own modules): what remains is the
one decode loop and its bookkeeping, which share the context's state step by step.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

from rag_engine.errors import InvalidQuestion
from rag_engine.llm.base import BackendInfo, ChatMessage, GenerationRequest, LLMBackend
from rag_engine.llm.batch_sequence import BatchSequence
from rag_engine.llm.chat_template import ChatTemplate
from rag_engine.llm.grammar import Closer
from rag_engine.llm.llama_common import LoopBridge, gpu_layers, load_model, new_context, runs_on
from rag_engine.llm.llama_log import route_llama_logs
from rag_engine.llm.sampling import BatchSampler, Sampling
from rag_engine.llm.scheduling import PromptsFirst, StepTimings, fill_batch
from rag_engine.llm.slots import Slots
from rag_engine.llm.speculative import PromptLookup
from rag_engine.llm.vocab import Vocab

logger = logging.getLogger(__name__)

_END = object()
_CLOSED = object()


class BackendClosed(RuntimeError):
    """The backend was closed while this request was still being generated."""


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
        draft_tokens: int = 0,
        model_name: str | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        if draft_tokens < 0:
            raise ValueError("draft_tokens must be 0 (no speculative decoding) or more")
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
        self._sampling: Sampling = sampling
        self._schedule = PromptsFirst(max_decode_stall_s)
        self.draft_tokens = draft_tokens  # most prompt-lookup draft tokens a sequence decodes in one step; 0: off
        cores = os.cpu_count() or 1
        self.sampler_threads = sampler_threads if sampler_threads is not None else max(1, min(parallel, cores // 2))
        self._sampler: BatchSampler | None = None
        self.flush_interval_s = flush_interval_s
        self._last_flush = 0.0
        self._urgent = False  # a first token, an end or an error is waiting: send it after this step
        self._ending: list[BatchSequence] = []  # finished in this step's sampling; released once it is done
        self._inbox: deque[BatchSequence] = deque()  # loop → model thread
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._load_lock = asyncio.Lock()
        self._model: Any = None
        self._ctx: Any = None
        self.vocab: Vocab | None = None
        self._batch: Any = None
        self._n_batch = 0
        self._n_layer = 0
        self._template: ChatTemplate | None = None
        # model-thread state
        self._slots: Slots = None  # type: ignore[assignment]  # set by _load, before the model thread starts
        self._bridge = LoopBridge()
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
        route_llama_logs()
        model = load_model(str(self.model_path), self.n_gpu_layers)
        if self.draft_tokens and (llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model)):
            logger.warning("%s keeps a recurrent state: no speculative decoding", self.model_name)
            self.draft_tokens = 0  # a rejected draft could not be taken back out of its state
        self._n_batch = self.prefill_chunk + self.parallel * (1 + self.draft_tokens)
        ctx = new_context(
            model,
            n_ctx=self.n_ctx * self.parallel,
            n_batch=self._n_batch,  # one step = one micro-batch (see the module docstring)
            n_seq_max=self.parallel,
            n_threads=self.n_threads,
            flash_attn=self.flash_attn,
            kv_unified=self.kv_unified,
            outputs_per_seq=1 + self.draft_tokens,
        )
        self._model, self._ctx = model, ctx
        self.vocab = vocab = Vocab.of_model(model)
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._n_layer = int(llama_cpp.llama_model_n_layer(model))
        template = llama_cpp.llama_model_chat_template(model, None)
        self._template = ChatTemplate(
            template.decode("utf-8") if template else None, bos_token=vocab.bos_text, eos_token=vocab.eos_text
        )
        self._slots = Slots(ctx, vocab.ptr, self.parallel, kv_unified=self.kv_unified, sampling=self._sampling)
        # threads for chains that scan the whole vocabulary: all of them on `cpu`, grammar requests on the others
        self._sampler = BatchSampler(self.sampler_threads if self.parallel > 1 else 1)
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

        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            llama_cpp.llama_model_free(self._model)
            self._model = None
            self.vocab = None

    @property
    def sampling(self) -> Sampling:
        """Where the sampler chains run (`cpu` once llama.cpp refused a graph-side chain)."""
        return self._slots.sampling if self._slots is not None else self._sampling

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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
        if self.vocab is None:
            raise RuntimeError("the model is not loaded: await start() first")
        return self.vocab.tokenize(text, add_special=special, parse_special=special)

    def count_tokens(self, text: str) -> int:
        if self.vocab is None:
            return super().count_tokens(text)
        return len(self.tokenize(text))

    def render(self, messages: Sequence[ChatMessage]) -> str:
        if self._template is None:
            raise RuntimeError("the model is not loaded: await start() first")
        return self._template.render(messages)

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt as the model reads it: the template's markers as control tokens, all content as plain text."""
        if self._template is None or self.vocab is None:
            raise RuntimeError("the model is not loaded: await start() first")
        return self._template.tokens(messages, self.vocab)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if self._thread is None:
            raise RuntimeError("the model is not loaded: await start() first")
        seq = BatchSequence(request, asyncio.get_running_loop())
        seq.prompt = self.prompt_tokens(request.messages)
        if len(seq.prompt) + 1 > self.n_ctx:
            raise InvalidQuestion(
                f"The question and its sources take {len(seq.prompt)} tokens, more than the model's "
                f"{self.n_ctx}-token context. Ask a shorter question."
            )
        seq.max_tokens = min(request.max_tokens, self.n_ctx - len(seq.prompt))
        if request.grammar is not None and self.vocab is not None:
            seq.closer = Closer(request.grammar, self.vocab.tokenize, seq.max_tokens)
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
                if not self._slots.active:
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
            for seq in self._slots.active:
                self._bridge.put(seq.loop, seq.queue, RuntimeError("the model loop failed; see the log"))
            raise
        finally:
            for seq in [*self._slots.active, *self._inbox]:
                self._bridge.put(seq.loop, seq.queue, _CLOSED)
            for seq in list(self._slots.active):
                self._slots.release(seq)
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
        slots = self._slots
        while self._inbox and slots.free_ids:
            seq = self._inbox.popleft()
            if not seq.cancelled:
                slots.admit(seq)
                if self.draft_tokens and self._may_draft(seq):
                    seq.lookup = PromptLookup()

    def _may_draft(self, seq: BatchSequence) -> bool:
        """A chain that samples in the graph must have no state (no random stream) to sample a draft's rows: the
        graph samples every row, also those after a rejection."""
        return seq.backend_sampler is None or self.sampling != "backend" or seq.request.temperature <= 0

    def _reap(self) -> None:
        for seq in [s for s in self._slots.active if s.cancelled]:
            self._slots.release(seq)

    def _step(self) -> None:
        """One `llama_decode` for every active sequence, then sample each sequence that has an output."""
        import llama_cpp

        timings = self.timings
        t_start = time.perf_counter()
        decoding = self._schedule.decoding(self._slots.active, t_start)
        for seq in decoding:
            seq.draft = self._draft(seq)
            timings.drafted += len(seq.draft)
        rows = len(decoding) + sum(len(seq.draft) for seq in decoding)
        budget = min(self.prefill_chunk, self._n_batch - rows)
        reading = fill_batch(self._batch, decoding, self._slots.active, budget)

        t_built = time.perf_counter()
        rc = llama_cpp.llama_decode(self._ctx, self._batch)
        t_decoded = time.perf_counter()
        if rc != 0:
            self._decode_failed(rc, decoding, [s for s, _ in reading])
            return
        llama_cpp.llama_synchronize(self._ctx)
        t_synced = time.perf_counter()

        for seq in decoding:
            seq.n_past += 1
        for seq, take in reading:
            if seq.lookup is not None:
                seq.lookup.extend(seq.prompt[seq.n_read : seq.n_read + take])
            seq.n_read += take
            seq.n_past += take
        outputs = [s for s in [*decoding, *(s for s, _ in reading)] if s.i_batch >= 0]
        self._verify(outputs)
        t_released = time.perf_counter()
        for seq in self._ending:
            self._slots.release(seq)
        self._ending.clear()
        timings.steps += 1
        timings.build += t_built - t_start
        timings.decode += t_decoded - t_built
        timings.wait += t_synced - t_decoded
        timings.deliver += time.perf_counter() - t_released

    def _draft(self, seq: BatchSequence) -> list[int]:
        """The sequence's draft for this step: no more tokens than its reply and its context can still take."""
        if seq.lookup is None:
            return []
        room = min(self.draft_tokens, seq.max_tokens - seq.n_generated - 1, self.n_ctx - 2 - seq.n_past)
        return seq.lookup.draft(room)

    def _verify(self, outputs: list[BatchSequence]) -> None:
        """Sample each output and hand its token on; a sequence with a draft goes on to its next row while the draft
        holds.

        Row j of a draft was decoded after the draft's first j tokens; while those equal the tokens sampled, row j
        is exactly what a step of its own would have sampled from (same tokens before it, same chain, the same
        forced closing token), and the chain and grammar see each kept token once, in order. So any chain, greedy or
        seeded, gives the reply it gives without drafts (up to the float rounding that a batch's shape already
        moves: a near-tie can flip, as with a different set of concurrent requests). Sampled chains need no
        rejection sampling for that: a draft only chooses which rows are computed, never which token is kept.
        The first token that differs from the draft is kept too
        (every step gives at least one token); the draft's cells after it leave the KV cache. Stop conditions are
        checked token by token (`_on_token`): nothing is handed on past an end.
        """
        import llama_cpp

        timings = self.timings
        pending = outputs
        while pending:
            t0 = time.perf_counter()
            tokens = self._sample(pending)
            t_sampled = time.perf_counter()
            going: list[BatchSequence] = []
            for seq, token in zip(pending, tokens):
                draft = seq.draft
                self._on_token(seq, token)
                if seq.finished:  # its cells all go when the slot is released, after this step
                    seq.draft, seq.i_batch = [], -1
                elif draft and token == draft[0]:
                    del draft[0]  # already decoded, with its logits one row on
                    timings.accepted += 1
                    seq.n_past += 1
                    seq.i_batch += 1
                    going.append(seq)
                else:
                    if draft and not llama_cpp.llama_memory_seq_rm(self._slots.mem, seq.seq_id, seq.n_past, -1):
                        raise RuntimeError("llama.cpp could not drop a rejected draft from the KV cache")
                    seq.draft, seq.i_batch = [], -1
            timings.sample += t_sampled - t0
            timings.deliver += time.perf_counter() - t_sampled
            pending = going

    def _sample(self, outputs: list[BatchSequence]) -> list[int]:
        """Each output's next token: the token its grammar's closing text needs now (its chain still accepts it, so
        its grammar follows), or one from its chain: over the graph's top-k on this thread, over the whole
        vocabulary on the sampler threads."""
        assert self._sampler is not None
        refused = sum(s.sampler.rejections for s in outputs)
        tokens = {id(s): s.forced_token() for s in outputs}
        self.timings.sampled += sum(token is None for token in tokens.values())
        on_host: list[BatchSequence] = []
        for seq in outputs:
            token = tokens[id(seq)]
            if token is not None:
                seq.sampler.accept(token)
            elif seq.backend_sampler is not None:
                tokens[id(seq)] = seq.sampler.sample(self._ctx, seq.i_batch)
            else:
                on_host.append(seq)
        sampled = self._sampler.sample(self._ctx, [(s.sampler, s.i_batch) for s in on_host])
        tokens.update((id(s), token) for s, token in zip(on_host, sampled))
        self.timings.refused += sum(s.sampler.rejections for s in outputs) - refused
        return [tokens[id(s)] for s in outputs]

    def _decode_failed(self, rc: int, decoding: list[BatchSequence], reading: list[BatchSequence]) -> None:
        # rc 1: no KV room (cannot happen within the per-request limit, but never loop on it); < 0: fatal.
        logger.error("llama_decode returned %d for %d decoding + %d reading sequences", rc, len(decoding), len(reading))
        victims = reading if rc == 1 and reading else [*decoding, *reading]
        self._urgent = True
        for seq in victims:
            self._bridge.put(seq.loop, seq.queue, RuntimeError(f"llama.cpp could not decode this request (code {rc})"))
            self._slots.release(seq)

    def _on_token(self, seq: BatchSequence, token: int) -> None:
        assert self.vocab is not None
        if seq.n_generated == 0:
            seq.first_token_at = time.perf_counter()
            self._urgent = True
        if self.vocab.is_eog(token):
            self._finish(seq)
            return
        seq.n_generated += 1
        seq.last_token = token
        if seq.lookup is not None:
            seq.lookup.extend((token,))
        text = seq.decoder.decode(self.vocab.token_bytes(token))
        if text and seq.closer is not None:
            seq.closer.saw(text)
        if text:
            ready, stopped = seq.take_text(text)
            if ready:
                self._bridge.put(seq.loop, seq.queue, ready)
            if stopped:
                self._finish(seq, flush_decoder=False)
                return
        if seq.n_generated >= seq.max_tokens or seq.n_past + 1 >= self.n_ctx:
            self._finish(seq)

    def _finish(self, seq: BatchSequence, *, flush_decoder: bool = True) -> None:
        """Send the end now; the slot goes after the step's sampling (a release may move another sequence's id and
        graph-side chain while its draft rows are still being sampled)."""
        self._urgent = True
        seq.finished = True
        tail = seq.tail(flush_decoder=flush_decoder)
        if tail:
            self._bridge.put(seq.loop, seq.queue, tail)
        self._bridge.put(seq.loop, seq.queue, _END)
        self._ending.append(seq)
