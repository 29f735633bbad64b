"""`extract_pdf`, the whole job in order: refuse early, read pages under the content budget while holding MuPDF's lock,
then compose the text and choose a title outside it."""

from __future__ import annotations

from rag_engine.errors import NoText, TooLarge
from rag_engine.pdf.budget import read_pages
from rag_engine.pdf.checks import check_bytes, open_document
from rag_engine.pdf.compose import compose_pages
from rag_engine.pdf.mupdf import MUPDF_LOCK
from rag_engine.pdf.title import guess_title
from rag_engine.types import ExtractedPdf

#: Fewer letters and digits than this in the whole file means there is no text layer worth indexing.
MIN_TEXT_CHARS = 20


def extract_pdf(data: bytes, *, max_bytes: int, max_pages: int, filename: str = "") -> ExtractedPdf:
    """Read a PDF into pages of text in reading order. Raises an `UnsupportedFile` subclass a user can act on."""
    check_bytes(data, max_bytes)
    # PyMuPDF is not thread-safe (one MuPDF context for the process), and callers run this in worker threads.
    with MUPDF_LOCK:
        doc = open_document(data)
        try:
            page_count = doc.page_count
            if page_count > max_pages:
                raise TooLarge(
                    f"This PDF has {page_count} pages; I can index at most {max_pages}. "
                    "Split it into smaller parts and upload those."
                )
            raw_pages, skipped = read_pages(doc)
            metadata_title = (doc.metadata or {}).get("title") or ""
        finally:
            doc.close()
    pages = compose_pages(raw_pages)
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
    title = guess_title(metadata_title, raw_pages, filename, pages[0].headings if pages else ())
    return ExtractedPdf(title=title, page_count=page_count, pages=tuple(pages))


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)
