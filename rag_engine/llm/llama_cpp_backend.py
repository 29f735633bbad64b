"""llama.cpp in process, one request at a time, through llama-cpp-python's plain `Llama` (the serial fallback).

`Settings.batched=False` selects it. What it shares with the batched backend lives in `llama_common`,
`chat_template`, `vocab` and `llama_log`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rag_engine.llm.base import BackendInfo, ChatMessage, GenerationRequest, LLMBackend
from rag_engine.llm.chat_template import ChatTemplate
from rag_engine.llm.grammar import Closer, closing_processor
from rag_engine.llm.llama_common import LoopBridge, default_threads, gpu_layers, runs_on
from rag_engine.llm.llama_log import route_llama_logs
from rag_engine.llm.vocab import Vocab

logger = logging.getLogger(__name__)

_END = object()


class LlamaCppBackend(LLMBackend):
    """One `llama_cpp.Llama`, one request at a time, on one dedicated thread."""

    slots = 1

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 8192,
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
        flash_attn: bool = True,
        model_name: str | None = None,
        flush_interval_s: float = 0.02,
    ) -> None:
        self.model_path = Path(model_path)
        self.model_name = model_name or self.model_path.name
        self.n_ctx = n_ctx
        self.n_gpu_layers = gpu_layers(n_gpu_layers)
        self.n_threads = n_threads
        self.flash_attn = flash_attn
        self.flush_interval_s = flush_interval_s
        self._llama: Any = None
        self._template: ChatTemplate | None = None
        self._vocab: Vocab | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._n_layer = 0
        self._load_lock = asyncio.Lock()

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        async with self._load_lock:
            if self._llama is not None:
                return
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-serial")
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import llama_cpp

        threads, batch_threads = default_threads(self.n_threads)
        t0 = time.perf_counter()
        route_llama_logs()
        llama = llama_cpp.Llama(
            model_path=str(self.model_path),
            n_ctx=self.n_ctx,
            n_gpu_layers=self.n_gpu_layers,
            n_threads=threads,
            n_threads_batch=batch_threads,
            flash_attn=self.flash_attn,
            verbose=False,
        )
        self._vocab = vocab = Vocab.of_model(llama.model)
        self._template = ChatTemplate(
            llama.metadata.get("tokenizer.chat_template"), bos_token=vocab.bos_text, eos_token=vocab.eos_text
        )
        self._n_layer = int(llama_cpp.llama_model_n_layer(llama.model))
        self._llama = llama
        logger.info("loaded %s in %.1fs (%s)", self.model_name, time.perf_counter() - t0, self.info().runs_on)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._unload)
            executor.shutdown(wait=False)

    def _unload(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None
            self._vocab = None

    # --- what the worker uses -----------------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self._executor is not None

    def info(self) -> BackendInfo:
        return BackendInfo(
            backend="llama_cpp",
            model=self.model_name,
            runs_on=runs_on(self.n_gpu_layers, self._n_layer),
            n_ctx=self.n_ctx,
            parallel=1,
        )

    def count_tokens(self, text: str) -> int:
        if self._llama is None:
            return super().count_tokens(text)
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def render(self, messages: Sequence[ChatMessage]) -> str:
        if self._template is None:
            raise RuntimeError("the model is not loaded: await start() first")
        return self._template.render(messages)

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt as the model reads it: the template's markers as control tokens, all content as plain text."""
        if self._template is None or self._vocab is None:
            raise RuntimeError("the model is not loaded: await start() first")
        return self._template.tokens(messages, self._vocab)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if self._executor is None or self._llama is None:
            raise RuntimeError("the model is not loaded: await start() first")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        prompt = self.prompt_tokens(request.messages)
        loop.run_in_executor(self._executor, self._generate, prompt, request, loop, queue, cancelled.is_set)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()  # the model thread stops at its next token (or skips the job if it has not begun)

    def _constraints(self, request: GenerationRequest, prompt: list[int]) -> tuple[Any, Any]:
        """`Llama`'s grammar and logits processors for the request's grammar (None, None without one)."""
        import llama_cpp

        if request.grammar is None or self._vocab is None:
            return None, None
        max_tokens = min(request.max_tokens, self.n_ctx - len(prompt))
        closer = Closer(request.grammar, self._vocab.tokenize, max_tokens)
        processor = closing_processor(closer, len(prompt), self._llama.detokenize)
        grammar = llama_cpp.LlamaGrammar.from_string(request.grammar.gbnf, verbose=False)
        return grammar, llama_cpp.LogitsProcessorList([processor])

    def _generate(
        self,
        prompt: list[int],
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Any],
        cancelled: Callable[[], bool],
    ) -> None:
        bridge = LoopBridge()
        if cancelled():
            return
        try:
            grammar, processors = self._constraints(request, prompt)
            chunks = self._llama.create_completion(
                prompt,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_k=40,
                top_p=0.95,
                min_p=0.05,
                repeat_penalty=1.0,
                stop=list(request.stop) or None,
                seed=request.seed,
                stream=True,
                grammar=grammar,
                logits_processor=processors,
            )
            buffered: list[str] = []
            last_flush = time.monotonic()
            try:
                for chunk in chunks:
                    if cancelled():
                        break
                    text = chunk["choices"][0]["text"]
                    if text:
                        buffered.append(text)
                    now = time.monotonic()
                    if buffered and now - last_flush >= self.flush_interval_s:
                        bridge.put(loop, queue, "".join(buffered))
                        bridge.flush()
                        buffered.clear()
                        last_flush = now
            finally:
                chunks.close()  # stops llama.cpp's generation loop when we leave early
            if buffered:
                bridge.put(loop, queue, "".join(buffered))
            bridge.put(loop, queue, _END)
        except Exception as error:  # reported to the one request it belongs to
            logger.exception("llama.cpp generation failed")
            bridge.put(loop, queue, error)
        bridge.flush()

