"""Question/answer pairs for passages of the training papers, written by a stronger model and kept only when supported.

Only one answerable QASA record can be had here, so answerable training records come from the training papers: for a
passage, the generator (any GGUF, through the project's own llama.cpp backend) writes a question a reader might ask,
a short answer and the sentence of the passage that supports it. A pair is kept only when that sentence really is in
the passage and most of the answer's content words are too; everything else is dropped and counted.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rag_engine.llm.base import ChatMessage, GenerationRequest

GENERATOR_SYSTEM = (
    "You write reading-comprehension questions about passages from scientific papers. Reply in exactly three lines:\n"
    "QUESTION: a question a researcher might ask that this passage answers\n"
    "ANSWER: the answer in one or two sentences, using only the passage\n"
    "EVIDENCE: one sentence copied word for word from the passage that supports the answer"
)
_FIELD = re.compile(r"^\s*(QUESTION|ANSWER|EVIDENCE)\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an the of in on at to for from by with and or but is are was were be been being it its this that these those "
    "as which who what when where why how than then so such not no can could may might will would should do does did "
    "has have had into over under about between their there they them we our you your he she his her i".split()
)

Generate = Callable[[list[ChatMessage]], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Generated:
    question: str
    answer: str
    evidence: str


def content_words(text: str) -> list[str]:
    """Lower-cased words that carry meaning (no stop words, no single letters).

    >>> content_words("The model uses 8 attention heads.")
    ['model', 'uses', '8', 'attention', 'heads']
    """
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]


def parse_generated(text: str) -> Generated | None:
    """The three fields of a generator reply, or None when one is missing.

    >>> parse_generated("QUESTION: Why?\\nANSWER: Because.\\nEVIDENCE: It is so.")
    Generated(question='Why?', answer='Because.', evidence='It is so.')
    >>> parse_generated("I cannot do that.") is None
    True
    """
    fields: dict[str, str] = {}
    for name, value in _FIELD.findall(text):
        fields.setdefault(name.upper(), value.strip())
    if not all(fields.get(k) for k in ("QUESTION", "ANSWER", "EVIDENCE")):
        return None
    return Generated(fields["QUESTION"], fields["ANSWER"], fields["EVIDENCE"])


def _squash(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def supported(pair: Generated, passage: str, *, min_answer_overlap: float = 0.6) -> bool:
    """The evidence sentence is in the passage (ignoring case and punctuation) and most answer words are too.

    >>> p = "We use 8 parallel attention heads. Each head has dimension 64."
    >>> supported(Generated("How many heads?", "It uses 8 attention heads.", "We use 8 parallel attention heads."), p)
    True
    >>> supported(Generated("How many heads?", "Sixteen heads.", "We use 16 heads."), p)
    False
    """
    evidence = _squash(pair.evidence)
    if len(evidence.split()) < 4 or evidence not in _squash(passage):
        return False
    answer_words = content_words(pair.answer)
    if not answer_words:
        return False
    in_passage = set(content_words(passage))
    overlap = sum(w in in_passage for w in answer_words) / len(answer_words)
    question_ok = pair.question.strip().endswith("?") and len(content_words(pair.question)) >= 2
    return overlap >= min_answer_overlap and question_ok


async def generate_pair(generate: Generate, title: str, passage: str) -> Generated | None:
    """Ask the generator for one question about `passage`; None when the reply is unusable or unsupported."""
    messages = [
        ChatMessage("system", GENERATOR_SYSTEM),
        ChatMessage("user", f"Paper: {title}\n\nPassage:\n{passage}"),
    ]
    pair = parse_generated(await generate(messages))
    return pair if pair is not None and supported(pair, passage) else None


def backend_generator(backend, *, max_tokens: int = 160, temperature: float = 0.0) -> Generate:
    """A `Generate` over one of rag_engine's LLM backends (the code path the bot serves with)."""

    async def generate(messages: list[ChatMessage]) -> str:
        request = GenerationRequest(messages=tuple(messages), max_tokens=max_tokens, temperature=temperature)
        return await backend.generate(request)

    return generate
