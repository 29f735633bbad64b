"""The deflate-bomb guard: a page's drawing instructions are measured (streaming inflate, capped) before MuPDF
interprets the page, against a per-page and a per-document budget, so a small file cannot ask for unbounded work or
memory."""

from __future__ import annotations

import logging
import re
import zlib

import pymupdf

from rag_engine.pdf.layout import page_blocks
from rag_engine.pdf.lines import TextBlock
from rag_engine.pdf.mupdf import MUPDF_ERRORS

log = logging.getLogger(__name__)

#: A page whose drawing instructions (content streams and form XObjects) unpack to more is skipped: real pages,
#: even vector-heavy figures, stay far below (the largest in the test papers is 47 KB).
MAX_PAGE_CONTENT_BYTES = 64 * 1024 * 1024
#: Unpacked content measured for the whole document; pages past it are skipped. Bounds the work a small file can ask.
MAX_DOC_CONTENT_BYTES = 256 * 1024 * 1024

_OUT_OF_MEMORY = re.compile(r"\b(?:m|c|re)alloc\b.*\bfailed|out of memory", re.IGNORECASE)


def read_pages(doc: pymupdf.Document) -> tuple[list[list[TextBlock]], int]:
    """Each page's text blocks (lines normalised, in reading frame), and how many pages were skipped as too heavy."""
    sizes: dict[int, int] = {}
    budget = MAX_DOC_CONTENT_BYTES
    pages: list[list[TextBlock]] = []
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
            pages.append(page_blocks(page))
        except MUPDF_ERRORS as error:
            if _OUT_OF_MEMORY.search(str(error)):  # the memory budget, not a damaged page: refuse the document
                raise MemoryError(f"page {index + 1}: {error}") from error
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
