"""Choosing a title: the metadata title unless it is junk (a placeholder, a file name, a word-processor label), else the
largest text at the top of the first page, else the file name."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePath

from rag_engine.pdf.cleanup import _clean
from rag_engine.pdf.layout import _reading_order
from rag_engine.pdf.lines import _Block

_JUNK_TITLE = re.compile(
    r"^(untitled|title|document\d*|slide\s*\d+|\s*)$"  # placeholders
    r"|^microsoft (word|powerpoint) - "  # "Microsoft Word - final_v3.docx"
    r"|\.(docx?|pdf|tex|dvi|txt|rtf|odt|ps|indd)$",  # a file name
    re.IGNORECASE,
)


def _title(metadata_title: str, raw_pages: list[list[_Block]], filename: str) -> str:
    stem = PurePath(filename).stem if filename else ""
    meta = _clean(metadata_title)
    if not _junk_title(meta, stem):
        return meta[:300]
    from_text = _largest_text(raw_pages[0]) if raw_pages else ""
    if from_text:
        return from_text
    return stem or "Untitled document"


def _junk_title(title: str, stem: str) -> bool:
    """Empty, a placeholder, a file name, or a word-processor label rather than a paper's title."""
    if sum(ch.isalpha() for ch in title) < 3 or _JUNK_TITLE.search(title):
        return True
    if stem and title.lower() == stem.lower():
        return True
    return " " not in title and ("_" in title or "." in title)  # an identifier such as "anaphora_resolution2_new"


def _largest_text(blocks: list[_Block]) -> str:
    """The first run of lines in the largest font on the page's upper part, e.g. a title over two lines."""
    lines = [
        line
        for block in _reading_order(blocks)
        for line in block.lines
        if line.on_axis and sum(ch.isalpha() for ch in line.text) >= 2
    ]
    if not lines:
        return ""
    top = min(line.y0 for line in lines)
    bottom = max(line.y1 for line in lines)
    upper = [line for line in lines if line.y0 <= top + 0.6 * (bottom - top)] or lines
    biggest = max(line.size for line in upper)
    sizes: Counter[int] = Counter()
    for line in lines:
        sizes[round(line.size)] += len(line.text)
    most_lines = 1 if biggest <= sizes.most_common(1)[0][0] + 0.5 else 3  # no title font: the first line will do
    picked: list[str] = []
    started = False
    for line in upper:
        if line.size >= biggest - 0.5:
            picked.append(line.text)
            started = True
            if len(picked) == most_lines:
                break
        elif started:
            break
    title = " ".join(picked)
    if len(title) > 200:
        title = title[:200].rsplit(" ", 1)[0] + "…"
    return title
