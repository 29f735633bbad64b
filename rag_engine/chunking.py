"""Pages → passages that fit the encoder: cut at paragraph and sentence boundaries, measured in its tokens.

The pages are joined into one text with the character offset of each page's start remembered, so a passage that runs
over a page break keeps both page numbers. LangChain's `RecursiveCharacterTextSplitter` cuts the text into bodies of
at most `max_tokens - overlap` tokens; neighbouring bodies that fit together are joined; each chunk after the first
then starts earlier, with the last `overlap` tokens' worth of whole words before its body. (The splitter's own overlap
is made of whole splits, paragraphs or sentences, so on paper text it would mostly be none.) A chunk's text is an
exact slice of the joined text, and every chunk is measured with `count_tokens` itself before it is returned.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Callable, Sequence

from rag_engine.types import Chunk, PageText

log = logging.getLogger(__name__)

_PAGE_BREAK = "\n\n"  # also the paragraph break inside a page
_HEADING_GLUE = "\n"  # between a heading and its first paragraph; never a split point
# Coarsest first: paragraphs, sentences, clauses, words, characters. Not "\n": it ties headings to their text.
_SEPARATORS = ["\n\n", ". ", "? ", "! ", "; ", ", ", " ", ""]
_WORD = re.compile(r"\S+")

Counter = Callable[[str], int]


def chunk_pages(pages: Sequence[PageText], *, count_tokens: Counter, max_tokens: int, overlap: int) -> list[Chunk]:
    """Passages of at most `max_tokens` tokens (as `count_tokens` counts them), neighbours sharing about `overlap`."""
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2, not {max_tokens}")
    if not 0 <= overlap <= max_tokens // 2:
        log.warning("overlap %d does not fit chunks of %d tokens; using %d", overlap, max_tokens, max_tokens // 2)
        overlap = min(max(overlap, 0), max_tokens // 2)
    text, page_starts, page_numbers, headings = _join(pages)
    if not text.strip():
        return []
    count = _memoized(count_tokens)  # the splitter measures the same pieces again when it merges them
    limit = max_tokens - overlap
    bodies = _merge_small(text, _split(text, count, limit), count, limit)

    chunks: list[Chunk] = []
    previous: tuple[int, int] | None = None  # the previous chunk's start in `text` and its token count
    for start, body, body_tokens in bodies:
        end = start + len(body)
        chunk_start, tokens = start, body_tokens
        if previous is not None and overlap:
            window_start, window_tokens = previous
            window = text[window_start:start].rstrip()  # the previous chunk, up to its last word
            budget = min(overlap, max_tokens - body_tokens)
            while budget > 0:
                tail = _tail(window, window_tokens, count, budget)
                if not tail:
                    break
                tail_start = window_start + len(window) - len(tail)
                joined_tokens = count(text[tail_start:end])
                if joined_tokens <= max_tokens:
                    chunk_start, tokens = tail_start, joined_tokens
                    break
                budget -= max(1, joined_tokens - max_tokens)  # a tokenizer not additive over the join overshot
        previous = (chunk_start, tokens)
        chunks.append(
            Chunk(
                text=text[chunk_start:end],  # an exact slice: paragraph and page breaks kept
                page_start=page_numbers[bisect.bisect_right(page_starts, chunk_start) - 1],
                page_end=page_numbers[bisect.bisect_right(page_starts, end - 1) - 1],
                section=_section(headings, start + len(body) // 2),
                ordinal=len(chunks),
            )
        )
    return chunks


def _join(pages: Sequence[PageText]) -> tuple[str, list[int], list[int], list[tuple[int, str]]]:
    """One text for the document, where each page starts in it, and its headings at offsets in it.

    The paragraph break after a heading becomes a single newline, which the splitter never cuts at: a heading stays
    with the text it heads instead of ending the chunk before it.
    """
    parts: list[str] = []
    page_starts: list[int] = []
    page_numbers: list[int] = []
    headings: list[tuple[int, str]] = []
    offset = 0
    glue_next = False  # the previous page ended with a heading
    for page in pages:
        if not page.text.strip():
            continue
        if parts:
            gap = _HEADING_GLUE if glue_next else _PAGE_BREAK
            parts.append(gap)
            offset += len(gap)
        page_starts.append(offset)
        page_numbers.append(page.number)
        cursor, glue_next = 0, False
        for at, heading in sorted(page.headings):
            end = at + len(heading)
            if at < cursor or page.text[at:end] != heading:
                continue  # not where it says it is: keep the text, drop the heading
            parts.append(page.text[cursor:end])
            headings.append((offset + at - cursor, heading))
            offset += end - cursor
            cursor = end
            if page.text.startswith(_PAGE_BREAK, end):
                parts.append(_HEADING_GLUE)
                offset += len(_HEADING_GLUE)
                cursor = end + len(_PAGE_BREAK)
            glue_next = not page.text[end:].strip()
        parts.append(page.text[cursor:])
        offset += len(page.text) - cursor
    return "".join(parts), page_starts, page_numbers, headings


def _split(text: str, count: Counter, limit: int) -> list[tuple[int, str, int]]:
    """Non-overlapping bodies of at most `limit` tokens: (offset in `text`, body, its tokens)."""
    # Imported here: LangChain pulls in ~0.2 s of modules that commands which only read the index never need.
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=limit,
        chunk_overlap=0,
        length_function=count,
        separators=_SEPARATORS,
        keep_separator="end",  # a sentence keeps its full stop; pieces then join back into exact substrings
        strip_whitespace=True,
    )
    bodies: list[tuple[int, str, int]] = []
    cursor = 0
    for piece in splitter.split_text(text):
        if not piece.strip():
            continue
        at = text.find(piece, cursor)
        if at < 0:  # cannot happen with keep_separator; keep going rather than lose the passage's place
            log.warning("chunk not found in the page text; using the previous offset")
            at = cursor
        else:
            cursor = at + len(piece)
        tokens = count(piece)
        if tokens > limit and len(piece) > 1 and limit > 1:
            # The splitter adds up the tokens of the pieces it joins; a tokenizer that is not additive over the
            # joins could exceed the limit, so such a body is split again with a proportionally smaller budget.
            smaller = max(1, min(limit - 1, limit * limit // tokens))
            bodies.extend((at + sub_at, sub, n) for sub_at, sub, n in _split(piece, count, smaller))
        else:
            bodies.append((at, piece, tokens))
    return bodies


def _merge_small(
    text: str, bodies: list[tuple[int, str, int]], count: Counter, limit: int
) -> list[tuple[int, str, int]]:
    """Join neighbouring bodies while they fit. The splitter leaves the last sentences of a long paragraph as a
    short body of their own; joined with what follows, chunks are fuller and fewer."""
    merged: list[tuple[int, str, int]] = []
    for start, body, tokens in bodies:
        if merged:
            previous_start, previous, previous_tokens = merged[-1]
            # Only measure joins that can fit by the sum (for a tokenizer splitting at whitespace, the sum is exact).
            if previous_tokens + tokens <= limit and text.startswith(previous, previous_start):
                joined = text[previous_start : start + len(body)]
                joined_tokens = count(joined)
                if joined_tokens <= limit:
                    merged[-1] = (previous_start, joined, joined_tokens)
                    continue
        merged.append((start, body, tokens))
    return merged


def _tail(text: str, text_tokens: int, count: Counter, budget: int) -> str:
    """The longest run of whole words ending `text` that counts at most `budget` tokens (an exact suffix)."""
    starts = [match.start() for match in _WORD.finditer(text)]
    if not starts or budget <= 0:
        return ""
    # Start from the text's own tokens-per-word rate, then step: a few calls instead of a search over all lengths.
    take = max(1, min(len(starts), int(budget * len(starts) / max(text_tokens, 1))))
    fits = count(text[starts[-take]:]) <= budget
    while fits and take < len(starts) and count(text[starts[-(take + 1)] :]) <= budget:
        take += 1
    while not fits and take > 1:
        take -= 1
        fits = count(text[starts[-take]:]) <= budget
    return text[starts[-take]:] if fits else ""


def _memoized(count_tokens: Counter) -> Counter:
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in cache:
            cache[text] = count_tokens(text)
        return cache[text]

    return count


def _section(headings: list[tuple[int, str]], offset: int) -> str | None:
    """The last heading before `offset` (a chunk's middle: a heading near a chunk's end belongs to the next one)."""
    index = bisect.bisect_right(headings, offset, key=lambda item: item[0]) - 1
    return headings[index][1] if index >= 0 else None
