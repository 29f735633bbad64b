"""Where text sits: MuPDF's text as lines and blocks in the page's reading frame (rotated pages turned upright, the
header/footer band marked), and the order to read the blocks in (two columns: the left one before the right one)."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter

import pymupdf

from rag_engine.pdf.cleanup import clean_text
from rag_engine.pdf.lines import TextBlock, TextLine

log = logging.getLogger(__name__)

# Text, with MuPDF's own ligature expansion, clipped to the page; images are not decoded (no PRESERVE_IMAGES).
_TEXT_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP

_HEADER_ZONE = 0.12  # top/bottom fraction of the page where running headers and page numbers live
_MIN_COLUMN_LINES = 4  # fewer lines on one side of a gap is a short line or a label, not a column

#: Lines and characters taken from one page; the rest is dropped. A dense page has ~150 lines and ~8,000 characters,
#: so only a hostile page (10^5 one-letter text objects, a megabyte-long "word") reaches these.
MAX_PAGE_LINES = 20_000
MAX_PAGE_RAW_CHARS = 400_000

_ARXIV_STAMP = re.compile(r"^arXiv:\d{4}\.\d{4,5}(v\d+)?\b")


def page_blocks(page: pymupdf.Page) -> list[TextBlock]:
    """Text blocks as MuPDF groups them, lines cleaned and placed in the page's reading frame."""
    content = page.get_text("dict", flags=_TEXT_FLAGS)
    height = page.cropbox.height or 1.0
    raw_lines: list[tuple[int, tuple[float, float], tuple[float, float, float, float], str, float, bool]] = []
    direction_weight: Counter[tuple[float, float]] = Counter()
    budget_chars = MAX_PAGE_RAW_CHARS
    lines = ((number, line) for number, block in enumerate(content.get("blocks", ())) for line in block.get("lines", ()))
    for number, line in lines:
        if len(raw_lines) >= MAX_PAGE_LINES or budget_chars <= 0:
            log.warning("page %d: text past %d lines or %d characters dropped", page.number + 1, MAX_PAGE_LINES,
                        MAX_PAGE_RAW_CHARS)
            break
        spans = line.get("spans", ())
        text = clean_text("".join(span.get("text", "") for span in spans)[:budget_chars])
        if not text:
            continue
        budget_chars -= len(text)
        sized = [span for span in spans if any(ch.isalnum() for ch in span.get("text", ""))] or list(spans)
        size = max(float(span.get("size", 0.0)) for span in sized)
        bold_chars = sum(len(span["text"]) for span in sized if _is_bold(span))
        bold = bold_chars >= 0.8 * sum(len(span["text"]) for span in sized)
        axis = _axis(line.get("dir", (1.0, 0.0)))
        raw_lines.append((number, axis, tuple(line["bbox"]), text, size, bold))
        direction_weight[axis] += len(text)
    if not raw_lines:
        return []
    dominant = direction_weight.most_common(1)[0][0]
    blocks: dict[int, TextBlock] = {}
    off_axis = TextBlock()
    for number, axis, (x0, y0, x1, y1), text, size, bold in raw_lines:
        on_axis = axis == dominant
        zone = "top" if y1 <= height * _HEADER_ZONE else "bottom" if y0 >= height * (1 - _HEADER_ZONE) else None
        fx0, fy0, fx1, fy1 = _to_frame((x0, y0, x1, y1), dominant)
        item = TextLine(text, fx0, fy0, fx1, fy1, zone, size, bold, on_axis)
        if on_axis:
            blocks.setdefault(number, TextBlock()).lines.append(item)
        elif not _ARXIV_STAMP.match(text):  # the sideways arXiv margin stamp is noise; other sideways text is kept
            off_axis.lines.append(item)
    ordered = list(blocks.values())
    for block in ordered:
        if len({line.zone for line in block.lines}) > 1:  # a paragraph reaching into the band is body text
            for line in block.lines:
                line.zone = None
    if off_axis.lines:
        ordered.append(off_axis)  # sideways text (axis labels, rotated tables) goes after the page's body
    return ordered


def _is_bold(span: dict) -> bool:
    font = span.get("font", "")
    return bool(span.get("flags", 0) & pymupdf.TEXT_FONT_BOLD) or any(
        mark in font for mark in ("Bold", "Medi", "Semibold", "Heavy", "Black", "CMBX", "CMB10", ".B")
    )


def _axis(direction: tuple[float, float]) -> tuple[float, float]:
    """The nearest of the four axes to a line's writing direction; skewed text gets a key of its own."""
    dx, dy = direction
    for axis in ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)):
        if dx * axis[0] + dy * axis[1] > 0.98:
            return axis
    return (round(dx, 1), round(dy, 1))


def _to_frame(bbox: tuple[float, float, float, float], axis: tuple[float, float]) -> tuple[float, float, float, float]:
    """Turn a bbox so that `axis` writes left to right (lines then stack downwards, as on an upright page)."""
    c, s = axis
    xs, ys = [], []
    for x in (bbox[0], bbox[2]):
        for y in (bbox[1], bbox[3]):
            xs.append(x * c + y * s)
            ys.append(-x * s + y * c)
    return min(xs), min(ys), max(xs), max(ys)


def reading_order(blocks: list[TextBlock]) -> list[TextBlock]:
    """Top to bottom; where the page has two columns, the left column before the right one.

    A block that crosses the gutter (title, abstract, full-width figure or table) closes the columns above it.
    """
    on_axis = [block for block in blocks if block.lines[0].on_axis]
    rest = [block for block in blocks if not block.lines[0].on_axis]
    gutter = _gutter([line for block in on_axis for line in block.lines])
    if gutter is None:
        return sorted(on_axis, key=lambda b: (b.y0, b.x0)) + rest
    slack = 3.0

    def side(block: TextBlock) -> int:
        if block.x1 <= gutter + slack:
            return 0
        if block.x0 >= gutter - slack:
            return 1
        return -1

    ordered: list[TextBlock] = []
    columns: list[TextBlock] = []
    for block in sorted(on_axis, key=lambda b: (b.y0, b.x0)):
        if side(block) < 0:
            ordered.extend(sorted(columns, key=lambda b: (side(b), b.y0, b.x0)))
            columns = []
            ordered.append(block)
        else:
            columns.append(block)
    ordered.extend(sorted(columns, key=lambda b: (side(b), b.y0, b.x0)))
    return ordered + rest


def _gutter(lines: list[TextLine]) -> float | None:
    """The x of the gap between two text columns: the spot in the middle band of the text that the fewest
    characters' lines cross, when few do and both sides hold real text. None for a one-column page."""
    if not lines:
        return None
    left, right = min(line.x0 for line in lines), max(line.x1 for line in lines)
    lo, hi = int(left + 0.3 * (right - left)), int(left + 0.7 * (right - left))
    if hi - lo < 10:
        return None
    # How many characters' lines cross each whole point of x changes only where a line starts or stops: walk those
    # places in order (cost per line, not per point of width: a page may be 10^8 pt wide).
    changes: Counter[int] = Counter()
    total = 0
    for line in lines:
        weight = len(line.text)
        total += weight
        start, stop = max(int(line.x0), lo), min(int(line.x1) + 1, hi + 1)
        if start < stop:
            changes[start] += weight
            changes[stop] -= weight
    places = sorted(changes.keys() | {lo})
    best_x, best, running = lo, None, 0
    centre = (left + right) / 2
    nearest = math.ceil(centre - 0.5)  # the whole point nearest the centre (the lower one on a tie)
    for place, after in zip(places, [*places[1:], hi + 1], strict=True):
        running += changes[place]
        if place > hi:
            break
        x = min(max(nearest, place), min(after, hi + 1) - 1)  # this run's point nearest the centre
        if best is None or running < best or (running == best and abs(x - centre) < abs(best_x - centre)):
            best_x, best = x, running
    if best is None or best > 0.25 * total:  # full-width tables and figures may cross it; body text may not
        return None
    left = [len(line.text) for line in lines if line.x1 <= best_x]
    right = [len(line.text) for line in lines if line.x0 >= best_x]
    if min(sum(left), sum(right)) < 0.15 * total or min(len(left), len(right)) < _MIN_COLUMN_LINES:
        return None
    return float(best_x)
