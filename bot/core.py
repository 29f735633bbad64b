"""Platform-agnostic behaviour of the bot: what an upload, a question or a command means, and what a user sees.

INTERFACE DRAFT — bodies are filled in by the core work; adapters code against these signatures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from bot.messages import AnswerEvent, Channel, PaperInfo, StatusInfo, Turn, User
from rag_engine.types import Answer, IngestReport

#: Called with a short human-readable progress line ("reading page 3/12", "encoding 40%").
Progress = Callable[[str], Awaitable[None]]


class Core:
    """One per running bot; every adapter (Discord, Slack, web, terminal) calls only these methods."""

    async def ingest_upload(
        self, channel: Channel, user: User, filename: str, data: bytes, progress: Progress | None = None
    ) -> IngestReport:
        """Index an uploaded file into the channel's index. Never raises for bad input: see `report.status`."""
        raise NotImplementedError

    async def ingest_url(self, channel: Channel, user: User, url: str, progress: Progress | None = None) -> IngestReport:
        """Download a PDF (platform file host or arXiv abs/pdf link, checked against the download allow-list)
        and index it. `headers` for authenticated hosts (Slack) come from `set_download_headers`."""
        raise NotImplementedError

    def ask(
        self,
        channel: Channel,
        user: User,
        question: str,
        history: Sequence[Turn] = (),
        paper: str | None = None,
    ) -> AsyncIterator[AnswerEvent]:
        """Stream Queued → Partial… → Final, or a single Failed. `paper` limits the question to one paper
        (a doc id or part of a title). Cancel the iteration (or its task) to stop the generation."""
        raise NotImplementedError

    async def list_papers(self, channel: Channel) -> list[PaperInfo]:
        raise NotImplementedError

    async def remove_paper(self, channel: Channel, user: User, doc_id: int) -> PaperInfo:
        """Only the uploader or a moderator may remove; raises PermissionDenied otherwise."""
        raise NotImplementedError

    async def clear(self, channel: Channel, user: User) -> int:
        """Moderators only (PermissionDenied otherwise). Returns how many papers were removed."""
        raise NotImplementedError

    async def status(self, channel: Channel) -> StatusInfo:
        raise NotImplementedError

    async def answer_posted(self, channel: Channel, message_ref: str, question: str, answer: Answer) -> None:
        """Remember which platform message holds which answer, so reactions on it can be recorded."""
        raise NotImplementedError

    async def record_feedback(self, channel: Channel, user: User, message_ref: str, vote: int) -> bool:
        """Store a 👍 (+1) / 👎 (-1) on a posted answer with its question and sources (for later evaluation).
        Returns False when `message_ref` is not a known answer (a reaction on some other message)."""
        raise NotImplementedError

    def paper_links(self, text: str) -> list[str]:
        """The downloadable PDF links in a message (arXiv abs/pdf links, rewritten to their PDF URL)."""
        raise NotImplementedError

    def is_allowed(self, channel: Channel) -> bool:
        """False when an allow-list of channels is set and this channel is not on it."""
        raise NotImplementedError

    def help_text(self) -> str:
        raise NotImplementedError

    def introduction(self) -> str:
        raise NotImplementedError

    def set_download_headers(self, host: str, headers: dict[str, str]) -> None:
        """Headers sent when downloading from `host` (e.g. Slack's bearer token for files.slack.com)."""
        raise NotImplementedError


async def collect(events: AsyncIterator[AnswerEvent]) -> list[AnswerEvent]:
    """Drain an answer stream (tests, CLI)."""
    return [event async for event in events]
