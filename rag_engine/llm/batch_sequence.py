"""One request in the batched backend: its slot, its prompt and progress, and how its text is handed out."""

from __future__ import annotations

import asyncio
import codecs
import time
from typing import TYPE_CHECKING, Any

from rag_engine.llm.base import GenerationRequest
from rag_engine.llm.grammar import Closer

if TYPE_CHECKING:
    from rag_engine.llm.sampling import SequenceSampler
    from rag_engine.llm.speculative import PromptLookup


class BatchSequence:
    """One request in the batch. Touched by the model thread only, except `cancelled` (set from the loop)."""

    __slots__ = (
        "backend_sampler",
        "cancelled",
        "closer",
        "decoder",
        "draft",
        "finished",
        "first_token_at",
        "held",
        "i_batch",
        "last_token",
        "lookup",
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
        self.sampler: SequenceSampler | None = None
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
        self.closer: Closer | None = None  # writes a grammar's closing text when the budget runs out
        self.lookup: PromptLookup | None = None  # prompt and reply so far, for drafts (speculative decoding on)
        self.draft: list[int] = []  # tokens decoded after `last_token` in this step, not yet verified
        self.finished = False  # its end is queued; the slot is released after the step's sampling

    @property
    def prefilling(self) -> bool:
        return self.n_read < len(self.prompt)

    def forced_token(self) -> int | None:
        """The token the backend writes now instead of sampling one (a grammar's closing text), or None."""
        if self.closer is None or self.closer.done or self.n_generated < self.closer.start_at:
            return None  # the common case, decided before reading the decoder's state
        at_char_boundary = not self.decoder.getstate()[0]
        return self.closer.next_token(self.n_generated, at_char_boundary=at_char_boundary)

    def take_text(self, text: str) -> tuple[str, bool]:
        """(text ready to send, whether a stop string ended the reply), holding back a possible start of a stop
        string until the next text tells."""
        if not self.stop:
            return text, False
        held = self.held + text
        cut = min((i for i in (held.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.held = ""
            return held[:cut], True
        keep = 0
        for size in range(min(self.max_stop - 1, len(held)), 0, -1):
            if any(s.startswith(held[-size:]) for s in self.stop):
                keep = size
                break
        ready, self.held = (held[:-keep], held[-keep:]) if keep else (held, "")
        return ready, False

    def tail(self, *, flush_decoder: bool = True) -> str:
        """What is left to send at the end: held-back text and a dangling partial character."""
        tail = self.held + (self.decoder.decode(b"", final=True) if flush_decoder else "")
        self.held = ""
        return tail
