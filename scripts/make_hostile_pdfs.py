"""Hostile PDFs: small files that ask a PDF reader for unbounded time or memory. Built with PyMuPDF when needed (tests,
bench), never committed.

    python scripts/make_hostile_pdfs.py OUT_DIR        # writes every file of HOSTILE into OUT_DIR

Each builder returns the file's bytes; `HOSTILE` names them. The attacks (issue #9, defects 1 and 2, and more):
a very long "word" (no spaces) over two lines, 10^4–10^5 tiny text objects on one page, a 10^8-pt-wide page with text
at both ends, a chain of form XObjects each drawing the next twice (2^depth text draws from a few hundred bytes),
and the most pages the bot accepts, each with a line of text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pymupdf

_FONT = "<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"


def _page_with_content(doc: pymupdf.Document, content: bytes, width: float = 612, height: float = 792) -> pymupdf.Page:
    """A page whose drawing instructions are exactly `content`, with Helvetica as /F1."""
    page = doc.new_page(width=width, height=height)
    doc.xref_set_key(page.xref, "Resources", _FONT)
    xref = doc.get_new_xref()
    doc.update_object(xref, "<< >>")
    doc.update_stream(xref, content)  # update_stream compresses: the file stays small
    doc.xref_set_key(page.xref, "Contents", f"{xref} 0 R")
    return page


def _bytes(doc: pymupdf.Document) -> bytes:
    data = doc.tobytes(garbage=3, deflate=True)
    doc.close()
    return data


def long_word(letters: int = 100_000) -> bytes:
    """Two "words" of `letters` letters with no space, in a font small enough to fit the page, then a short line.

    Each is its own block starting in lowercase, so the reader rejoins them into one paragraph."""
    word = b"a" * letters
    size = min(1.0, 400 / (0.556 * letters))  # Helvetica's "a" is 0.556 em wide: the word spans at most 400 pt
    content = b"BT /F1 %.6f Tf 72 700 Td (%s) Tj 0 -12 Td (%s-) Tj 0 -12 Td (next) Tj ET" % (size, word, word)
    doc = pymupdf.open()
    _page_with_content(doc, content)
    return _bytes(doc)


def tiny_objects(count: int = 50_000) -> bytes:
    """`count` text objects of one letter each, every one on a line of its own (a diagonal sweep down the page)."""
    parts = [b"BT /F1 1 Tf"]
    for index in range(count):
        x, y = 20 + (index * 7) % 570, 770 - index * 750 / count
        parts.append(b" 1 0 0 1 %.2f %.3f Tm (%c) Tj" % (x, y, 97 + index % 26))
    parts.append(b" ET")
    doc = pymupdf.open()
    _page_with_content(doc, b"".join(parts))
    return _bytes(doc)


def wide_page(width: float = 1e8) -> bytes:
    """A page `width` points wide with text near both ends (a gutter search would span all of it)."""
    lines = []
    for row in range(8):
        y = 700 - 14 * row
        lines.append(b"BT /F1 10 Tf 20 %d Td (Left column words of the page, row %d.) Tj ET" % (y, row))
        lines.append(b"BT /F1 10 Tf %.0f %d Td (Right column words, row %d.) Tj ET" % (width - 400, y, row))
    doc = pymupdf.open()
    _page_with_content(doc, b"\n".join(lines), width=width)
    return _bytes(doc)


def nested_forms(depth: int = 28) -> bytes:
    """Form XObject k draws form k+1 twice; the last draws a line of text: 2^depth text draws from a tiny file."""
    doc = pymupdf.open()
    page = _page_with_content(doc, b"q /X0 Do Q")
    xrefs = [doc.get_new_xref() for _ in range(depth)]
    for level, xref in enumerate(xrefs):
        if level + 1 < depth:
            resources = f"<< /XObject << /X{level + 1} {xrefs[level + 1]} 0 R >> >>"
            body = b"q /X%d Do Q q 1 0 0 1 0.1 0 cm /X%d Do Q" % (level + 1, level + 1)
        else:
            resources = _FONT
            body = b"BT /F1 10 Tf 72 700 Td (Deeply nested words.) Tj ET"
        doc.update_object(xref, f"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources {resources} >>")
        doc.update_stream(xref, body)
    doc.xref_set_key(page.xref, "Resources", f"<< /XObject << /X0 {xrefs[0]} 0 R >> >>")
    return _bytes(doc)


def many_pages(pages: int = 600) -> bytes:
    """The most pages the bot accepts by default, each with one line of text."""
    doc = pymupdf.open()
    for number in range(pages):
        _page_with_content(doc, b"BT /F1 10 Tf 72 400 Td (Words on page %d of a long document.) Tj ET" % (number + 1))
    return _bytes(doc)


HOSTILE: dict[str, Callable[[], bytes]] = {
    "long_word.pdf": long_word,
    "tiny_objects.pdf": tiny_objects,
    "wide_page.pdf": wide_page,
    "nested_forms.pdf": nested_forms,
    "many_pages.pdf": many_pages,
}


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path("hostile-pdfs")
    out.mkdir(parents=True, exist_ok=True)
    for name, build in HOSTILE.items():
        data = build()
        (out / name).write_bytes(data)
        print(f"{name}: {len(data):,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
