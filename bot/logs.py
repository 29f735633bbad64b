"""Logging for the entry points: paperbot's own loggers at the level asked for, libraries' chatter kept down.

`-v` shows paperbot's debug log; `-vv` adds the libraries' (aiosqlite, httpx, gradio, discord…), with aiosqlite's
"operation … completed" echo dropped so each statement is logged once. Lines are one per event, text or JSON, with
the request's context and secrets redacted (bot/logging_setup.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TextIO

from bot.logging_setup import ContextFilter, LogFormat, formatter

#: The top-level packages whose loggers are paperbot's own.
OWN_LOGGERS = ("paperbot", "bot", "rag_engine", "storage", "training")


class _OncePerStatement(logging.Filter):
    """aiosqlite logs every call twice ("executing X", then "operation X completed"): keep the first."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "aiosqlite" and record.msg == "operation %s completed")


def setup_logging(
    verbosity: int,
    level: str | int = logging.WARNING,
    fmt: LogFormat = "text",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Log to stderr: paperbot's loggers at `level` (DEBUG from one -v), everything else at WARNING (DEBUG from -vv);
    one line per event in `fmt`, with `secrets` (and anything token-shaped) redacted."""
    own_level = logging.DEBUG if verbosity >= 1 else level
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt, secrets))
    handler.addFilter(_OncePerStatement())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own_level)
