"""Words shared by every message a user reads, whatever the surface."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`count` (with thousands separators) and `noun`, in the plural unless it is one.

    >>> plural(1, "page"), plural(2, "page"), plural(0, "paper"), plural(3, "index", "indexes"), plural(8661, "vector")
    ('1 page', '2 pages', '0 papers', '3 indexes', '8,661 vectors')
    """
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"
