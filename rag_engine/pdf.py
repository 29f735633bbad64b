"""PDF bytes → pages of clean text in reading order, with their headings, or a typed refusal a user can act on.

Synchronous and CPU-bound: callers run `extract_pdf` in a thread. Work is bounded on hostile input: the bytes are
checked before MuPDF sees them, page streams are measured (streaming inflate, capped) before a page is interpreted,
and extracted text is capped per page and per document.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePath

import pymupdf

from rag_engine.errors import DamagedPdf, EmptyFile, NoPages, NotAPdf, NoText, PasswordProtected, TooLarge
from rag_engine.types import ExtractedPdf, PageText

log = logging.getLogger(__name__)

#: A page whose drawing instructions (content streams and form XObjects) unpack to more is skipped: real pages,
#: even vector-heavy figures, stay far below (the largest in the test papers is 47 KB).
MAX_PAGE_CONTENT_BYTES = 64 * 1024 * 1024
#: Unpacked content measured for the whole document; pages past it are skipped. Bounds the work a small file can ask.
MAX_DOC_CONTENT_BYTES = 256 * 1024 * 1024
#: Text kept per page and per document (a dense two-column page holds about 8,000 characters).
MAX_PAGE_CHARS = 100_000
MAX_DOC_CHARS = 8_000_000
#: Fewer letters and digits than this in the whole file means there is no text layer worth indexing.
MIN_TEXT_CHARS = 20

_SIGNATURE = b"%PDF-"
_SIGNATURE_WINDOW = 1024
# Text, with MuPDF's own ligature expansion, clipped to the page; images are not decoded (no PRESERVE_IMAGES).
_TEXT_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
# What MuPDF raises on bad input: its own error classes and the RuntimeError family PyMuPDF wraps them in.
_MUPDF_ERRORS: tuple[type[Exception], ...] = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)
_MUPDF_LOCK = threading.Lock()

_HEADER_ZONE = 0.12  # top/bottom fraction of the page where running headers and page numbers live
_MIN_COLUMN_LINES = 4  # fewer lines on one side of a gap is a short line or a label, not a column
_HEADER_MIN_PAGES = 3
_HEADER_MIN_SHARE = 0.4  # a line repeated in that zone on this share of the pages is a running header

_DROP_CHARS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028\u2029\u2060\ufeff\ufffd\ue000-\uf8ff]"
)
_DIGITS = re.compile(r"\d+")
_WORD_BEFORE_HYPHEN = re.compile(r"([\w-]*\w)-$")
_WORD_AFTER = re.compile(r"^(\w+)")
_ARXIV_STAMP = re.compile(r"^arXiv:\d{4}\.\d{4,5}(v\d+)?\b")
_NUMBERED_HEADING = re.compile(r"^(?:(?:\d{1,2}|[A-Z])(?:\.\d{1,2}){0,3}\.?|[IVX]{1,5}\.)\s+([A-Z][^\n]*)$")
_KNOWN_HEADINGS = frozenset({
    "abstract", "introduction", "background", "related work", "method", "methods", "methodology", "approach",
    "experiments", "experimental setup", "evaluation", "results", "discussion", "analysis", "conclusion",
    "conclusions", "conclusion and future work", "future work", "limitations", "references", "bibliography",
    "acknowledgements", "acknowledgments", "acknowledgement", "acknowledgment", "appendix", "appendices",
    "supplementary material", "broader impact", "ethics statement",
})
_JUNK_TITLE = re.compile(
    r"^(untitled|title|document\d*|slide\s*\d+|\s*)$"  # placeholders
    r"|^microsoft (word|powerpoint) - "  # "Microsoft Word - final_v3.docx"
    r"|\.(docx?|pdf|tex|dvi|txt|rtf|odt|ps|indd)$",  # a file name
    re.IGNORECASE,
)


@dataclass(slots=True)
class _Line:
    text: str  # NFKC-normalised, cleaned, stripped
    x0: float  # bbox in the page's reading frame (dominant text direction turned horizontal)
    y0: float
    x1: float
    y1: float
    zone: str | None  # "top" / "bottom" when inside the header/footer band of the unrotated page
    size: float
    bold: bool
    on_axis: bool  # runs along the page's dominant text direction


@dataclass(slots=True)
class _Block:
    lines: list[_Line] = field(default_factory=list)

    @property
    def x0(self) -> float:
        return min(line.x0 for line in self.lines)

    @property
    def x1(self) -> float:
        return max(line.x1 for line in self.lines)

    @property
    def y0(self) -> float:
        return min(line.y0 for line in self.lines)


def extract_pdf(data: bytes, *, max_bytes: int, max_pages: int, filename: str = "") -> ExtractedPdf:
    """Read a PDF into pages of text in reading order. Raises an `UnsupportedFile` subclass a user can act on."""
    _check_bytes(data, max_bytes)
    # PyMuPDF is not thread-safe (one MuPDF context for the process), and callers run this in worker threads.
    with _MUPDF_LOCK:
        doc = _open(data)
        try:
            page_count = doc.page_count
            if page_count > max_pages:
                raise TooLarge(
                    f"This PDF has {page_count} pages; I can index at most {max_pages}. "
                    "Split it into smaller parts and upload those."
                )
            raw_pages, skipped = _read_pages(doc)
            metadata_title = (doc.metadata or {}).get("title") or ""
        finally:
            doc.close()
    pages = _compose(raw_pages)
    if sum(_alnum(page.text) for page in pages) < MIN_TEXT_CHARS:
        if skipped:
            raise NoText(
                "I found no text I could safely read in this PDF: its pages unpack to an unreasonable amount of "
                "drawing data. Please export the paper to PDF again and upload that."
            )
        raise NoText(
            "This PDF has no text layer: it looks like a scanned document (pictures of pages), and OCR is not "
            "supported. Please upload a version with selectable text."
        )
    return ExtractedPdf(title=_title(metadata_title, raw_pages, filename), page_count=page_count, pages=tuple(pages))


# --- refusing early ---------------------------------------------------------------------------------------------------
def _check_bytes(data: bytes, max_bytes: int) -> None:
    if not data:
        raise EmptyFile("This file is empty (0 bytes). Please upload the PDF again.")
    if _SIGNATURE not in data[:_SIGNATURE_WINDOW]:
        raise NotAPdf("This file is not a PDF (it has no PDF header). Please upload the paper as a PDF file.")
    if len(data) > max_bytes:
        raise TooLarge(
            f"This PDF is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
            "Please upload a smaller file (for example without embedded supplementary material)."
        )


def _open(data: bytes) -> pymupdf.Document:
    damaged = DamagedPdf(
        "This PDF is damaged or incomplete, so I can't read it. Please download it again and upload the new copy."
    )
    try:
        # filetype="pdf": never let MuPDF sniff another format from the bytes.
        doc = pymupdf.open(stream=data, filetype="pdf")
    except _MUPDF_ERRORS as error:
        log.info("MuPDF could not open the file: %s", error)
        raise damaged from error
    if doc.needs_pass:
        doc.close()
        raise PasswordProtected("This PDF is password-protected. Please remove the password and upload it again.")
    if doc.page_count == 0:
        # MuPDF "repairs" a truncated file into an empty document; a real empty document still has its catalog.
        intact = doc.pdf_catalog() > 0
        doc.close()
        if not intact:
            raise damaged
        raise NoPages("This PDF has no pages. Please check that the file is the paper and upload it again.")
    return doc


# --- reading pages ----------------------------------------------------------------------------------------------------
def _read_pages(doc: pymupdf.Document) -> tuple[list[list[_Block]], int]:
    """Each page's text blocks (lines normalised, in reading frame), and how many pages were skipped as too heavy."""
    sizes: dict[int, int] = {}
    budget = MAX_DOC_CONTENT_BYTES
    pages: list[list[_Block]] = []
    skipped = 0
    for index in range(doc.page_count):
        if budget <= 0:  # not even measured: measuring is work too
            log.warning("pages %d-%d skipped: the document's content budget is spent", index + 1, doc.page_count)
            skipped += doc.page_count - index
            pages.extend([] for _ in range(doc.page_count - index))
            break
        try:
            page = doc.load_page(index)
            weight = _content_bytes(doc, page, sizes, min(MAX_PAGE_CONTENT_BYTES, budget))
            budget -= weight
            if weight > MAX_PAGE_CONTENT_BYTES or budget < 0:
                log.warning("page %d skipped: its content unpacks to over %d bytes", index + 1, weight - 1)
                skipped += 1
                pages.append([])
                continue
            pages.append(_page_blocks(page))
        except _MUPDF_ERRORS as error:
            log.warning("page %d unreadable, indexed as empty: %s", index + 1, error)
            pages.append([])
    return pages, skipped


def _content_bytes(doc: pymupdf.Document, page: pymupdf.Page, sizes: dict[int, int], limit: int) -> int:
    """Unpacked size of the page's content streams and form XObjects, counted only up to just past `limit`."""
    # get_xobjects lists the page's form XObjects, nested ones included (images are not interpreted as content)
    xrefs = list(page.get_contents()) + [xref for xref, *_ in page.get_xobjects()]
    total = 0
    for xref in dict.fromkeys(xrefs):
        if xref not in sizes:
            sizes[xref] = _stream_size(doc, xref, MAX_PAGE_CONTENT_BYTES)
        total += sizes[xref]
        if total > limit:
            break
    return total


def _stream_size(doc: pymupdf.Document, xref: int, limit: int) -> int:
    """How many bytes a stream inflates to, stopping just past `limit`. Never holds more than 1 MiB of output."""
    raw = doc.xref_stream_raw(xref) or b""
    kind, value = doc.xref_get_key(xref, "Filter")
    filters = re.findall(r"/(\w+)", value) if kind in ("name", "array") else []
    if not filters:
        return len(raw)
    if filters[0] in ("ASCIIHexDecode", "AHx", "ASCII85Decode", "A85"):
        raw, filters = _ascii_decode(raw, filters[0]), filters[1:]
    if filters not in (["FlateDecode"], ["Fl"]):
        return len(raw)  # other filters: MuPDF streams them, so memory stays flat; size unknown without decoding
    for wbits in (zlib.MAX_WBITS | 32, -zlib.MAX_WBITS):  # zlib or gzip header; then raw deflate
        inflater = zlib.decompressobj(wbits)
        total, pending = 0, raw
        try:
            while pending and total <= limit:
                total += len(inflater.decompress(pending, 1 << 20))
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
            return total
        except zlib.error:
            if total:
                return total  # a broken tail: MuPDF reads what it can, so do we
    return len(raw)


def _ascii_decode(raw: bytes, name: str) -> bytes:
    import base64
    import binascii

    body = raw.strip()
    try:
        if name in ("ASCIIHexDecode", "AHx"):
            body = re.sub(rb"\s", b"", body).rstrip(b">")
            return binascii.unhexlify(body + b"0" * (len(body) % 2))
        return base64.a85decode(body.removesuffix(b"~>"), ignorechars=b" \t\n\r\f\v")
    except ValueError:
        return raw


def _page_blocks(page: pymupdf.Page) -> list[_Block]:
    """Text blocks as MuPDF groups them, lines cleaned and placed in the page's reading frame."""
    content = page.get_text("dict", flags=_TEXT_FLAGS)
    height = page.cropbox.height or 1.0
    raw_lines: list[tuple[int, tuple[float, float], tuple[float, float, float, float], str, float, bool]] = []
    direction_weight: Counter[tuple[float, float]] = Counter()
    for number, block in enumerate(content.get("blocks", ())):
        for line in block.get("lines", ()):
            spans = line.get("spans", ())
            text = _clean("".join(span.get("text", "") for span in spans))
            if not text:
                continue
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
    blocks: dict[int, _Block] = {}
    off_axis = _Block()
    for number, axis, (x0, y0, x1, y1), text, size, bold in raw_lines:
        on_axis = axis == dominant
        zone = "top" if y1 <= height * _HEADER_ZONE else "bottom" if y0 >= height * (1 - _HEADER_ZONE) else None
        fx0, fy0, fx1, fy1 = _to_frame((x0, y0, x1, y1), dominant)
        item = _Line(text, fx0, fy0, fx1, fy1, zone, size, bold, on_axis)
        if on_axis:
            blocks.setdefault(number, _Block()).lines.append(item)
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


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)  # ligatures (ﬁ → fi), full-width forms, Arabic presentation forms
    return " ".join(_DROP_CHARS.sub("", text).split())  # also folds odd spaces (no-break, ideographic, tabs)


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


# --- composing page text ----------------------------------------------------------------------------------------------
def _compose(raw_pages: list[list[_Block]]) -> list[PageText]:
    running = _running_lines(raw_pages)
    vocabulary = _vocabulary(raw_pages)
    body_size = _body_size(raw_pages)
    pages: list[PageText] = []
    remaining = MAX_DOC_CHARS
    for number, blocks in enumerate(raw_pages, start=1):
        kept: list[_Block] = []
        for block in blocks:
            lines = [line for line in block.lines if not (line.zone and _running_key(line) in running)]
            if lines:
                kept.append(_Block(lines))
        page = _page_text(number, _reading_order(kept), vocabulary, body_size, min(MAX_PAGE_CHARS, remaining))
        remaining -= len(page.text)
        pages.append(page)
    return pages


def _running_key(line: _Line) -> tuple[str, str]:
    return line.zone or "", _DIGITS.sub("#", line.text.lower())


def _running_lines(raw_pages: list[list[_Block]]) -> set[tuple[str, str]]:
    """Header/footer lines (page numbers included: digits are masked) seen in the same band on many pages."""
    if len(raw_pages) < _HEADER_MIN_PAGES:
        return set()
    seen: Counter[tuple[str, str]] = Counter()
    for blocks in raw_pages:
        seen.update(
            {_running_key(line) for block in blocks for line in block.lines if line.zone and len(line.text) < 200}
        )
    needed = max(_HEADER_MIN_PAGES, math.ceil(_HEADER_MIN_SHARE * len(raw_pages)))
    return {key for key, count in seen.items() if count >= needed}


def _vocabulary(raw_pages: list[list[_Block]]) -> Counter[str]:
    """Words as the document writes them inside lines, to decide whether a line-end hyphen belongs to the word."""
    words: Counter[str] = Counter()
    for blocks in raw_pages:
        for block in blocks:
            for line in block.lines:
                words.update(re.findall(r"\w+(?:-\w+)*", line.text.lower()))
    return words


def _body_size(raw_pages: list[list[_Block]]) -> float:
    sizes: Counter[float] = Counter()
    for blocks in raw_pages:
        for block in blocks:
            for line in block.lines:
                sizes[round(line.size)] += len(line.text)
    return float(sizes.most_common(1)[0][0]) if sizes else 10.0


def _reading_order(blocks: list[_Block]) -> list[_Block]:
    """Top to bottom; where the page has two columns, the left column before the right one.

    A block that crosses the gutter (title, abstract, full-width figure or table) closes the columns above it.
    """
    on_axis = [block for block in blocks if block.lines[0].on_axis]
    rest = [block for block in blocks if not block.lines[0].on_axis]
    gutter = _gutter([line for block in on_axis for line in block.lines])
    if gutter is None:
        return sorted(on_axis, key=lambda b: (b.y0, b.x0)) + rest
    slack = 3.0

    def side(block: _Block) -> int:
        if block.x1 <= gutter + slack:
            return 0
        if block.x0 >= gutter - slack:
            return 1
        return -1

    ordered: list[_Block] = []
    columns: list[_Block] = []
    for block in sorted(on_axis, key=lambda b: (b.y0, b.x0)):
        if side(block) < 0:
            ordered.extend(sorted(columns, key=lambda b: (side(b), b.y0, b.x0)))
            columns = []
            ordered.append(block)
        else:
            columns.append(block)
    ordered.extend(sorted(columns, key=lambda b: (side(b), b.y0, b.x0)))
    return ordered + rest


def _gutter(lines: list[_Line]) -> float | None:
    """The x of the gap between two text columns: the spot in the middle band of the text that the fewest
    characters' lines cross, when few do and both sides hold real text. None for a one-column page."""
    if not lines:
        return None
    left, right = min(line.x0 for line in lines), max(line.x1 for line in lines)
    lo, hi = int(left + 0.3 * (right - left)), int(left + 0.7 * (right - left))
    if hi - lo < 10:
        return None
    crossing = [0] * (hi - lo + 2)  # difference array over whole points of x
    total = 0
    for line in lines:
        weight = len(line.text)
        total += weight
        start, stop = max(int(line.x0), lo), min(int(line.x1) + 1, hi + 1)
        if start < stop:
            crossing[start - lo] += weight
            crossing[stop - lo] -= weight
    best_x, best, running = lo, None, 0
    centre = (left + right) / 2
    for offset, change in enumerate(crossing[:-1]):
        running += change
        x = lo + offset
        if best is None or running < best or (running == best and abs(x - centre) < abs(best_x - centre)):
            best_x, best = x, running
    if best is None or best > 0.25 * total:  # full-width tables and figures may cross it; body text may not
        return None
    left = [len(line.text) for line in lines if line.x1 <= best_x]
    right = [len(line.text) for line in lines if line.x0 >= best_x]
    if min(sum(left), sum(right)) < 0.15 * total or min(len(left), len(right)) < _MIN_COLUMN_LINES:
        return None
    return float(best_x)


def _split_headings(block: _Block, body_size: float) -> list[tuple[_Block, bool]]:
    """MuPDF sometimes puts a heading in one block with the paragraph after it: cut it out.

    Lines are grouped into rows (same height on the page) and a row into segments (no wide gap between lines);
    a row whose first segment is a heading starts a new piece.
    """
    if not block.lines[0].on_axis:
        return [(block, False)]
    rows: list[list[_Line]] = []
    for line in block.lines:
        if rows and _same_row(rows[-1][-1], line):
            rows[-1].append(line)
        else:
            rows.append([line])
    pieces: list[tuple[_Block, bool]] = []
    current: list[_Line] = []
    for row in rows:
        row.sort(key=lambda line: line.x0)
        first = [row[0]]
        for line in row[1:]:
            if line.x0 - first[-1].x1 > 2 * max(line.size, first[-1].size):
                break
            first.append(line)
        head = _Block(first)
        text = " ".join(line.text for line in first)
        if _is_heading(head, text, body_size):
            if not current and pieces and pieces[-1][1] and not _NUMBERED_HEADING.match(text):
                pieces[-1][0].lines.extend(first)  # a heading (or title) set over two lines
            else:
                if current:
                    pieces.append((_Block(current), False))
                pieces.append((head, True))
            current = row[len(first):]
        else:
            current.extend(row)
    if current:
        pieces.append((_Block(current), False))
    return pieces


def _same_row(a: _Line, b: _Line) -> bool:
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    return overlap > 0.5 * min(a.y1 - a.y0, b.y1 - b.y0)


def _page_text(number: int, blocks: list[_Block], vocabulary: Counter[str], body_size: float, limit: int) -> PageText:
    paragraphs: list[str] = []
    heading_at: list[int] = []  # indexes into paragraphs
    open_paragraph = False  # the last paragraph may continue into the next block
    for block, is_heading in (piece for whole in blocks for piece in _split_headings(whole, body_size)):
        text = _join_lines([line.text for line in block.lines], vocabulary)
        if not text:
            continue
        if is_heading:
            heading_at.append(len(paragraphs))
            paragraphs.append(text)
            open_paragraph = False
        elif open_paragraph and _continues(paragraphs[-1], text):
            paragraphs[-1] = _join_lines([paragraphs[-1], text], vocabulary)
        else:
            paragraphs.append(text)
            open_paragraph = True
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


def _join_lines(lines: list[str], vocabulary: Counter[str]) -> str:
    """Lines of one paragraph joined with spaces; a word hyphenated across a line break is made whole again."""
    out = ""
    for line in lines:
        if not out:
            out = line
            continue
        before = _WORD_BEFORE_HYPHEN.search(out)
        after = _WORD_AFTER.match(line)
        if before and after and line[0].islower():
            head, tail = before.group(1).lower(), after.group(1).lower()
            joined, hyphenated = head + tail, f"{head}-{tail}"
            # "exam-" + "ple" → "example", but keep "self-attention" and "state-of-the-art" as the text writes them.
            if "-" in head or vocabulary[hyphenated] > vocabulary[joined]:
                out += line
            else:
                out = out[:-1] + line
        elif before and after:
            out += line  # "GPT-" + "3", "ZeRO-" + "DP": a capital or digit after a hyphen is a compound
        else:
            out += " " + line
    return out


def _continues(previous: str, text: str) -> bool:
    """A paragraph cut by a column or block break: it ends mid-sentence and the next block starts in lowercase."""
    return previous[-1] not in ".!?:;" and text[0].islower()


def _is_heading(block: _Block, text: str, body_size: float) -> bool:
    lines = block.lines
    if not lines[0].on_axis or len(lines) > 3 or len(text) > 120 or len(text.split()) > 16:
        return False
    if sum(ch.isalpha() for ch in text) < 3 or text[-1] in ".,;" or not (text[0].isupper() or text[0].isdigit()):
        return False
    bold = all(line.bold for line in lines)
    size = max(line.size for line in lines)
    large = size >= body_size * 1.15
    if _NUMBERED_HEADING.match(text):
        return bold or large
    if text.rstrip(":").lower() in _KNOWN_HEADINGS:
        return bold or large or text.isupper()
    return bold and large


# --- title ------------------------------------------------------------------------------------------------------------
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


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)
