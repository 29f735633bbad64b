"""Slack events about messages: mentions of the bot, messages in a channel (uploaded PDFs, paper links, replies in a
thread where the bot answered), and the bot joining a channel."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.slack_app import blocks as render
from bot.slack_app.ingest import _is_pdf
from bot.slack_app.recent import _Recent

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core

log = logging.getLogger(__name__)


class MessageEvents:
    """Part of `SlackBot`: the `app_mention`, `message` and `member_joined_channel` listeners."""

    core: Core
    bot_user_id: str
    _events_seen: _Recent

    def _first_time(self, body: dict[str, Any]) -> bool:
        """Slack redelivers an event it thinks was not acknowledged; do its work once."""
        event_id = body.get("event_id")
        if not event_id:
            return True
        if event_id in self._events_seen:
            log.info("duplicate delivery of %s ignored", event_id)
            return False
        self._events_seen.put(event_id)
        return True

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if not self._first_time(body) or event.get("bot_id"):
            return
        channel = self._channel(event["channel"], body.get("team_id") or event.get("team"))
        if not self.core.is_allowed(channel):
            log.debug("mention in %s ignored: not an allowed channel", channel.channel)
            return
        text = render.plain_text(event.get("text", ""), self.bot_user_id)
        links = self.core.paper_links(text)
        if links and not _without(text, links).strip():
            return  # just a link for the bot: the `message` listener indexes it
        thread_ts = event.get("thread_ts") or event["ts"]
        self._spawn(
            self._answer_in_thread(channel, event["user"], text, event["channel"], thread_ts, event["ts"]),
            f"answer {event['channel']}/{event['ts']}",
        )

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        subtype = event.get("subtype")
        if subtype not in (None, "file_share", "thread_broadcast") or event.get("bot_id") or not event.get("user"):
            return  # edits, deletions, joins and other bots' posts
        if not self._first_time(body):
            return
        channel = self._channel(event["channel"], body.get("team_id") or event.get("team"))
        if not self.core.is_allowed(channel):
            return
        thread_ts = event.get("thread_ts") or event["ts"]
        for file in event.get("files") or ():
            if _is_pdf(file) or file.get("file_access") == "check_file_info":
                self._spawn(
                    self._ingest_file(channel, event["user"], event["channel"], thread_ts, file),
                    f"ingest file {file.get('id')}",
                )
        raw = event.get("text", "")
        text = render.plain_text(raw, self.bot_user_id)
        links = self.core.paper_links(text)
        for url in links:
            self._spawn(self._ingest_link(channel, event["user"], event["channel"], thread_ts, url), f"ingest {url}")
        addressed = self.bot_user_id and render.mentions(raw, self.bot_user_id)
        in_thread = event.get("thread_ts") not in (None, event["ts"])
        if in_thread and not addressed and not event.get("files") and _without(text, links).strip():
            # A reply in a thread where the bot answered continues that conversation (mentions go to _on_mention).
            self._spawn(
                self._answer_in_thread(
                    channel, event["user"], text, event["channel"], event["thread_ts"], event["ts"], True
                ),
                f"follow-up {event['channel']}/{event['ts']}",
            )

    async def _on_member_joined(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("user") != self.bot_user_id or not self._first_time(body):
            return
        channel = self._channel(event["channel"], body.get("team_id") or event.get("team"))
        if self.core.is_allowed(channel):
            self._spawn(self._post(event["channel"], render.markdown_message(self.core.introduction())), "introduction")

    async def _on_member_left(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("user") == self.bot_user_id:
            channel = self._channel(event["channel"], body.get("team_id") or event.get("team"))
            await self.core.on_channel_gone(channel.index_name)

    async def _on_channel_deleted(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        channel = self._channel(event["channel"], body.get("team_id"))
        await self.core.on_channel_gone(channel.index_name)


def _without(text: str, links: list[str]) -> str:
    """`text` without `links` and other URLs (to tell "here is a paper" from a question that contains a link)."""
    words = [w for w in text.split() if w not in links and not w.startswith(("http://", "https://"))]
    return " ".join(words)
