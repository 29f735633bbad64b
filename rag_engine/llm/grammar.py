"""Grammar-constrained replies in the in-process backends: the grammar sampler, and the closing text written for the
model when its token budget is about to run out (`Grammar.closing`, see `rag_engine.llm.base.Grammar`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rag_engine.llm.base import Grammar


def grammar_sampler(vocab: Any, grammar: Grammar) -> Any:
    """llama.cpp's grammar sampler for `grammar` over the `llama_vocab *`; ValueError for a grammar it rejects."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise ValueError("llama.cpp could not parse the reply grammar")
    return sampler


class Closer:
    """Decides, step by step, when the backend writes `grammar.closing` in the model's place.

    It starts once at most `reserve` + the closing text's own tokens are left, the reply has begun (a grammar's
    first part may not be empty) and no character is half-written (a grammar matches whole characters). Each step
    it writes the first token of what is still missing of the closing text after the reply's end (the model, or a
    grammar that capped the first part, may have begun it), until the reply holds the whole closing text.
    """

    def __init__(self, grammar: Grammar, tokenize: Callable[[str], list[int]], max_tokens: int) -> None:
        self.closing = grammar.closing
        self._tokenize = tokenize
        own = len(tokenize(self.closing)) if self.closing else 0
        self.start_at = max(1, max_tokens - grammar.reserve - own)
        self.done = not self.closing
        self._tail = ""  # the reply's last characters, enough to find the closing text in

    def saw(self, text: str) -> None:
        """Text the reply produced since the last call (sampled or written)."""
        if self.done:
            return
        self._tail = (self._tail + text)[-2 * len(self.closing) :]
        self.done = self.closing in self._tail

    def saw_all(self, text: str) -> None:
        """The whole reply so far (instead of `saw`'s increments)."""
        self._tail = text[-2 * len(self.closing) :]
        self.done = self.done or self.closing in text

    def next_token(self, n_generated: int, *, at_char_boundary: bool) -> int | None:
        """The token to write now instead of sampling, or None."""
        if self.done or n_generated < self.start_at or not at_char_boundary:
            return None
        begun = next(k for k in range(len(self.closing) - 1, -1, -1) if self._tail.endswith(self.closing[:k]))
        return self._tokenize(self.closing[begun:])[0]


def closing_processor(closer: Closer, prompt_len: int, detokenize: Callable[[list[int]], bytes]) -> Any:
    """A `Llama` logits processor that leaves only the closing token when `closer` says so (the serial backend's
    way to write it: the grammar sampler after it then accepts that token as if sampled)."""
    import numpy as np

    def process(input_ids: Any, scores: Any) -> Any:
        n_generated = len(input_ids) - prompt_len
        if closer.done or n_generated < closer.start_at:
            return scores
        data = detokenize(list(input_ids[prompt_len:]))  # only in the last `reserve` steps
        try:
            text, at_char_boundary = data.decode("utf-8"), True
        except UnicodeDecodeError:
            text, at_char_boundary = data.decode("utf-8", errors="ignore"), False
        closer.saw_all(text)
        token = closer.next_token(n_generated, at_char_boundary=at_char_boundary)
        if token is None:
            return scores
        only = np.full_like(scores, -np.inf)
        only[token] = 0.0
        return only

    return process
