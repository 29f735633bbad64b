"""Answer-quality metrics over one reply, and their aggregates. Pure functions; the harness and training reuse them.

A reply is judged on the raw text the model wrote (citations as written, before `parse_answer` drops invalid ones)
and on the `Answer` the serving path parsed from it. Token F1 and ROUGE-L are written here (SQuAD's normalisation,
LCS over tokens) rather than taken from `rouge-score`/`evaluate`, which would bring nltk and more for 20 lines.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from rag_engine.prompting import split_answer
from rag_engine.types import Source

_CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


# --- one reply --------------------------------------------------------------------------------------------------------
def format_ok(text: str) -> bool:
    """Reasoning and answer both non-empty when the reply is split as the serving path splits it.

    An answer that is only citations is empty. (Checked on the raw reply: `parse_answer` turns an empty answer into
    the abstention sentence.)
    """
    reasoning, answer, _ = split_answer(text)
    return bool(reasoning) and bool(_CITATION.sub("", answer).strip(" \t\n.,;:"))


def has_separator(text: str) -> bool:
    """The raw reply holds the `#####` line (format_ok also passes when a model reasons in the answer's place)."""
    return split_answer(text)[2]


def cited_numbers(text: str) -> list[int]:
    """Every source number cited as `[n]` or `[n, m]` in `text`, in order, without repeats.

    >>> cited_numbers("A [2]. B [1; 2] and [3 , 4]. Not [x] nor [].")
    [2, 1, 3, 4]
    """
    found = (int(n) for m in _CITATION.finditer(text) for n in re.split(r"[,;]", m.group(1)))
    return list(dict.fromkeys(found))


def citations_valid(text: str, sources: Sequence[Source]) -> bool:
    """Every `[n]` in the raw reply refers to a source that was given (a reply citing nothing is valid)."""
    given = {s.n for s in sources}
    return all(n in given for n in cited_numbers(text))


def covers(source: Source, doc_id: int, pages: Collection[int]) -> bool:
    if source.doc_id != doc_id or source.page_start is None:
        return False
    end = source.page_end if source.page_end is not None else source.page_start
    return any(source.page_start <= p <= end for p in pages)


def cited_page_right(answer_text: str, sources: Sequence[Source], doc_id: int, pages: Collection[int]) -> bool:
    """Some source cited in the answer covers an answer page of the right paper; citing nothing is wrong."""
    by_n = {s.n: s for s in sources}
    return any(n in by_n and covers(by_n[n], doc_id, pages) for n in cited_numbers(answer_text))


def retrieved_page_right(sources: Sequence[Source], doc_id: int, pages: Collection[int]) -> bool:
    """Some given source covers an answer page: the best cited page right can be for this question."""
    return any(covers(s, doc_id, pages) for s in sources)


def normalize(text: str) -> str:
    """Lower case, no punctuation or symbols (decimal points kept), articles or citations, one space; `2,048` → `2048`.

    >>> normalize("The Adam optimizer [1], with β2 = 0.98 and 2,048 tokens — fast.")
    'adam optimizer with β2 0.98 and 2048 tokens fast'
    """
    text = unicodedata.normalize("NFKC", _CITATION.sub(" ", text)).lower()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=\d)\.(?=\d)", "\x00", text)  # keep decimal points
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text.replace("'", ""))
    text = text.replace("\x00", ".")
    return " ".join(_ARTICLES.sub(" ", text).split())


def key_fact_present(answer_text: str, key_facts: Iterable[str]) -> bool:
    """One of the accepted phrasings of the key fact appears in the answer, as whole words after normalising.

    >>> key_fact_present("It has 6 layers [1].", ["6 layers", "six layers"]), key_fact_present("16 layers", ["6 layers"])
    (True, False)
    """
    answer = f" {normalize(answer_text)} "
    return any(f" {normalize(fact)} " in answer for fact in key_facts if normalize(fact))


def _tokens(text: str) -> list[str]:
    return normalize(text).split()


def _f1(matched: int, predicted: int, reference: int) -> float:
    """F1 of `matched` tokens out of `predicted` and `reference` (1.0 when both are empty)."""
    if not predicted or not reference:
        return float(predicted == reference)
    if matched == 0:
        return 0.0
    precision, recall = matched / predicted, matched / reference
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 between a prediction and a reference answer.

    >>> round(token_f1("six identical layers", "a stack of six identical layers"), 3)
    0.75
    """
    pred, ref = _tokens(prediction), _tokens(reference)
    return _f1(sum((Counter(pred) & Counter(ref)).values()), len(pred), len(ref))


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (β = 1): longest common token subsequence over both lengths.

    >>> round(rouge_l("the encoder has six layers", "six layers form the encoder"), 3)
    0.5
    """
    pred, ref = _tokens(prediction), _tokens(reference)
    previous = [0] * (len(ref) + 1)
    for p in pred:
        current = [0]
        for j, r in enumerate(ref, start=1):
            current.append(previous[j - 1] + 1 if p == r else max(previous[j], current[j - 1]))
        previous = current
    return _f1(previous[-1], len(pred), len(ref))


def word_count(text: str) -> int:
    return len(text.split())


# --- aggregates -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Rate:
    """A mean over a named set of questions; `value` is None when the set is empty."""

    value: float | None
    count: int

    def __str__(self) -> str:
        return "n/a (0)" if self.value is None else f"{self.value:.2f} ({self.count})"


def mean(values: Sequence[float | bool]) -> Rate:
    return Rate(sum(map(float, values)) / len(values) if values else None, len(values))


@dataclass(frozen=True, slots=True)
class Abstention:
    precision: Rate  # of the replies that abstained, the share that should have (count: replies that abstained)
    recall: Rate  # of the questions that should be declined, the share declined (count: such questions)


def abstention_scores(pairs: Iterable[tuple[bool, bool]]) -> Abstention:
    """From (should abstain, did abstain) pairs; abstaining on an answerable question is a false abstention.

    >>> a = abstention_scores([(True, True), (True, False), (False, True), (False, False)])
    >>> str(a.precision), str(a.recall)
    ('0.50 (2)', '0.50 (2)')
    """
    pairs = list(pairs)
    flagged = [should for should, did in pairs if did]
    declinable = [did for should, did in pairs if should]
    return Abstention(precision=mean(flagged), recall=mean(declinable))
