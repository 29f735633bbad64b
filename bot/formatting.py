"""Platform-neutral rendering helpers: message splitting and source lines. Platform dialects live in their adapters."""

from __future__ import annotations

import re
from collections.abc import Callable

from rag_engine.prompting import pages_label  # re-exported: the label the model was shown and cites
from rag_engine.types import Answer
from rag_engine.wording import plural  # re-exported: the bot layer's one way to count

__all__ = ["pages_label", "plural", "source_lines", "split_message"]

_FENCE = "```"


def source_lines(answer: Answer, *, title: Callable[[str], str] = str) -> list[str]:
    """One line per source, `[n] Title, p. 3–4` (the label the model was shown), in citation order. `title` escapes each title for the platform
    on its own (escaping the composed line can leave markup in a title live)."""
    lines = []
    for source in answer.sources:
        label = pages_label(source.page_start, source.page_end)
        lines.append(f"[{source.n}] {title(source.title)}" + (f", {label}" if label else ""))
    return lines


def split_message(text: str, limit: int) -> list[str]:
    """Split `text` into pieces of at most `limit` characters.

    Prefers paragraph, then line, then word boundaries; a word longer than `limit` is cut. A code block cut in two is
    closed at the end of one piece and reopened at the start of the next, so each piece renders on its own.

    >>> split_message("alpha beta gamma delta epsilon zeta", 20)
    ['alpha beta gamma', 'delta epsilon zeta']
    >>> [len(p) <= 20 for p in split_message("```\\n" + "x " * 30 + "\\n```", 20)]
    [True, True, True, True, True]
    """
    if limit < 16:
        raise ValueError("limit too small to split sensibly")
    pieces: list[str] = []
    rest = text
    reopen = ""
    while rest:
        rest = reopen + rest
        if len(rest) <= limit:
            pieces.append(rest)
            break
        budget = limit - len(_FENCE) - 1  # room to close a code block that is cut
        cut = _best_cut(rest, budget)
        piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip(" \n") if cut < len(rest) else ""
        fence_open = piece.count(_FENCE) % 2 == 1
        if fence_open:
            language = _open_fence_language(piece)
            piece += "\n" + _FENCE
            reopen = _FENCE + language + "\n"
        else:
            reopen = ""
        if piece.strip():
            pieces.append(piece)
    return pieces


def _best_cut(text: str, budget: int) -> int:
    window = text[: budget + 1]
    for separator in ("\n\n", "\n", " "):
        position = window.rfind(separator)
        if position > budget // 3:
            return position + len(separator) if separator == " " else position
    return budget


def _open_fence_language(piece: str) -> str:
    last = piece.rfind(_FENCE)
    match = re.match(r"[\w+-]*", piece[last + len(_FENCE) :])
    return match.group(0) if match else ""
