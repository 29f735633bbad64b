"""Training records: the serving prompt for a question and its passages, and the completion to learn.

Every record is laid out by `rag_engine.prompting.build_prompt` with the serving budget, so the model trains on
exactly what it is served; the target is `format_target(reasoning, answer)` with `[n]` citations of the numbered
sources. A record keeps the numbered sources' texts and the reference answer, which the rewards read.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rag_engine.prompting import ABSTAIN_ANSWER, Passage, PromptBudget, TokenCounter, build_prompt, format_target
from training.qasa import QasaRecord

#: Where a record came from, written into the manifest.
KINDS = ("qasa-answerable", "qasa-unanswerable", "pdf-generated", "pdf-mismatched")


@dataclass(frozen=True, slots=True)
class TrainingRecord:
    id: str
    kind: str
    paper: str
    question: str
    prompt: list[dict[str, str]]  # chat messages, system first, as the backend is sent them
    target: str  # `reasoning\n#####\nanswer [n]`
    reference_answer: str
    answerable: bool
    gold_sources: list[int]  # the source numbers a right answer cites (empty for abstentions)
    sources: list[dict[str, Any]]  # the numbered sources as given in the prompt, [1] first: title, text, pages
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def source_texts(self) -> list[str]:
        return [s["text"] for s in self.sources]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingRecord:
        return cls(**data)


def cite(numbers: Sequence[int]) -> str:
    """`[1]`, `[1, 3]`; empty when there is nothing to cite.

    >>> cite([1, 3]), cite([])
    ('[1, 3]', '')
    """
    return f"[{', '.join(str(n) for n in numbers)}]" if numbers else ""


def with_citation(answer: str, numbers: Sequence[int]) -> str:
    """Append a citation before the answer's final full stop (or at its end).

    >>> with_citation("It scales the dot products.", [2])
    'It scales the dot products [2].'
    """
    answer = answer.strip()
    marker = cite(numbers)
    if not marker:
        return answer
    if answer.endswith("."):
        return f"{answer[:-1]} {marker}."
    return f"{answer} {marker}"


def _messages(
    question: str, passages: Sequence[Passage], budget: PromptBudget, count_tokens: TokenCounter | None
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """The serving prompt's messages, and the passages it numbers (the budget may drop the lowest-ranked)."""
    prompt = build_prompt(question, passages, budget=budget, count_tokens=count_tokens)
    given = [
        {"title": p.title, "text": p.text, "page_start": p.page_start, "page_end": p.page_end}
        for p in passages[: len(prompt.sources)]
    ]
    return [{"role": m.role, "content": m.content} for m in prompt.messages], given


def _shuffled(gold: Sequence[Passage], others: Sequence[Passage], rng: random.Random, max_sources: int):
    """Gold passages among distractors, in a random order; returns (passages, 1-based gold numbers)."""
    pool = list(gold) + list(others)[: max(0, max_sources - len(gold))]
    order = list(range(len(pool)))
    rng.shuffle(order)
    passages = [pool[i] for i in order]
    gold_numbers = sorted(order.index(i) + 1 for i in range(len(gold)))
    return passages, gold_numbers


def is_paragraph(text: str, min_words: int = 8) -> bool:
    """Real text, not a heading: some QASA trigger "sentences" are only a section name.

    >>> is_paragraph("Section 2.3"), is_paragraph("We train the model on eight GPUs for three and a half days.")
    (False, True)
    """
    return len(text.split()) >= min_words


def _sentences(text: str, limit: int) -> str:
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return " ".join(parts[:limit]).strip()


def from_qasa_answerable(
    record: QasaRecord,
    distractors: Sequence[str],
    *,
    budget: PromptBudget,
    count_tokens: TokenCounter | None = None,
    rng: random.Random,
) -> TrainingRecord | None:
    """Evidence paragraphs as sources (among other paragraphs of the paper); reasoning from the rationales."""
    if not record.evidence or not record.composition:
        return None
    gold = [Passage(record.title, e.context) for e in record.evidence[: budget.max_sources]]
    others = [Passage(record.title, d) for d in distractors if is_paragraph(d)]
    passages, numbers = _shuffled(gold, others, rng, budget.max_sources)
    reasons = [
        f"{cite([n])} {_sentences(e.rationale, 2) or 'holds the evidence.'}"
        for n, e in zip(numbers, record.evidence, strict=False)
    ]
    reasoning = " ".join(reasons)
    answer = with_citation(record.composition, numbers)
    prompt, texts = _messages(record.question, passages, budget, count_tokens)
    return TrainingRecord(
        id=record.id, kind="qasa-answerable", paper=record.paper_id, question=record.question, prompt=prompt,
        target=format_target(reasoning, answer), reference_answer=record.composition, answerable=True,
        gold_sources=numbers, sources=texts, meta={"question_type": record.question_type},
    )


def from_qasa_unanswerable(
    record: QasaRecord,
    paragraphs: Sequence[str],
    *,
    budget: PromptBudget,
    count_tokens: TokenCounter | None = None,
    rng: random.Random,
) -> TrainingRecord | None:
    """Real paragraphs of the paper as sources (never "no sources"), and the abstention as the answer.

    QASA's composition for these says what the paper lacks; it becomes the reasoning.
    """
    pool = list(dict.fromkeys([record.trigger_sentence, *(e.context for e in record.evidence), *paragraphs]))
    pool = [p for p in pool if is_paragraph(p)]
    if not pool:
        return None
    passages = [Passage(record.title, p) for p in pool[: budget.max_sources]]
    rng.shuffle(passages)
    reasoning = record.composition or "The sources discuss the paper's topic, but none of them answers this question."
    prompt, texts = _messages(record.question, passages, budget, count_tokens)
    return TrainingRecord(
        id=record.id, kind="qasa-unanswerable", paper=record.paper_id, question=record.question, prompt=prompt,
        target=format_target(reasoning, ABSTAIN_ANSWER), reference_answer=ABSTAIN_ANSWER, answerable=False,
        gold_sources=[], sources=texts, meta={"question_type": record.question_type},
    )


def from_generated(
    record_id: str,
    paper: str,
    question: str,
    reasoning: str,
    answer: str,
    gold: Passage,
    distractors: Sequence[Passage],
    *,
    budget: PromptBudget,
    count_tokens: TokenCounter | None = None,
    rng: random.Random,
) -> TrainingRecord:
    """A question written for one passage of a training paper, that passage among others of the same paper."""
    passages, numbers = _shuffled([gold], distractors, rng, budget.max_sources)
    prompt, texts = _messages(question, passages, budget, count_tokens)
    target = format_target(f"{cite(numbers)} {reasoning.strip()}", with_citation(answer, numbers))
    return TrainingRecord(
        id=record_id, kind="pdf-generated", paper=paper, question=question, prompt=prompt, target=target,
        reference_answer=answer.strip(), answerable=True, gold_sources=numbers, sources=texts,
        meta={"pages": [gold.page_start, gold.page_end]},
    )


def mismatched(
    record_id: str,
    question: str,
    question_paper: str,
    passages: Sequence[Passage],
    *,
    budget: PromptBudget,
    count_tokens: TokenCounter | None = None,
) -> TrainingRecord:
    """A question about one paper asked over passages of another: the right reply is to abstain."""
    prompt, texts = _messages(question, passages, budget, count_tokens)
    reasoning = "The sources are about a different topic; none of them says anything that answers this question."
    return TrainingRecord(
        id=record_id, kind="pdf-mismatched", paper=question_paper, question=question, prompt=prompt,
        target=format_target(reasoning, ABSTAIN_ANSWER), reference_answer=ABSTAIN_ANSWER, answerable=False,
        gold_sources=[], sources=texts, meta={"passages_from": sorted({p.title for p in passages})},
    )
