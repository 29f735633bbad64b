"""Slack events: mentions of the bot, messages in a channel (uploaded PDFs, paper links, replies in a thread where
the bot answered), the bot joining or leaving a channel (or its deletion), and 👍/👎 reactions on answers."""

from __future__ import annotations

import logging
from typing import Any

from cachetools import LRUCache
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Core
from bot.messages import Channel
from bot.slack_app import blocks as render
from bot.slack_app.api import Identity, post
from bot.slack_app.ingest import Ingestion, is_pdf
from bot.slack_app.mapping import People
from bot.slack_app.slash import Spawn
from bot.slack_app.threads import Threads

log = logging.getLogger(__name__)

_VOTES = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}


class Events:
    """The `app_mention`, `message`, `member_joined_channel` and `reaction_added` listeners."""

    def __init__(
        self,
        core: Core,
        client: AsyncWebClient,
        identity: Identity,
        people: People,
        threads: Threads,
        ingestion: Ingestion,
        spawn: Spawn,
    ) -> None:
        self.core = core
        self._client = client
        self._identity = identity
        self._people = people
        self._threads = threads
        self._ingestion = ingestion
        self._spawn = spawn
        self._seen: LRUCache[str, bool] = LRUCache(maxsize=2000)

    def _first_time(self, body: dict[str, Any]) -> bool:
        """Slack redelivers an event it thinks was not acknowledged; do its work once."""
        event_id = body.get("event_id")
        if not event_id:
            return True
        if event_id in self._seen:
            log.info("duplicate delivery of %s ignored", event_id)
            return False
        self._seen[event_id] = True
        return True

    async def on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if not self._first_time(body) or event.get("bot_id"):
            return
        channel = self._people.channel(event["channel"], body.get("team_id") or event.get("team"))
        if not self.core.is_allowed(channel):
            log.debug("mention in %s ignored: not an allowed channel", channel.channel)
            return
        text = render.plain_text(event.get("text", ""), self._identity.user_id)
        links = self.core.paper_links(text)
        if links and not _without(text, links).strip():
            return  # just a link for the bot: the `message` listener indexes it
        thread_ts = event.get("thread_ts") or event["ts"]
        self._spawn(
            self._threads.answer_in_thread(channel, event["user"], text, event["channel"], thread_ts, event["ts"]),
            f"answer {event['channel']}/{event['ts']}",
        )

    async def on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        subtype = event.get("subtype")
        if subtype not in (None, "file_share", "thread_broadcast") or event.get("bot_id") or not event.get("user"):
            return  # edits, deletions, joins and other bots' posts
        if not self._first_time(body):
            return
        channel = self._people.channel(event["channel"], body.get("team_id") or event.get("team"))
        if not self.core.is_allowed(channel):
            return
        thread_ts = event.get("thread_ts") or event["ts"]
        for file in event.get("files") or ():
            if is_pdf(file) or file.get("file_access") == "check_file_info":
                self._spawn(
                    self._ingestion.file(channel, event["user"], event["channel"], thread_ts, file),
                    f"ingest file {file.get('id')}",
                )
        raw = event.get("text", "")
        text = render.plain_text(raw, self._identity.user_id)
        links = self.core.paper_links(text)
        for url in links:
            self._spawn(
                self._ingestion.link(channel, event["user"], event["channel"], thread_ts, url), f"ingest {url}"
            )
        addressed = self._identity.user_id and render.mentions(raw, self._identity.user_id)
        in_thread = event.get("thread_ts") not in (None, event["ts"])
        if in_thread and not addressed and not event.get("files") and _without(text, links).strip():
            # A reply in a thread where the bot answered continues that conversation (mentions go to on_mention).
            self._spawn(
                self._threads.answer_in_thread(
                    channel, event["user"], text, event["channel"], event["thread_ts"], event["ts"], True
                ),
                f"follow-up {event['channel']}/{event['ts']}",
            )

    async def on_member_joined(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("user") != self._identity.user_id or not self._first_time(body):
            return
        channel = self._people.channel(event["channel"], body.get("team_id") or event.get("team"))
        if self.core.is_allowed(channel):
            introduction = render.markdown_message(self.core.introduction())
            self._spawn(post(self._client, event["channel"], introduction), "introduction")

    async def on_reaction(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        item = event.get("item") or {}
        vote = _VOTES.get(event.get("reaction", "").split("::")[0])
        if vote is None or item.get("type") != "message" or not self._first_time(body):
            return
        if event.get("item_user") and event["item_user"] != self._identity.user_id:
            return
        channel = self._people.channel(item["channel"], body.get("team_id"))
        if self.core.is_allowed(channel):
            self._spawn(self._record_vote(channel, event["user"], item["ts"], vote), f"vote {item['ts']}")

    async def _record_vote(self, channel: Channel, user_id: str, ts: str, vote: int) -> None:
        user = await self._people.user(user_id)
        recorded = await self.core.record_feedback(channel, user, ts, vote)
        log.info(
            "reaction %+d on %s/%s by %s: %s",
            vote,
            channel.channel,
            ts,
            user.id,
            "recorded" if recorded else "not an answer",
        )

    async def on_member_left(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("user") == self._identity.user_id:
            channel = self._people.channel(event["channel"], body.get("team_id") or event.get("team"))
            await self.core.on_channel_gone(channel.index_name)

    async def on_channel_deleted(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        channel = self._people.channel(event["channel"], body.get("team_id"))
        await self.core.on_channel_gone(channel.index_name)


def _without(text: str, links: list[str]) -> str:
    """`text` without `links` and other URLs (to tell "here is a paper" from a question that contains a link)."""
    words = [w for w in text.split() if w not in links and not w.startswith(("http://", "https://"))]
    return " ".join(words)
