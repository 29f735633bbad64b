"""Which sources an answer's words come from: the check behind the citations a reply shows.

Small models cite loosely: on the evaluation set Qwen2.5-Coder-0.5B cited a source covering the answer's page in 18
of the 36 answerable questions it answered, while the source sharing most of the answer's words covered it in 29
(docs/evaluation.md). An answer's content words (numbers included, a short stop-word list left out) are looked up in
each source's text; a citation stands when its source holds at least `KEEP_SHARE` of what the best source holds,
and when none does, the best-supported source is cited instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

#: A cited source is kept when it holds at least this share of the best source's count of the answer's words.
KEEP_SHARE = 0.8

_WORD = re.compile(r"[a-z0-9]+(?:[.'-][a-z0-9]+)*")
_STOP = frozenset(
    "the and are was were for with that this its from which what how why does did has have had not but can may "
    "also than then them they their there these those into onto over under between each such only both more most "
    "other some any all one two use used uses using paper source sources answer".split()
)


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry meaning: numbers of any length, other words of 3+ letters not in the stop list.

    >>> sorted(content_words("The encoder has 6 identical layers [1]."))
    ['1', '6', 'encoder', 'identical', 'layers']
    """
    return {w for w in _WORD.findall(text.lower()) if w.isdigit() or (len(w) > 2 and w not in _STOP)}


def supported_citations(answer: str, cited: Sequence[int], texts: Mapping[int, str]) -> list[int]:
    """The citations `answer` (its text without citation marks) should carry, given each source's text by number.

    Returns `cited` itself when the answer has no content word found in any source, or when every cited source holds
    at least KEEP_SHARE of the best source's share; otherwise the cited sources that do, or else the best one.

    >>> texts = {1: "We use dropout of 0.1.", 2: "The encoder is a stack of 6 identical layers."}
    >>> supported_citations("The encoder stacks 6 identical layers.", [1], texts)
    [2]
    >>> supported_citations("The encoder stacks 6 identical layers.", [2], texts)
    [2]
    >>> supported_citations("Yes.", [1], texts)  # nothing to check against: the model's choice stands
    [1]
    """
    words = content_words(answer)
    if not words or not texts:
        return list(cited)
    held = {n: len(words & content_words(text)) for n, text in texts.items()}
    best = max(held, key=lambda n: (held[n], -n))  # ties: the higher-ranked source
    if held[best] == 0:
        return list(cited)
    keep = [n for n in cited if held.get(n, 0) >= KEEP_SHARE * held[best]]
    return keep or [best]
