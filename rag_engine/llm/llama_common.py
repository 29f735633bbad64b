"""What both in-process llama.cpp backends share: GPU-offload detection, thread counts, and the bridge that carries
deltas from a model thread to the event loop in batches."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


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


def load_model(path: str, n_gpu_layers: int) -> Any:
    """A `llama_model *` through the C API (`n_gpu_layers` < 0: all layers, as `Llama` spells it)."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    return model


def new_context(
    model: Any,
    *,
    n_ctx: int,
    n_batch: int,
    n_seq_max: int,
    n_threads: int | None,
    flash_attn: bool,
    kv_unified: bool,
    outputs_per_seq: int = 1,
) -> Any:
    """A `llama_context *` whose every step is one micro-batch (`n_ubatch = n_batch`); frees `model` on failure.

    `outputs_per_seq`: logit rows one sequence may ask for in a step (its last token and its draft); llama.cpp's
    graph-side samplers refuse more than this.
    """
    import llama_cpp

    threads, batch_threads = default_threads(n_threads)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_batch
    params.n_seq_max = n_seq_max
    params.n_outputs_max_per_seq = outputs_per_seq
    params.n_threads = threads
    params.n_threads_batch = batch_threads
    params.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    params.kv_unified = kv_unified
    params.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        llama_cpp.llama_model_free(model)
        raise RuntimeError("llama.cpp could not create a context (out of memory? lower n_ctx or parallel)")
    return ctx
