"""Free text → a safe FTS5 MATCH expression: each word quoted (so no user input is ever FTS5 syntax), OR-ed.

>>> match_expression('what\\'s "x"? (a*b) -- NEAR')
'"x" OR "b" OR "near"'
>>> match_expression("How does ColBERT's late interaction work?")
'"colbert" OR "late" OR "interaction" OR "work"'
>>> match_expression("the and of") is None  # stopwords only: fall back to them rather than find nothing
False
>>> match_expression("  ?! -- ") is None
True
"""

from __future__ import annotations

import re
import unicodedata

#: Most distinct terms sent to FTS5; a pasted page of text should not become a thousand-term query.
MAX_TERMS = 32

# Letters and digits only: FTS5's unicode61 tokenizer also splits on '_' and punctuation.
_WORD = re.compile(r"[^\W_]+")

# Short English list: question words and glue that would make every chunk match.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just let me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own s same she should so some such t than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves d ll m re ve
    """.split()
)


def terms(text: str) -> list[str]:
    """Distinct lower-cased words of `text` in order, stopwords dropped (kept if nothing else is left)."""
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    distinct = list(dict.fromkeys(words))
    content = [word for word in distinct if word not in STOPWORDS]
    return (content or distinct)[:MAX_TERMS]


def match_expression(text: str) -> str | None:
    """The FTS5 query for `text`, or None when it has no words at all."""
    words = terms(text)
    if not words:
        return None
    # A word from _WORD holds no double quote, so wrapping it in quotes always yields a plain FTS5 string.
    return " OR ".join(f'"{word}"' for word in words)
