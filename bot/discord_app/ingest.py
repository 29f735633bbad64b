"""Indexing PDFs attached to a Discord message and paper links, progress shown by editing a reply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.discord_app import render
from bot.discord_app.editing import ThrottledEditor
from bot.messages import Channel, User
from rag_engine.errors import USER_FACING
from rag_engine.settings import Settings

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 120.0


class Ingestion:
    """Part of `PaperBot`: papers added by attachment or link."""

    core: Core
    settings: Settings
    edit_interval: float

    async def ingest_attachment(
        self, message: discord.Message, channel: Channel, user: User, attachment: discord.Attachment
    ) -> None:
        limit = int(self.settings.max_file_mb * 2**20)
        if attachment.size > limit:  # before downloading a byte of it
            log.info("discord: refused %s (%d bytes) in %s", attachment.id, attachment.size, channel.index_name)
            text = render.too_large(attachment.filename, attachment.size, self.settings.max_file_mb)
            await self._reply(message, text)
            return
        status = await self._reply(message, render.ingest_started(attachment.filename))
        if status is None:
            return
        editor = ThrottledEditor(lambda text: status.edit(content=text), self.edit_interval)
        editor.mark_sent(status.content)
        try:
            try:
                data = await asyncio.wait_for(attachment.read(), DOWNLOAD_TIMEOUT_S)
            except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError) as error:
                log.warning("discord: download of attachment %s failed: %r", attachment.id, error)
                await editor.final(render.download_failed(attachment.filename))
                return

            async def progress(line: str) -> None:
                await editor.update(render.ingest_progress(attachment.filename, line))

            text = await self._guard(
                lambda: self.core.ingest_upload(channel, user, attachment.filename, data, progress),
                lambda report: render.ingest_report(report, attachment.filename),
                f"ingesting attachment {attachment.id}",
            )
            await editor.final(text)
        except discord.HTTPException as error:  # e.g. someone deleted the status message meanwhile
            log.warning("discord: could not show the outcome of %s (%s %s)", attachment.id, error.status, error.code)
        finally:
            await editor.close()

    async def ingest_link(self, message: discord.Message, channel: Channel, user: User, url: str) -> None:
        status = await self._reply(message, render.ingest_started(url))
        if status is None:
            return
        editor = ThrottledEditor(lambda text: status.edit(content=text), self.edit_interval)
        editor.mark_sent(status.content)

        async def progress(line: str) -> None:
            await editor.update(render.ingest_progress(url, line))

        try:
            text = await self._guard(
                lambda: self.core.ingest_url(channel, user, url, progress),
                lambda report: render.ingest_report(report, url),
                "ingesting a link",
            )
            await editor.final(text)
        except discord.HTTPException as error:
            log.warning("discord: could not show the outcome of a link (%s %s)", error.status, error.code)
        finally:
            await editor.close()

    async def _guard(self, call: Callable[[], Awaitable[Any]], show: Callable[[Any], str], what: str) -> str:
        """Run a Core call; a user-facing error becomes its message, anything else is logged as a bug."""
        try:
            return show(await call())
        except USER_FACING as error:
            return render.failed(str(error))
        except Exception:
            log.exception("discord: failed %s", what)
            return render.apology()


def _is_pdf(attachment: discord.Attachment) -> bool:
    return attachment.filename.lower().endswith(".pdf") or (attachment.content_type or "").startswith("application/pdf")
