"""What every part of this package must respect about MuPDF: it raises its own error family on bad input, and it is not
thread-safe (one MuPDF context for the process), so all use of it goes under one process-wide lock."""

from __future__ import annotations

import threading

import pymupdf

# What MuPDF raises on bad input: its own error classes and the RuntimeError family PyMuPDF wraps them in.
MUPDF_ERRORS: tuple[type[Exception], ...] = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)
MUPDF_LOCK = threading.Lock()
