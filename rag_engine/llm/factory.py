"""Settings → the generation backend they describe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from rag_engine.llm.base import LLMBackend

if TYPE_CHECKING:
    from rag_engine.settings import EngineSettings


def load_llama_cpp_first() -> None:
    """Load llama.cpp's libraries before numpy, at the start of a process that will generate.

    On purpose: with some numpy builds (2.5 with scipy-openblas) loading numpy first makes llama.cpp's CUDA model load
    crash (seen on an H100 image; bench/README.md). Entry points call this before anything imports numpy; importing
    this module imports neither.
    """
    try:
        import llama_cpp  # noqa: F401
    except ImportError:  # pragma: no cover - the OpenAI-compatible backend works without it
        pass


def create_backend(settings: EngineSettings, *, model_path: Path | str | None = None) -> LLMBackend:
    """Build (not start) the backend `settings` ask for.

    For the in-process backends the model file is resolved here (`rag_engine.hub.resolve_model_file`: a local path,
    or `owner/repo:file.gguf` downloaded once into `settings.models_dir`), which may download: call this from a
    thread, or use `open_backend`. Offline without the file it raises ModelUnavailable.
    """
    if settings.llm_backend == "openai":
        from rag_engine.llm.openai_http import OpenAIHTTPBackend

        model = settings.llm_model
        return OpenAIHTTPBackend(
            settings.llm_base_url,
            # a GGUF spec names a file, not a served model: let the server say what it serves
            model=None if model.endswith(".gguf") else model,
            api_key=settings.llm_api_key.get_secret_value() or None,
            parallel=settings.parallel,
            n_ctx=settings.n_ctx,
            read_timeout_s=settings.request_timeout_s,
        )
    if model_path is None:
        from rag_engine.hub import resolve_model_file

        model_path = resolve_model_file(settings.llm_model, settings.models_dir)
    common = {
        "n_ctx": settings.n_ctx,
        "n_gpu_layers": settings.n_gpu_layers,
        "n_threads": settings.n_threads,
        "flash_attn": settings.flash_attn,
        "model_name": Path(model_path).name,
    }
    if settings.batched:
        from rag_engine.llm.batched import BatchedLlamaBackend

        draft_tokens = settings.draft_tokens if settings.speculative else 0
        return BatchedLlamaBackend(
            model_path, parallel=settings.parallel, draft_tokens=draft_tokens, **common  # type: ignore[arg-type]
        )
    from rag_engine.llm.llama_cpp_backend import LlamaCppBackend

    return LlamaCppBackend(model_path, **common)  # type: ignore[arg-type]


async def open_backend(settings: EngineSettings, *, model_path: Path | str | None = None) -> LLMBackend:
    """`create_backend` off the event loop (a first run may download the model), then `start()` it."""
    backend = await asyncio.to_thread(create_backend, settings, model_path=model_path)
    await backend.start()
    return backend
