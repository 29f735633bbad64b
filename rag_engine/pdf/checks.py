"""Refusing early, with a message a user can act on: bytes that are empty, too big or not a PDF never reach MuPDF, and
what opening finds (damage, a password, no pages) is told apart."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rag_engine.errors import DamagedPdf, EmptyFile, NoPages, NotAPdf, PasswordProtected, TooLarge

if TYPE_CHECKING:
    import pymupdf

log = logging.getLogger(__name__)

_SIGNATURE = b"%PDF-"
_SIGNATURE_WINDOW = 1024


def check_bytes(data: bytes, max_bytes: int) -> None:
    if not data:
        raise EmptyFile("This file is empty (0 bytes). Please upload the PDF again.")
    if _SIGNATURE not in data[:_SIGNATURE_WINDOW]:
        raise NotAPdf("This file is not a PDF (it has no PDF header). Please upload the paper as a PDF file.")
    if len(data) > max_bytes:
        raise TooLarge(
            f"This PDF is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
            "Please upload a smaller file (for example without embedded supplementary material)."
        )


def open_document(data: bytes) -> pymupdf.Document:
    # MuPDF is imported here: the parent process imports `check_bytes` but never opens a PDF (a child does).
    import pymupdf

    from rag_engine.pdf.mupdf import MUPDF_ERRORS

    damaged = DamagedPdf(
        "This PDF is damaged or incomplete, so I can't read it. Please download it again and upload the new copy."
    )
    try:
        # filetype="pdf": never let MuPDF sniff another format from the bytes.
        doc = pymupdf.open(stream=data, filetype="pdf")
    except MUPDF_ERRORS as error:
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
