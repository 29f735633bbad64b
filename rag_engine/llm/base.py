"""The small interface every generation backend shares, and the types that cross it.

A backend turns one `GenerationRequest` into an async stream of text deltas. It may decode up to `slots` streams
at once (one llama.cpp batch, or a server's parallel slots); the worker (`rag_engine.worker`) never opens more.
Closing a stream early (cancelling the task that iterates it, or `aclose()`) stops that request's generation.
This module imports no model library, so training and tests can use the types without llama.cpp.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Grammar:
    """A llama.cpp GBNF grammar every token of the reply must fit (root rule `root`).

    `closing` is text the grammar accepts at any point of the reply's first part and nowhere else before it: when
    a reply has not begun it and only `reserve` tokens (plus its own) are left of `max_tokens`, the in-process
    backends write it themselves, so a reply always reaches its last part (the answer) before it is cut.
    """

    gbnf: str
    closing: str = ""
    reserve: int = 0


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One chat completion. `temperature` 0 means greedy; `seed` None means a fresh one per request; `grammar`
    constrains the reply where the backend can (a server that refuses grammars generates freely)."""

    messages: tuple[ChatMessage, ...]
    max_tokens: int = 512
    temperature: float = 0.2
    stop: tuple[str, ...] = ()
    seed: int | None = None
    grammar: Grammar | None = None

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("a GenerationRequest needs at least one message")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What `paperbot status` shows about the model: never silently slow, so say where it runs."""

    backend: str  # "llama_cpp" | "llama_cpp_batched" | "openai"
    model: str  # file name or served model id
    runs_on: str  # "CUDA, 37/37 layers offloaded", "CPU", "http://host:port/v1"
    n_ctx: int  # tokens one request may use (prompt + answer)
    parallel: int  # requests decoded together


class LLMBackend(ABC):
    """A model that streams text for up to `slots` requests at once.

    Lifecycle: `await start()` (loads the model off the event loop), any number of `stream()` calls, `await close()`.
    """

    #: Requests the backend decodes together; the worker keeps at most this many streams open.
    slots: int = 1

    @abstractmethod
    def info(self) -> BackendInfo: ...

    async def start(self) -> None:
        """Load the model / open connections. Idempotent."""

    async def close(self) -> None:
        """Stop every stream and free the model. Idempotent."""

    def alive(self) -> bool:
        """False once the backend can no longer generate (its decoding thread died): the health check asks."""
        return True

    @abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """Text deltas of the reply as they are decoded (several tokens may come as one delta).

        Ends when the model stops (end of turn, a stop string, `max_tokens`, the context is full). Closing the
        iterator early stops the generation and frees its slot.
        """

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's vocabulary; backends without a tokenizer over-estimate."""
        return approx_tokens(text)

    async def generate(self, request: GenerationRequest) -> str:
        """The whole reply (tests, CLI one-shots)."""
        parts: list[str] = []
        async for delta in self.stream(request):
            parts.append(delta)
        return "".join(parts)


def approx_tokens(text: str) -> int:
    """A safe over-estimate of BPE tokens for a text without its tokenizer (English averages ~4 chars a token).

    >>> approx_tokens("")
    0
    >>> approx_tokens("word " * 30) >= 30
    True
    """
    if not text:
        return 0
    return len(text.encode("utf-8")) // 3 + 1


def messages_from_pairs(pairs: Sequence[tuple[Role, str]]) -> tuple[ChatMessage, ...]:
    """`[("system", "..."), ("user", "...")]` → ChatMessages (tests and scripts)."""
    return tuple(ChatMessage(role, content) for role, content in pairs)
