"""Generation backends behind one small interface (`LLMBackend`); `create_backend(settings)` picks one.

Importing this package loads no model library: the llama.cpp and HTTP backends are imported by the factory.
"""

from rag_engine.llm.base import (
    BackendInfo,
    ChatMessage,
    GenerationRequest,
    LLMBackend,
    approx_tokens,
)
from rag_engine.llm.factory import create_backend, open_backend

__all__ = [
    "BackendInfo",
    "ChatMessage",
    "GenerationRequest",
    "LLMBackend",
    "approx_tokens",
    "create_backend",
    "open_backend",
]
