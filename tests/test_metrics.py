"""Each answer-quality metric on hand-written replies, shaped like what real small models write."""

from __future__ import annotations

import pytest

from rag_engine.prompting import ABSTAIN_ANSWER, parse_answer
from rag_engine.types import Source
from training.metrics import (
    abstention_scores,
    cited_numbers,
    cited_page_right,
    citations_valid,
    format_ok,
    has_separator,
    key_fact_present,
    retrieved_page_right,
    rouge_l,
    token_f1,
    word_count,
)

DOC, OTHER = 7, 8
SOURCES = (
    Source(1, DOC, 10, "Attention Is All You Need", 3, 3),
    Source(2, DOC, 11, "Attention Is All You Need", 4, 5),
    Source(3, OTHER, 20, "ZeRO", 4, 4),
)


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        ("Source 2 gives the scaling.\n#####\nBy 1/sqrt(d_k) [2].", True),
        ("Source 2 gives the scaling. ##### By 1/sqrt(d_k) [2].", True),
        ("By 1/sqrt(d_k), as source 2 says [2].", False),  # no separator: no reasoning
        ("Source 2 gives the scaling.\n#####\n", False),  # nothing after the separator
        ("Source 2 gives the scaling.\n#####\n[2].", False),  # only a citation
        ("#####\nBy 1/sqrt(d_k) [2].", False),
    ],
)
def test_format_needs_reasoning_and_answer(reply: str, ok: bool) -> None:
    assert format_ok(reply) is ok


def test_separator_is_seen_in_the_raw_reply() -> None:
    assert has_separator("why\n#####\nwhat") and has_separator("why ###### what")
    assert not has_separator("why\n####\nwhat")


@pytest.mark.parametrize(
    ("reply", "valid"),
    [
        ("Sources 1 and 2.\n#####\nIt is scaled [2].", True),
        ("Sources.\n#####\nIt is scaled by 1/sqrt(d_k).", True),  # cites nothing: nothing invalid
        ("Sources.\n#####\nIt is scaled [2, 4].", False),  # 4 was not given
        ("Source [6] says so.\n#####\nIt is scaled [2].", False),  # in the reasoning too
        ("Sources.\n#####\nSee [0].", False),
    ],
)
def test_citation_validity(reply: str, valid: bool) -> None:
    assert citations_valid(reply, SOURCES) is valid


def test_cited_numbers_read_lists_and_skip_non_citations() -> None:
    assert cited_numbers("A [2]. B [1; 2], C [3 , 1]. Not [x], [] or [1a].") == [2, 1, 3]


@pytest.mark.parametrize(
    ("answer", "right"),
    [
        ("Scaled by 1/sqrt(d_k) [2].", True),  # source 2 covers pages 4-5
        ("Scaled by 1/sqrt(d_k) [1, 2].", True),
        ("Scaled by 1/sqrt(d_k) [1].", False),  # page 3 only
        ("Scaled by 1/sqrt(d_k) [3].", False),  # page 4, but of another paper
        ("Scaled by 1/sqrt(d_k).", False),  # no citation counts as wrong
        ("Scaled by 1/sqrt(d_k) [5].", False),  # a source not given
    ],
)
def test_cited_page_right(answer: str, right: bool) -> None:
    assert cited_page_right(answer, SOURCES, DOC, {4}) is right


def test_retrieved_page_right_looks_at_every_given_source() -> None:
    assert retrieved_page_right(SOURCES, DOC, {5})
    assert not retrieved_page_right(SOURCES, DOC, {6})
    assert not retrieved_page_right((Source(1, DOC, 0, "QASA paragraph", None, None),), DOC, {1})


@pytest.mark.parametrize(
    ("answer", "facts", "present"),
    [
        ("The encoder stacks six identical layers [1].", ["six", "6"], True),
        ("N = 6 layers.", ["six", "6"], True),
        ("It has 16 layers.", ["6"], False),  # whole words only
        ("Trained on 2,048 A100 GPUs [2].", ["2048"], True),
        ("Adam with β2 = 0.98.", ["0.98"], True),
        ("Adam with β2 = 0.9.", ["0.98"], False),
        ("It uses the Geometric distribution.", ["geometric distribution"], True),
        ("Scaled dot–product attention.", ["scaled dot-product"], True),
        ("It is fast.", [], False),
    ],
)
def test_key_fact(answer: str, facts: list[str], present: bool) -> None:
    assert key_fact_present(answer, facts) is present


def test_token_f1_and_rouge_l() -> None:
    reference = "The encoder is a stack of 6 identical layers."
    assert token_f1(reference, reference) == 1.0 and rouge_l(reference, reference) == 1.0
    assert token_f1("It uses dropout.", reference) == 0.0 and rouge_l("It uses dropout.", reference) == 0.0
    # Same words, different order: F1 ignores order, ROUGE-L does not.
    shuffled = "6 identical layers, a stack of the encoder is"
    assert token_f1(shuffled, reference) == 1.0
    assert 0.0 < rouge_l(shuffled, reference) < 1.0
    # Citations and articles do not count.
    assert token_f1("a stack of 6 identical layers [1]", "stack of 6 identical layers") == 1.0
    assert token_f1("", reference) == 0.0 and rouge_l("", reference) == 0.0


def test_word_count() -> None:
    assert word_count("It is  scaled\nby 1/sqrt(d_k) [2].") == 6


def test_abstention_precision_and_recall() -> None:
    # (should abstain, did abstain): 2 off-topic declined, 1 off-topic answered, 1 answerable wrongly declined.
    scores = abstention_scores([(True, True), (True, True), (True, False), (False, True), (False, False)])
    assert scores.precision.value == pytest.approx(2 / 3) and scores.precision.count == 3
    assert scores.recall.value == pytest.approx(2 / 3) and scores.recall.count == 3
    none = abstention_scores([(False, False)])
    assert none.precision.value is None and none.recall.value is None


@pytest.mark.parametrize(
    "answer",
    [
        ABSTAIN_ANSWER,
        "I cannot answer that from the papers in this channel",
        "The provided sources do not contain information about the capital of France.",
        "The sources provided do not mention the number of GPUs.",
        "I'm sorry, but the sources don't say anything about that.",
        "Sorry, I cannot answer this question from the given papers.",
        "Unfortunately, the papers in this channel do not answer this question.",
        "None of the sources mention the learning rate.",
        "This information is not provided in the sources.",
        "The given passages do not discuss the boiling point of water.",
        "The context does not provide the answer.",
        "Not mentioned in the sources.",
        "I'm unable to answer this from the sources [1].",
    ],
)
def test_abstentions_in_other_words_are_detected(answer: str) -> None:
    parsed = parse_answer(f"None of the sources is about this.\n#####\n{answer}", SOURCES)
    assert parsed.abstained and parsed.sources == ()


@pytest.mark.parametrize(
    "answer",
    [
        "The Transformer uses 6 layers [1].",
        "No, PonderNet does not use a uniform prior; it uses a geometric prior [2].",
        "None of the baselines beat it [1].",
        "Sorry for the confusion earlier: it uses 8 heads [1].",
    ],
)
def test_answers_are_not_taken_for_abstentions(answer: str) -> None:
    assert not parse_answer(f"Source 1.\n#####\n{answer}", SOURCES).abstained
