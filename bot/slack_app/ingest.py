"""Indexing a PDF shared in Slack or a paper link, its progress shown by editing one message."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Core
from bot.messages import APOLOGY, Channel
from bot.slack_app import blocks as render
from bot.slack_app.api import API_ERRORS, error_code, post
from bot.slack_app.editing import Editing
from bot.slack_app.mapping import People
from rag_engine.errors import USER_FACING

log = logging.getLogger(__name__)


class Ingestion:
    """Files and links indexed into a channel's papers, one message showing progress and the outcome."""

    def __init__(self, core: Core, client: AsyncWebClient, people: People, editing: Editing) -> None:
        self.core = core
        self._client = client
        self._people = people
        self._editing = editing

    async def file(self, channel: Channel, user_id: str, channel_id: str, thread_ts: str, file: dict[str, Any]) -> None:
        if file.get("file_access") == "check_file_info" or not file.get("url_private"):
            # Some events carry only a file's id (`file_access: check_file_info`): ask Slack for the rest.
            try:
                file = (await self._client.files_info(file=file["id"]))["file"]
            except API_ERRORS as error:
                code = error_code(error)
                log.warning("files.info %s failed: %s", file.get("id"), code)
                notice = f"I can't access that file (Slack says `{code}`); try sharing it again."
                await post(self._client, channel_id, render.notice_message(notice), thread_ts=thread_ts)
                return
            if not is_pdf(file):
                return
        name = file.get("name") or file.get("title") or "file.pdf"
        url = file.get("url_private_download") or file.get("url_private")
        await self._ingest(channel, user_id, channel_id, thread_ts, name, url)

    async def link(self, channel: Channel, user_id: str, channel_id: str, thread_ts: str, url: str) -> None:
        name = urlsplit(url).path.rsplit("/", 1)[-1] or url
        await self._ingest(channel, user_id, channel_id, thread_ts, name, url)

    async def _ingest(
        self, channel: Channel, user_id: str, channel_id: str, thread_ts: str, name: str, url: str
    ) -> None:
        user = await self._people.user(user_id)
        posted = await post(self._client, channel_id, render.ingest_started_message(name), thread_ts=thread_ts)
        if posted is None:
            return
        live = self._editing.live(channel_id, posted)

        async def progress(line: str) -> None:
            live.show(render.ingest_progress_message(name, line))

        try:
            report = await self.core.ingest_url(channel, user, url, progress)
        except USER_FACING as error:
            await live.finish(render.notice_message(f"Could not index {name}: {error}", ":x:"))
            return
        except asyncio.CancelledError:
            live.abandon()  # no stray progress edit after shutdown
            raise
        except Exception:
            log.exception("ingesting %s into %s failed", url, channel.index_name)
            await live.finish(render.notice_message(APOLOGY))
            return
        await live.finish(render.ingest_report_message(report, name))
        log.info("ingest %s into %s: %s", name, channel.index_name, report.status)


def is_pdf(file: dict[str, Any]) -> bool:
    return (
        file.get("filetype") == "pdf"
        or file.get("mimetype") == "application/pdf"
        or str(file.get("name", "")).lower().endswith(".pdf")
    )
