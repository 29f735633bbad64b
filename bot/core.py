"""Platform-agnostic behaviour of the bot: what an upload, a question or a command means, and what a user sees.

Adapters (Discord, Slack, web, terminal) turn platform events into these calls and render what comes back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace

from bot import logging_setup
from bot.download import Downloader
from bot.links import arxiv_pdf_links
from bot.messages import APOLOGY, Channel, PaperInfo, StatusInfo, Turn, User
from bot.ratelimit import SlidingWindowLimiter
from rag_engine.answer import Answerer
from rag_engine.engine import Engine
from rag_engine.errors import USER_FACING, InvalidQuestion, PermissionDenied
from rag_engine.maintenance import drop_channel
from bot.settings import Settings
from rag_engine.types import Answer, AnswerEvent, Failed, Final, IngestProgress, IngestReport

log = logging.getLogger(__name__)

#: Called with a short human-readable progress line ("Encoding passages: 40/120").
Progress = Callable[[str], Awaitable[None]]

class Core:
    """One per running bot; every adapter calls only these methods."""

    def __init__(self, answerer: Answerer, settings: Settings, downloader: Downloader) -> None:
        self.answerer = answerer
        #: the one engine, the answerer's: Core reads it from there rather than holding a second reference
        self.engine: Engine = answerer.engine
        self.settings = settings
        self._downloader = downloader
        self._limiter = SlidingWindowLimiter(settings.user_rate_per_minute, 60.0)

    # --- adding papers ---------------------------------------------------------------------------------------------
    async def ingest_upload(
        self, channel: Channel, user: User, filename: str, data: bytes, progress: Progress | None = None
    ) -> IngestReport:
        """Index an uploaded file into the channel's index. Never raises for bad input: see `report.status`."""

        logging_setup.bind(platform=channel.platform, channel=channel.index_name)
        logging_setup.new_request()

        async def relay(step: IngestProgress) -> None:
            if progress is not None:
                await progress(step.message)

        try:
            report = await self.engine.ingest(channel.index_name, data, filename, uploader=user.id, progress=relay)
        except USER_FACING as error:
            return IngestReport(status="failed", reason=type(error).__name__, message=str(error))
        except Exception:
            log.exception("ingesting %s into %s failed", filename, channel.index_name)
            return IngestReport(status="failed", reason="internal", message=APOLOGY)
        logging_setup.bind(document=report.doc_id)
        log.info(
            "upload %s: %s (%s)", filename, report.status, report.reason or "-",
            extra={"fields": {"pages": report.pages, "chunks": report.chunks, "seconds": round(report.seconds, 2)}},
        )
        return report

    async def ingest_url(self, channel: Channel, user: User, url: str, progress: Progress | None = None) -> IngestReport:
        """Download a PDF from an allowed host (platform file storage, arXiv) and index it."""
        try:
            if progress is not None:
                await progress("Downloading…")
            data = await self._downloader.fetch(url)
        except USER_FACING as error:
            return IngestReport(status="failed", reason=type(error).__name__, message=str(error))
        except Exception:
            log.exception("downloading %s failed", url)
            return IngestReport(status="failed", reason="internal", message=APOLOGY)
        filename = url.rstrip("/").rsplit("/", 1)[-1] or "paper.pdf"
        if not filename.lower().endswith(".pdf"):
            filename += ".pdf"
        return await self.ingest_upload(channel, user, filename, data, progress)

    def paper_links(self, text: str) -> list[str]:
        """The downloadable PDF links in a message (arXiv abs/pdf links, rewritten to their PDF URL)."""
        return arxiv_pdf_links(text, self.settings.arxiv_base_url)

    def set_download_headers(self, host: str, headers: dict[str, str]) -> None:
        """Headers sent when downloading from `host` (e.g. Slack's bearer token for files.slack.com)."""
        self._downloader.set_headers(host, headers)

    # --- questions -------------------------------------------------------------------------------------------------
    async def ask(
        self,
        channel: Channel,
        user: User,
        question: str,
        history: Sequence[Turn] = (),
        paper: str | None = None,
    ) -> AsyncIterator[AnswerEvent]:
        """Stream Queued → Partial… → Final, or a single Failed. `paper` limits the question to one paper
        (a doc id or part of a title). Closing the iterator (or cancelling its task) stops the generation."""
        logging_setup.bind(platform=channel.platform, channel=channel.index_name)
        logging_setup.new_request()
        wait = self._limiter.try_acquire(f"{channel.platform}:{user.id}")
        if wait:
            yield Failed(f"You're asking faster than I can answer; try again in {wait:.0f} s.")
            return
        started = time.perf_counter()
        try:
            question = question.strip()
            if not question:
                raise InvalidQuestion("Ask me a question about the papers in this channel, e.g. `@paperbot what is X?`")
            if len(question) > self.settings.max_question_chars:
                raise InvalidQuestion(
                    f"That question is {len(question):,} characters long; please keep it under "
                    f"{self.settings.max_question_chars:,}."
                )
            async for event in self.answerer.answer(channel.index_name, question, history=history, paper=paper):
                if isinstance(event, Final):
                    event = replace(event, question=question, elapsed_s=round(time.perf_counter() - started, 2))
                    log.info("answered", extra={"fields": _answer_fields(event)})
                yield event
        except USER_FACING as error:
            log.info("not answered: %s", type(error).__name__)
            yield Failed(str(error))
        except Exception:
            log.exception("answering in %s failed", channel.index_name)
            yield Failed(APOLOGY)

    # --- managing papers -------------------------------------------------------------------------------------------
    async def list_papers(self, channel: Channel) -> list[PaperInfo]:
        record = await self.engine.find_index(channel.index_name)
        if record is None:
            return []
        return [
            PaperInfo(d.id, d.title, d.page_count, d.created_at, d.uploader, d.filename)
            for d in await self.engine.papers(record)
        ]

    async def remove_paper(self, channel: Channel, user: User, doc_id: int) -> PaperInfo:
        """Only the uploader or a moderator may remove; raises PermissionDenied otherwise."""
        doc = await self.engine.paper(channel.index_name, doc_id)
        if not (user.is_moderator or doc.uploader == user.id):
            raise PermissionDenied("Only the person who added a paper, or a moderator, can remove it.")
        await self.engine.remove(channel.index_name, doc_id)
        log.info("user %s removed doc %d from %s", user.id, doc_id, channel.index_name)
        return PaperInfo(doc.id, doc.title, doc.page_count, doc.created_at, doc.uploader, doc.filename)

    async def clear(self, channel: Channel, user: User) -> int:
        """Moderators only (PermissionDenied otherwise). Returns how many papers were removed."""
        if not user.is_moderator:
            raise PermissionDenied("Only moderators can clear this channel's papers.")
        record = await self.engine.find_index(channel.index_name)
        if record is None:
            return 0
        removed = await self.engine.clear(record)
        log.info("user %s cleared %s (%d papers)", user.id, channel.index_name, removed)
        return removed

    async def on_channel_gone(self, address: str) -> int:
        """The bot left a channel, or it was deleted (`address`: its index name), or the bot left a whole server or
        workspace (`address` ends with '/'). With drop_papers_when_channel_gone on, its papers and their stored
        files are deleted; returns how many channel indexes went (0 with the setting off)."""
        if not self.settings.drop_papers_when_channel_gone:
            return 0
        dropped = await drop_channel(self.engine, address)
        log.info("channel gone: %s (%d index(es) dropped)", address, dropped)
        return dropped

    async def status(self, channel: Channel) -> StatusInfo:
        summary = await self.engine.summary(channel.index_name)
        papers, chunks = (summary.papers, summary.chunks) if summary else (0, 0)
        info = self.answerer.backend_info()
        encoder = self.engine.encoders.loaded
        return StatusInfo(
            index_name=channel.index_name,
            papers=papers,
            chunks=chunks,
            model=info.model,
            runs_on=info.runs_on,
            encoder=encoder.model_id if encoder else self.settings.colbert_model,
            queue_depth=self.answerer.queue_depth,
        )

    async def index_names(self) -> list[str]:
        """Free-named indexes (web chat and CLI), for pickers; channel indexes are left out."""
        return sorted(s.name for s in await self.engine.summaries() if "/" not in s.name)

    # --- feedback --------------------------------------------------------------------------------------------------
    async def answer_posted(self, channel: Channel, message_ref: str, question: str, answer: Answer) -> None:
        """Remember which platform message holds which answer, so reactions on it can be recorded."""
        await self.engine.remember_answer(channel.index_name, message_ref, question, answer)

    async def answer_for(self, channel: Channel, message_ref: str) -> Turn | None:
        """The question and answer a posted message holds (as remembered by `answer_posted`), or None."""
        return await self.engine.answer_for(channel.index_name, message_ref)

    async def record_feedback(self, channel: Channel, user: User, message_ref: str, vote: int) -> bool:
        """Store a 👍 (+1) / 👎 (-1) on a posted answer. False when `message_ref` is not a known answer."""
        if vote not in (1, -1):
            raise ValueError("vote must be +1 or -1")
        return await self.engine.record_feedback(channel.index_name, message_ref, user.id, vote)

    async def feedback(self, channel: Channel) -> list[dict[str, object]]:
        """Recorded votes with their question, answer and sources (for evaluation and tests)."""
        return await self.engine.feedback(channel.index_name)

    # --- texts -----------------------------------------------------------------------------------------------------
    def is_allowed(self, channel: Channel) -> bool:
        """False when an allow-list of channels is set and this channel is not on it."""
        allowed = self.settings.allowed_channels
        return not allowed or channel.channel in allowed or channel.index_name in allowed

    def help_text(self) -> str:
        name = self.settings.bot_name
        return (
            f"**{name}** answers questions about the papers shared in this channel.\n"
            f"• Add a paper: attach a PDF, or post an arXiv link.\n"
            f"• Ask: mention me (`@{name} what does the ablation show?`), reply to my answer to follow up, or `/ask`.\n"
            f"• `/papers list` — the papers I know here, with their ids\n"
            f"• `/papers remove ID` — remove one (whoever added it, or a moderator)\n"
            f"• `/papers clear` — remove all (moderators)\n"
            f"• `/papers status` — model, queue and index size\n"
            f"Each channel has its own papers; threads share their channel's."
        )

    def introduction(self) -> str:
        name = self.settings.bot_name
        return (
            f"Hi, I'm {name}. Drop PDF papers (or arXiv links) here and I'll index them for this channel; "
            f"then mention me with a question and I'll answer with the pages I used. `/papers help` for more."
        )


def _answer_fields(event: Final) -> dict[str, object]:
    """What an operator needs about an answer: how long, how much, from which papers; never the text."""
    return {
        "elapsed_s": event.elapsed_s,
        "question_chars": len(event.question),
        "answer_chars": len(event.answer.answer),
        "abstained": event.answer.abstained,
        "documents": sorted({source.doc_id for source in event.answer.sources}),
    }
