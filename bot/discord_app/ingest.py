"""Indexing PDFs attached to a Discord message and paper links, progress shown by editing a reply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import discord

from bot.core import Core, Progress
from bot.discord_app import render
from bot.discord_app.editing import ThrottledEditor, reply
from bot.messages import Channel, User
from rag_engine.errors import USER_FACING
from bot.settings import Settings
from rag_engine.types import IngestReport

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 120.0


class Ingestion:
    """Papers added by attachment or link: a status reply, edited as Core reports progress, then the outcome."""

    def __init__(self, core: Core, settings: Settings, edit_interval: float) -> None:
        self.core = core
        self._max_mb = settings.max_file_mb
        self._edit_interval = edit_interval

    async def attachment(
        self, message: discord.Message, channel: Channel, user: User, attachment: discord.Attachment
    ) -> None:
        if attachment.size > int(self._max_mb * 2**20):  # before downloading a byte of it
            log.info("discord: refused %s (%d bytes) in %s", attachment.id, attachment.size, channel.index_name)
            await reply(message, render.too_large(attachment.filename, attachment.size, self._max_mb))
            return

        async def read() -> bytes | None:
            try:
                return await asyncio.wait_for(attachment.read(), DOWNLOAD_TIMEOUT_S)
            except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError) as error:
                log.warning("discord: download of attachment %s failed: %r", attachment.id, error)
                return None

        async def index(progress: Progress) -> IngestReport | str:
            data = await read()
            if data is None:
                return render.download_failed(attachment.filename)
            return await self.core.ingest_upload(channel, user, attachment.filename, data, progress)

        await self._with_status(message, attachment.filename, index, f"attachment {attachment.id}")

    async def link(self, message: discord.Message, channel: Channel, user: User, url: str) -> None:
        await self._with_status(
            message, url, lambda progress: self.core.ingest_url(channel, user, url, progress), "a link"
        )

    async def _with_status(
        self,
        message: discord.Message,
        source: str,
        index: Callable[[Progress], Awaitable[IngestReport | str]],
        what: str,
    ) -> None:
        """A status reply for `source`, edited with each progress line, then the outcome (or the text `index`
        returned instead of a report)."""
        status = await reply(message, render.ingest_started(source))
        if status is None:
            return
        editor = ThrottledEditor(lambda text: status.edit(content=text), self._edit_interval)
        editor.mark_sent(status.content)

        async def progress(line: str) -> None:
            await editor.update(render.ingest_progress(source, line))

        try:
            try:
                outcome = await index(progress)
                text = outcome if isinstance(outcome, str) else render.ingest_report(outcome, source)
            except USER_FACING as error:
                text = render.failed(str(error))
            except Exception:
                log.exception("discord: failed ingesting %s", what)
                text = render.apology()
            await editor.final(text)
        except discord.HTTPException as error:  # e.g. someone deleted the status message meanwhile
            log.warning("discord: could not show the outcome of %s (%s %s)", what, error.status, error.code)
        finally:
            await editor.close()


def is_pdf(attachment: discord.Attachment) -> bool:
    return attachment.filename.lower().endswith(".pdf") or (attachment.content_type or "").startswith("application/pdf")
