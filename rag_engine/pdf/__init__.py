"""PDF bytes → pages of clean text in reading order, with their headings, or a typed refusal a user can act on.

Synchronous and CPU-bound: callers run `extract_pdf` in a thread. Work is bounded on hostile input: the bytes are
checked before MuPDF sees them, page streams are measured (streaming inflate, capped) before a page is interpreted,
and extracted text is capped per page and per document.

The modules, in the order the work happens: `checks` (refusing early), `budget` (the deflate-bomb guard), `layout`
(lines and blocks in reading order), `cleanup` (normalisation, running headers/footers, hyphens), `headings`,
`compose` (a page's text), `title`; `extract` runs them. `lines` holds the positioned-text types they pass along and
`mupdf` what MuPDF imposes on all of them (its lock and its errors).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag_engine.pdf.budget import MAX_DOC_CONTENT_BYTES, MAX_PAGE_CONTENT_BYTES
    from rag_engine.pdf.compose import MAX_DOC_CHARS, MAX_PAGE_CHARS
    from rag_engine.pdf.extract import MIN_TEXT_CHARS, extract_pdf

# Resolved on first use (PEP 562): importing `rag_engine.pdf.checks` or `.isolated` must not load MuPDF (~0.5 s),
# which the parent process never calls: extraction runs in a child.
_EXPORTS = {
    "MAX_DOC_CONTENT_BYTES": "budget",
    "MAX_PAGE_CONTENT_BYTES": "budget",
    "MAX_DOC_CHARS": "compose",
    "MAX_PAGE_CHARS": "compose",
    "MIN_TEXT_CHARS": "extract",
    "extract_pdf": "extract",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
