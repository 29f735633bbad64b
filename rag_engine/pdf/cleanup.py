"""Cleaning text: NFKC normalisation and invisible characters dropped, running headers/footers (page numbers included)
found, and words hyphenated across a line break made whole again."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

from rag_engine.pdf.lines import TextBlock, TextLine

_HEADER_MIN_PAGES = 3
_HEADER_MIN_SHARE = 0.4  # a line repeated in that zone on this share of the pages is a running header

_DROP_CHARS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028\u2029\u2060\ufeff\ufffd\ue000-\uf8ff"
    "\u061c\u202a-\u202e\u2066-\u2069]"  # bidi controls (U+200E/200F are above): they can spoof a title's text
)
_DIGITS = re.compile(r"\d+")
_WORD_BEFORE_HYPHEN = re.compile(r"(?<![\w-])([\w-]*\w)-$")
#: Longer runs without a space are no words (a hostile file's megabyte "word"): they are cut into pieces this long,
#: so every later stage (hyphen joining, chunking, tokenizing) sees words of ordinary length.
_MAX_WORD = 64
_LONG_RUN = re.compile(r"\S{%d}(?=\S)" % _MAX_WORD)
_TAIL = _MAX_WORD + 2
_WORD_AFTER = re.compile(r"^(\w+)")


def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)  # ligatures (ﬁ → fi), full-width forms, Arabic presentation forms
    text = " ".join(_DROP_CHARS.sub("", text).split())  # also folds odd spaces (no-break, ideographic, tabs)
    return _LONG_RUN.sub(r"\g<0> ", text)


def running_key(line: TextLine) -> tuple[str, str]:
    return line.zone or "", _DIGITS.sub("#", line.text.lower())


def running_lines(raw_pages: list[list[TextBlock]]) -> set[tuple[str, str]]:
    """Header/footer lines (page numbers included: digits are masked) seen in the same band on many pages."""
    if len(raw_pages) < _HEADER_MIN_PAGES:
        return set()
    seen: Counter[tuple[str, str]] = Counter()
    for blocks in raw_pages:
        seen.update(
            {running_key(line) for block in blocks for line in block.lines if line.zone and len(line.text) < 200}
        )
    needed = max(_HEADER_MIN_PAGES, math.ceil(_HEADER_MIN_SHARE * len(raw_pages)))
    return {key for key, count in seen.items() if count >= needed}


def word_counts(raw_pages: list[list[TextBlock]]) -> Counter[str]:
    """Words as the document writes them inside lines, to decide whether a line-end hyphen belongs to the word."""
    words: Counter[str] = Counter()
    for blocks in raw_pages:
        for block in blocks:
            for line in block.lines:
                words.update(re.findall(r"\w+(?:-\w+)*", line.text.lower()))
    return words


def join_lines(lines: list[str], vocabulary: Counter[str]) -> str:
    """Lines of one paragraph joined with spaces; a word hyphenated across a line break is made whole again.

    Linear in the text: each join looks only at the last `_MAX_WORD` characters written so far, so neither a very
    long "word" nor thousands of tiny lines make it quadratic (issue #9)."""
    parts: list[str] = []
    tail = ""  # the last characters of the text joined so far, enough to see the word before a hyphen
    written = 0
    for line in lines:
        if not line:
            continue
        if not parts:
            piece = line
        else:
            before = _hyphenated_word(tail, truncated=written > len(tail))
            after = _WORD_AFTER.match(line[: _MAX_WORD + 1])
            if before and after and line[0].islower():
                head, rest = before.lower(), after.group(1).lower()
                joined, hyphenated = head + rest, f"{head}-{rest}"
                # "exam-" + "ple" → "example", but keep "self-attention" and "state-of-the-art" as the text writes them.
                if "-" in head or vocabulary[hyphenated] > vocabulary[joined]:
                    piece = line
                else:
                    parts[-1], tail, written = parts[-1][:-1], tail[:-1], written - 1
                    piece = line
            elif before and after:
                piece = line  # "GPT-" + "3", "ZeRO-" + "DP": a capital or digit after a hyphen is a compound
            else:
                piece = " " + line
        parts.append(piece)
        tail = (tail + piece[-_TAIL:])[-_TAIL:]
        written += len(piece)
    return "".join(parts)


def _hyphenated_word(tail: str, *, truncated: bool) -> str | None:
    """The word (hyphens inside allowed) just before a line-end hyphen, unless it is longer than a real word."""
    match = _WORD_BEFORE_HYPHEN.search(tail) if tail.endswith("-") else None
    if match is None or (match.start() == 0 and truncated):
        return None  # it may go on before the window: a "word" that long is no hyphenated word
    return match.group(1)
