"""llama.cpp in process, one request at a time, through llama-cpp-python's plain `Llama` (the serial fallback).

`Settings.batched=False` selects it. It also holds what both in-process backends share: GPU-offload detection,
the model's chat template, and the thread that carries deltas to the event loop in batches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rag_engine.llm.base import BackendInfo, ChatMessage, GenerationRequest, LLMBackend

logger = logging.getLogger(__name__)

_END = object()

# The ChatML layout of Qwen2.x, used when a GGUF carries no chat template.
_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# --- shared by both in-process backends -------------------------------------------------------------------------------
def gpu_layers(requested: int) -> int:
    """The layers to offload: what was asked when this llama.cpp build can offload, else 0 (CPU)."""
    import llama_cpp

    if requested == 0 or not llama_cpp.llama_supports_gpu_offload():
        return 0
    return requested


def gpu_backend_name() -> str:
    """Which GPU backend this llama.cpp build has ("CUDA", "Metal", …), for status lines."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    for name in ("CUDA", "ROCm", "HIP", "Metal", "Vulkan", "SYCL", "MUSA", "CANN", "OpenCL"):
        if f"{name} :" in info or f"{name}:" in info:
            return name
    return "GPU"


def runs_on(n_gpu_layers: int, n_layer: int) -> str:
    """`CUDA, 37/37 layers offloaded` or `CPU` (llama.cpp counts the output layer as one more).

    >>> runs_on(0, 36)
    'CPU'
    """
    if n_gpu_layers == 0:
        return "CPU"
    total = n_layer + 1
    offloaded = total if n_gpu_layers < 0 else min(n_gpu_layers, total)
    return f"{gpu_backend_name()}, {offloaded}/{total} layers offloaded"


def default_threads(n_threads: int | None) -> tuple[int, int]:
    """(generation threads, batch threads), as llama-cpp-python chooses them when unset."""
    cores = os.cpu_count() or 1
    if n_threads:
        return n_threads, n_threads
    return max(1, cores // 2), cores


class ChatTemplate:
    """Renders messages with the GGUF's own Jinja chat template (as `Llama.create_chat_completion` does)."""

    def __init__(self, template: str | None, bos_token: str, eos_token: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.template = template or _CHATML
        self._formatter = Jinja2ChatFormatter(template=self.template, eos_token=eos_token, bos_token=bos_token)

    def render(self, messages: Sequence[ChatMessage]) -> str:
        response = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return response.prompt


class LoopBridge:
    """Carries items from a model thread to asyncio queues: one `call_soon_threadsafe` per flush, not per token."""

    def __init__(self) -> None:
        self._pending: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any], Any]] = []

    def put(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], item: Any) -> None:
        self._pending.append((loop, queue, item))

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], Any]]] = {}
        for loop, queue, item in pending:
            by_loop.setdefault(loop, []).append((queue, item))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that loop is closed: nobody is listening any more
                logger.debug("dropped %d items for a closed event loop", len(items))


def _deliver(items: list[tuple[asyncio.Queue[Any], Any]]) -> None:
    for queue, item in items:
        queue.put_nowait(item)


# --- the serial backend -----------------------------------------------------------------------------------------------
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
        llama = llama_cpp.Llama(
            model_path=str(self.model_path),
            n_ctx=self.n_ctx,
            n_gpu_layers=self.n_gpu_layers,
            n_threads=threads,
            n_threads_batch=batch_threads,
            flash_attn=self.flash_attn,
            verbose=False,
        )
        metadata = llama.metadata
        eos, bos = llama.token_eos(), llama.token_bos()
        vocab = llama._model.vocab
        self._template = ChatTemplate(
            metadata.get("tokenizer.chat_template"),
            bos_token=_token_text(vocab, bos),
            eos_token=_token_text(vocab, eos),
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

    # --- what the worker uses -----------------------------------------------------------------------------------------
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

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if self._executor is None or self._llama is None:
            raise RuntimeError("the model is not loaded: await start() first")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        prompt = self.render(request.messages)
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

    def _generate(
        self,
        prompt: str,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Any],
        cancelled: Callable[[], bool],
    ) -> None:
        bridge = LoopBridge()
        if cancelled():
            return
        try:
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


def _token_text(vocab: Any, token: int) -> str:
    import llama_cpp

    if token < 0:
        return ""
    text = llama_cpp.llama_vocab_get_text(vocab, token)
    return text.decode("utf-8", errors="replace") if text else ""
