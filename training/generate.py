"""Question/answer pairs for passages of the training papers, written by a stronger model and kept only when supported.

Only one answerable QASA record can be had here, so answerable training records come from the training papers: for a
passage, the generator (any GGUF, through the project's own llama.cpp backend) writes a question a reader might ask,
then, asked again, a short answer from the passage. Two plain requests rather than one reply in a fixed three-field
format: small instruct models (SmolLM2-135M, Qwen2.5-Coder-0.5B) ignore such formats and write only a question.
The evidence is the passage's sentence that shares most words with the answer. A pair is kept only when the answer's
content words are mostly in the passage and the question is a question; everything else is dropped and counted.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rag_engine.llm.base import ChatMessage, GenerationRequest

QUESTION_SYSTEM = (
    "You write reading-comprehension questions about passages from scientific papers. Write one question that a "
    "researcher might ask and that the passage answers. Reply with the question only."
)
ANSWER_SYSTEM = "Answer the question in one or two sentences, using only the passage. Reply with the answer only."
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:question|answer|q|a)\s*[:.]\s*(?:\*\*)?\s*", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
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


def first_line(text: str) -> str:
    """A reply's first non-empty line without a "Question:"/"Answer:" label.

    >>> first_line("\\n**Question:** Why is it fast?\\nMore text."), first_line("A: It caches.")
    ('Why is it fast?', 'It caches.')
    """
    for line in text.strip().splitlines():
        if line.strip():
            return _LABEL.sub("", line.strip()).strip()
    return ""


def evidence_sentence(answer: str, passage: str) -> str:
    """The passage's sentence that shares most content words with the answer.

    >>> evidence_sentence("It uses eight heads.", "Training is fast. We use eight heads in each layer. Done.")
    'We use eight heads in each layer.'
    """
    words = set(content_words(answer))
    sentences = [s.strip() for s in _SENTENCE.split(" ".join(passage.split())) if s.strip()]
    return max(sentences, key=lambda s: len(words & set(content_words(s))), default="")


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
    """Ask the generator for a question about `passage`, then for its answer; None when unusable or unsupported."""
    context = f"Paper: {title}\n\nPassage:\n{passage}"
    question = first_line(await generate([ChatMessage("system", QUESTION_SYSTEM), ChatMessage("user", context)]))
    if not question.endswith("?"):
        return None
    answer = first_line(await generate([
        ChatMessage("system", ANSWER_SYSTEM), ChatMessage("user", f"{context}\n\nQuestion: {question}"),
    ]))
    pair = Generated(question, answer, evidence_sentence(answer, passage))
    return pair if answer and supported(pair, passage) else None


def backend_generator(backend, *, max_tokens: int = 160, temperature: float = 0.0) -> Generate:
    """A `Generate` over one of rag_engine's LLM backends (the code path the bot serves with)."""

    async def generate(messages: list[ChatMessage]) -> str:
        request = GenerationRequest(messages=tuple(messages), max_tokens=max_tokens, temperature=temperature)
        return await backend.generate(request)

    return generate
