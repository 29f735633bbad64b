"""GRPO rewards: pure functions of a completion and its record, on the serving parser (`parse_answer`) and the
evaluation harness's metrics (`training.metrics`).

Each reward reads the completion as the bot would (split at `#####`, citations checked against the sources given,
abstention detected) and scores one property in [-1, 1] or [0, 1]. TRL calls a reward with the batch's completions
and the dataset's columns as keyword lists; `trl_reward` adapts a per-record function to that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rag_engine.prompting import ABSTAIN_ANSWER, parse_answer, split_answer
from rag_engine.types import Answer, Source
from training.generate import content_words
from training.metrics import cited_numbers, normalize, token_f1


#: Answers longer than this many words start to lose reward (the bot's replies are meant to be short).
LENGTH_BUDGET_WORDS = 120


def _sources(count: int) -> tuple[Source, ...]:
    return tuple(Source(n, 0, n, f"source {n}", None, None) for n in range(1, count + 1))


def parsed(completion: str, n_sources: int) -> Answer:
    return parse_answer(completion, _sources(n_sources))


def format_reward(completion: str) -> float:
    """1 when the reply has reasoning, the separator and an answer; 0.5 for a separator with one side empty.

    >>> format_reward("Source 1 says so.\\n#####\\nIt is X [1]."), format_reward("It is X."), format_reward("#####\\nX")
    (1.0, 0.0, 0.5)
    """
    reasoning, answer, had = split_answer(completion)
    if not had:
        return 0.0
    return 1.0 if reasoning and answer else 0.5


def citation_reward(completion: str, n_sources: int, gold: Sequence[int], answerable: bool) -> float:
    """Citations are valid (only given numbers) and, for an answerable question, include a right source.

    Answerable: +1 cites a gold source and nothing invalid; 0.25 valid but not gold; -1 an invalid number; 0 none.
    Unanswerable: 1 when the answer cites nothing, else 0.

    >>> citation_reward("r ##### It is X [2].", 3, [2], True), citation_reward("r ##### It is X [7].", 3, [2], True)
    (1.0, -1.0)
    >>> citation_reward("r ##### " + ABSTAIN_ANSWER, 3, [], False)
    1.0
    """
    _, answer, _ = split_answer(completion)
    numbers = cited_numbers(answer)
    if not answerable:
        return 0.0 if numbers else 1.0
    if not numbers:
        return 0.0
    if any(n < 1 or n > n_sources for n in numbers):
        return -1.0
    return 1.0 if set(numbers) & set(gold) else 0.25


def similarity_reward(completion: str, reference: str, n_sources: int) -> float:
    """SQuAD token F1 of the parsed answer against the reference answer (the harness's metric)."""
    return token_f1(parsed(completion, n_sources).answer, reference)


def grounding_reward(completion: str, source_texts: Sequence[str]) -> float:
    """Share of the answer's content words found in the sources it cites (all sources when it cites none).

    >>> grounding_reward("r ##### It uses eight heads [1].", ["The model uses eight heads.", "Other text."])
    1.0
    """
    answer = parsed(completion, len(source_texts))
    if answer.abstained:
        return 0.0
    words = content_words(normalize(answer.answer))  # normalize drops the citations
    if not words:
        return 0.0
    cited = [source_texts[s.n - 1] for s in answer.sources] or list(source_texts)
    vocabulary = set(content_words(" ".join(cited)))
    return sum(w in vocabulary for w in words) / len(words)


def abstention_reward(completion: str, n_sources: int, answerable: bool) -> float:
    """+1 for abstaining exactly when the question is unanswerable, -1 otherwise.

    >>> abstention_reward("r ##### " + ABSTAIN_ANSWER, 3, False), abstention_reward("r ##### It is X [1].", 3, False)
    (1.0, -1.0)
    """
    abstained = parsed(completion, n_sources).abstained
    return 1.0 if abstained != answerable else -1.0


def length_penalty(completion: str, budget_words: int = LENGTH_BUDGET_WORDS) -> float:
    """0 within the budget, falling linearly to -1 at twice the budget.

    >>> length_penalty("word " * 50), length_penalty("word " * 180), length_penalty("word " * 400)
    (0.0, -0.5, -1.0)
    """
    words = len(completion.split())
    if words <= budget_words:
        return 0.0
    return -min(1.0, (words - budget_words) / budget_words)


def _text(completion: Any) -> str:
    """TRL passes conversational completions as `[{"role": "assistant", "content": …}]`, standard ones as str."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def trl_reward(name: str, score: Callable[..., float]) -> Callable[..., list[float]]:
    """Adapt `score(completion, record_fields)` to TRL's `reward(completions, **columns) -> list[float]`."""

    def reward(completions: list[Any], **columns: list[Any]) -> list[float]:
        out = []
        for i, completion in enumerate(completions):
            fields = {k: v[i] for k, v in columns.items() if isinstance(v, list) and len(v) == len(completions)}
            out.append(float(score(_text(completion), fields)))
        return out

    reward.__name__ = name
    return reward


#: The rewards GRPO optimises, by name (each one a column of the per-step CSV).
REWARDS: dict[str, Callable[[str, dict[str, Any]], float]] = {
    "format": lambda c, r: format_reward(c),
    "citation": lambda c, r: citation_reward(c, len(r["source_texts"]), r["gold_sources"], r["answerable"]),
    "similarity": lambda c, r: similarity_reward(c, r["reference_answer"], len(r["source_texts"])),
    "grounding": lambda c, r: grounding_reward(c, r["source_texts"]) if r["answerable"] else 0.0,
    "abstention": lambda c, r: abstention_reward(c, len(r["source_texts"]), r["answerable"]),
    "length": lambda c, r: length_penalty(c),
}


def trl_rewards(names: Sequence[str] = tuple(REWARDS)) -> list[Callable[..., list[float]]]:
    return [trl_reward(n, REWARDS[n]) for n in names]
