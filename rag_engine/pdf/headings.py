"""Headings: which short lines are section headings (numbered, a known section name, or bold and large against the body
font), and cutting a heading out of the block MuPDF merged it into."""

from __future__ import annotations

import re
from collections import Counter

from rag_engine.pdf.lines import TextBlock, TextLine

NUMBERED_HEADING = re.compile(r"^(?:(?:\d{1,2}|[A-Z])(?:\.\d{1,2}){0,3}\.?|[IVX]{1,5}\.)\s+([A-Z][^\n]*)$")
KNOWN_HEADINGS = frozenset({
    "abstract", "introduction", "background", "related work", "method", "methods", "methodology", "approach",
    "experiments", "experimental setup", "evaluation", "results", "discussion", "analysis", "conclusion",
    "conclusions", "conclusion and future work", "future work", "limitations", "references", "bibliography",
    "acknowledgements", "acknowledgments", "acknowledgement", "acknowledgment", "appendix", "appendices",
    "supplementary material", "broader impact", "ethics statement",
})


def estimate_body_size(raw_pages: list[list[TextBlock]]) -> float:
    sizes: Counter[float] = Counter()
    for blocks in raw_pages:
        for block in blocks:
            for line in block.lines:
                sizes[round(line.size)] += len(line.text)
    return float(sizes.most_common(1)[0][0]) if sizes else 10.0


def split_headings(block: TextBlock, body_size: float) -> list[tuple[TextBlock, bool]]:
    """MuPDF sometimes puts a heading in one block with the paragraph after it: cut it out.

    Lines are grouped into rows (same height on the page) and a row into segments (no wide gap between lines);
    a row whose first segment is a heading starts a new piece.
    """
    if not block.lines[0].on_axis:
        return [(block, False)]
    rows: list[list[TextLine]] = []
    for line in block.lines:
        if rows and _same_row(rows[-1][-1], line):
            rows[-1].append(line)
        else:
            rows.append([line])
    pieces: list[tuple[TextBlock, bool]] = []
    current: list[TextLine] = []
    for row in rows:
        row.sort(key=lambda line: line.x0)
        first = [row[0]]
        for line in row[1:]:
            if line.x0 - first[-1].x1 > 2 * max(line.size, first[-1].size):
                break
            first.append(line)
        head = TextBlock(first)
        text = " ".join(line.text for line in first)
        if _is_heading(head, text, body_size):
            if not current and pieces and pieces[-1][1] and not NUMBERED_HEADING.match(text):
                pieces[-1][0].lines.extend(first)  # a heading (or title) set over two lines
            else:
                if current:
                    pieces.append((TextBlock(current), False))
                pieces.append((head, True))
            current = row[len(first):]
        else:
            current.extend(row)
    if current:
        pieces.append((TextBlock(current), False))
    return pieces


def _same_row(a: TextLine, b: TextLine) -> bool:
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    return overlap > 0.5 * min(a.y1 - a.y0, b.y1 - b.y0)


def _is_heading(block: TextBlock, text: str, body_size: float) -> bool:
    lines = block.lines
    if not lines[0].on_axis or len(lines) > 3 or len(text) > 120 or len(text.split()) > 16:
        return False
    if sum(ch.isalpha() for ch in text) < 3 or text[-1] in ".,;" or not (text[0].isupper() or text[0].isdigit()):
        return False
    bold = all(line.bold for line in lines)
    size = max(line.size for line in lines)
    large = size >= body_size * 1.15
    if NUMBERED_HEADING.match(text):
        return bold or large
    if text.rstrip(":").lower() in KNOWN_HEADINGS:
        return bold or large or text.isupper()
    return bold and large
