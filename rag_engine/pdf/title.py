"""Choosing a title: the metadata title unless it is junk (a placeholder, a file name, a word-processor label), else the
text set in a title font at the top of the first page, else the first page's first heading that is not a section name,
else the file name, else the first line without its page label. Never "Page 1. …" for every paper of a kind: a title
must tell papers apart in a listing (issue #9)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePath

from rag_engine.pdf.cleanup import clean_text
from rag_engine.pdf.headings import KNOWN_HEADINGS, NUMBERED_HEADING
from rag_engine.pdf.layout import reading_order
from rag_engine.pdf.lines import TextBlock

_JUNK_TITLE = re.compile(
    r"^(untitled|title|document\d*|slide\s*\d+|\s*)$"  # placeholders
    r"|^microsoft (word|powerpoint) - "  # "Microsoft Word - final_v3.docx"
    r"|\.(docx?|pdf|tex|dvi|txt|rtf|odt|ps|indd)$",  # a file name
    re.IGNORECASE,
)
_PAGE_LABEL = re.compile(r"^(?:page|p\.)\s*\d+\s*[.:\-–—]?\s*", re.IGNORECASE)  # "Page 1. ", "p. 3 – "


def guess_title(
    metadata_title: str, raw_pages: list[list[TextBlock]], filename: str, headings: tuple[tuple[int, str], ...] = ()
) -> str:
    """`headings`: the first page's headings, as composed (offset, text)."""
    stem = clean_text(PurePath(filename).stem) if filename else ""
    meta = clean_text(metadata_title)
    if not _junk_title(meta, stem):
        return meta[:300]
    first_page = raw_pages[0] if raw_pages else []
    from_text = _largest_text(first_page, title_font_only=True)
    if from_text:
        return from_text
    heading = next((text for _, text in headings if not _is_section_name(text)), "")
    if heading:
        return heading[:200]
    if stem:
        return stem
    return _PAGE_LABEL.sub("", _largest_text(first_page, title_font_only=False)) or "Untitled document"


def _is_section_name(heading: str) -> bool:
    """"Abstract", "1 Introduction", "A. Appendix": a section every paper has, so no title."""
    match = NUMBERED_HEADING.match(heading)
    name = match.group(1) if match else heading
    return name.rstrip(":").lower() in KNOWN_HEADINGS


def _junk_title(title: str, stem: str) -> bool:
    """Empty, a placeholder, a file name, or a word-processor label rather than a paper's title."""
    if sum(ch.isalpha() for ch in title) < 3 or _JUNK_TITLE.search(title):
        return True
    if stem and title.lower() == stem.lower():
        return True
    return " " not in title and ("_" in title or "." in title)  # an identifier such as "anaphora_resolution2_new"


def _largest_text(blocks: list[TextBlock], *, title_font_only: bool) -> str:
    """The first run of lines in the largest font on the page's upper part, e.g. a title over two lines.

    When no line is larger than the body text: "" with `title_font_only`, else the first line."""
    lines = [
        line
        for block in reading_order(blocks)
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
    no_title_font = biggest <= sizes.most_common(1)[0][0] + 0.5
    if no_title_font and title_font_only:
        return ""
    most_lines = 1 if no_title_font else 3
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
