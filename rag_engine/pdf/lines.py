"""Positioned text, as every stage after MuPDF works on it: a line with its box, font and header band, and a block of
lines as MuPDF grouped them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TextLine:
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
class TextBlock:
    lines: list[TextLine] = field(default_factory=list)

    @property
    def x0(self) -> float:
        return min(line.x0 for line in self.lines)

    @property
    def x1(self) -> float:
        return max(line.x1 for line in self.lines)

    @property
    def y0(self) -> float:
        return min(line.y0 for line in self.lines)
