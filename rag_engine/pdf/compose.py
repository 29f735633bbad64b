"""Composing a page's text: running headers/footers dropped, blocks in reading order, paragraphs rejoined across block
breaks and headings recorded at their offsets, all within the per-page and per-document text caps."""

from __future__ import annotations

import logging
from collections import Counter

from rag_engine.pdf.cleanup import join_lines, running_key, running_lines, word_counts
from rag_engine.pdf.headings import estimate_body_size, split_headings
from rag_engine.pdf.layout import reading_order
from rag_engine.pdf.lines import TextBlock
from rag_engine.types import PageText

log = logging.getLogger(__name__)

#: Text kept per page and per document (a dense two-column page holds about 8,000 characters).
MAX_PAGE_CHARS = 100_000
MAX_DOC_CHARS = 8_000_000


def compose_pages(raw_pages: list[list[TextBlock]]) -> list[PageText]:
    running = running_lines(raw_pages)
    vocabulary = word_counts(raw_pages)
    body_size = estimate_body_size(raw_pages)
    pages: list[PageText] = []
    remaining = MAX_DOC_CHARS
    for number, blocks in enumerate(raw_pages, start=1):
        kept: list[TextBlock] = []
        for block in blocks:
            lines = [line for line in block.lines if not (line.zone and running_key(line) in running)]
            if lines:
                kept.append(TextBlock(lines))
        page = _page_text(number, reading_order(kept), vocabulary, body_size, min(MAX_PAGE_CHARS, remaining))
        remaining -= len(page.text)
        pages.append(page)
    return pages


def _page_text(number: int, blocks: list[TextBlock], vocabulary: Counter[str], body_size: float, limit: int) -> PageText:
    # Paragraphs are kept as their lines and joined once: rejoining a growing paragraph block by block is quadratic.
    paragraph_lines: list[list[str]] = []
    heading_at: list[int] = []  # indexes into paragraph_lines
    open_paragraph = False  # the last paragraph may continue into the next block
    for block, is_heading in (piece for whole in blocks for piece in split_headings(whole, body_size)):
        lines = [line.text for line in block.lines if line.text]
        if not lines:
            continue
        if is_heading:
            heading_at.append(len(paragraph_lines))
            paragraph_lines.append(lines)
            open_paragraph = False
        elif open_paragraph and _continues(paragraph_lines[-1][-1], lines[0]):
            paragraph_lines[-1].extend(lines)
        else:
            paragraph_lines.append(lines)
            open_paragraph = True
    paragraphs = [join_lines(lines, vocabulary) for lines in paragraph_lines]
    page_text, headings, offset = "", [], 0
    heading_set = set(heading_at)
    for index, paragraph in enumerate(paragraphs):
        if index in heading_set:
            headings.append((offset, paragraph))
        offset += len(paragraph) + 2
    page_text = "\n\n".join(paragraphs)
    if len(page_text) > limit:
        log.warning("page %d text truncated from %d to %d characters", number, len(page_text), limit)
        page_text = page_text[: max(limit, 0)]
        headings = [(at, heading) for at, heading in headings if at + len(heading) <= len(page_text)]
    return PageText(number=number, text=page_text, headings=tuple(headings))


def _continues(previous: str, text: str) -> bool:
    """A paragraph cut by a column or block break: it ends mid-sentence and the next block starts in lowercase."""
    return previous[-1] not in ".!?:;" and text[0].islower()
