"""Dataclasses that cross module boundaries inside rag_engine and out to bot/."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PageText:
    """One PDF page's text in reading order. `headings` are (char offset in `text`, heading text)."""

    number: int  # 1-based, as a reader counts pages
    text: str
    headings: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ExtractedPdf:
    title: str
    page_count: int
    pages: tuple[PageText, ...]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A passage as stored and encoded: its page span is inclusive and 1-based."""

    text: str
    page_start: int
    page_end: int
    section: str | None
    ordinal: int


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved passage; a higher score is better."""

    doc_id: int
    chunk_id: int
    title: str
    page_start: int
    page_end: int
    text: str
    score: float
    section: str | None = None


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """A step of ingestion; `done`/`total` count passages while encoding (the long part), else 0/0."""

    message: str
    done: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class IngestReport:
    """The outcome of adding one file to an index."""

    status: str  # "indexed" | "duplicate" | "failed"
    doc_id: int | None = None
    title: str | None = None
    pages: int = 0
    chunks: int = 0
    reason: str | None = None  # machine-readable failure code (UnsupportedFile.reason)
    message: str | None = None  # the sentence a user reads when it failed
    seconds: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    #: Where an indexed file's time went: ("extract" | "chunk" | "encode" | "store", seconds), in that order.
    stages: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Source:
    """A passage given to the model, numbered as the prompt numbers it (`[n]`)."""

    n: int
    doc_id: int
    chunk_id: int
    title: str
    page_start: int | None
    page_end: int | None


@dataclass(frozen=True, slots=True)
class Answer:
    """A parsed model answer. `sources` holds only the sources the answer may cite (invalid citations dropped)."""

    reasoning: str
    answer: str
    abstained: bool
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier exchange, for follow-up questions (a reply to the bot)."""

    question: str
    answer: str


# --- what answering a question streams ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Queued:
    """Waiting for the model; `position` 1 means next."""

    position: int


@dataclass(frozen=True, slots=True)
class Partial:
    """The answer so far, already split into reasoning and answer text."""

    reasoning: str
    answer: str


@dataclass(frozen=True, slots=True)
class Final:
    answer: Answer
    question: str = ""
    elapsed_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Failed:
    """A user-facing failure (busy, timed out, rate limited, bad question): show `message` as it is."""

    message: str


AnswerEvent = Queued | Partial | Final | Failed
