"""Answering in threads: which messages of a thread are the bot's answers (marked with message metadata), the
earlier (question, answer) turns a follow-up sees, and Core's answer streamed into one message, then the final
message(s)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import aclosing, suppress
from typing import Any

from cachetools import LRUCache
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Core
from bot.messages import APOLOGY, Channel, Failed, Final, Partial, Queued, Turn, User
from bot.slack_app import blocks as render
from bot.slack_app.api import API_ERRORS, Identity, error_code, post
from bot.slack_app.editing import Editing, LiveMessage
from bot.slack_app.mapping import People
from rag_engine.errors import USER_FACING

log = logging.getLogger(__name__)

ANSWER_METADATA = "paperbot_answer"  # message metadata event type marking answer messages in a thread
HISTORY_TURNS = 6
STOPPED = "I was stopped before I could finish this answer (the bot is restarting). Please ask again in a minute."


def answer_metadata(part: int, parts: int) -> dict[str, Any]:
    """Message metadata marking part `part` of `parts` of an answer (how thread history finds the bot's answers)."""
    return {"event_type": ANSWER_METADATA, "event_payload": {"part": part, "parts": parts}}


class Threads:
    """Answers questions in threads, and reads threads back for follow-ups."""

    def __init__(
        self, core: Core, client: AsyncWebClient, identity: Identity, people: People, editing: Editing
    ) -> None:
        self.core = core
        self._client = client
        self._identity = identity
        self._people = people
        self._editing = editing
        self._involved: LRUCache[tuple[str, str], bool] = LRUCache(maxsize=5000)  # whether the bot answers there

    def mark(self, channel_id: str, thread_ts: str) -> None:
        """The bot answers in this thread (so replies in it are follow-ups)."""
        self._involved[(channel_id, thread_ts)] = True

    # --- reading a thread back --------------------------------------------------------------------------------------
    def is_answer(self, message: dict[str, Any]) -> bool:
        me = self._identity
        mine = message.get("user") == me.user_id or (me.bot_id and message.get("bot_id") == me.bot_id)
        return bool(mine and (message.get("metadata") or {}).get("event_type") == ANSWER_METADATA)

    async def messages(self, channel_id: str, thread_ts: str, pages: int = 5) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        cursor = None
        for _ in range(pages):
            try:
                response = await self._client.conversations_replies(
                    channel=channel_id, ts=thread_ts, limit=200, cursor=cursor, include_all_metadata=True
                )
            except API_ERRORS as error:
                log.warning("conversations.replies %s/%s failed: %s", channel_id, thread_ts, error_code(error))
                break
            messages.extend(response.get("messages", []))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return messages

    def history(self, messages: list[dict[str, Any]], before_ts: str) -> list[Turn]:
        """Earlier (question, answer) pairs in a thread: a person's message followed by the bot's answer message(s)."""
        turns: list[Turn] = []
        question: str | None = None
        answer: list[str] = []
        me = self._identity
        for message in sorted(messages, key=lambda m: float(m.get("ts", 0))):
            if float(message.get("ts", 0)) >= float(before_ts):
                break
            if self.is_answer(message):
                if question is not None:
                    answer.append(render.unescape(message.get("text", "")))  # `text` is sent escaped
                continue
            if question is not None and answer:
                turns.append(Turn(question, "\n".join(answer)))
            if message.get("user") and not message.get("bot_id") and message.get("user") != me.user_id:
                question, answer = render.plain_text(message.get("text", ""), me.user_id), []
        if question is not None and answer:
            turns.append(Turn(question, "\n".join(answer)))
        return turns[-HISTORY_TURNS:]

    # --- answering ----------------------------------------------------------------------------------------------------
    async def answer_in_thread(
        self,
        channel: Channel,
        user_id: str,
        question: str,
        channel_id: str,
        thread_ts: str,
        message_ts: str,
        follow_up_only: bool = False,
    ) -> None:
        """Answer in `thread_ts`'s thread; with `follow_up_only`, only if the bot already answered in that thread."""
        history: list[Turn] = []
        if thread_ts != message_ts:
            if follow_up_only and self._involved.get((channel_id, thread_ts)) is False:
                return
            replies = await self.messages(channel_id, thread_ts)
            involved = any(self.is_answer(m) for m in replies)
            self._involved[(channel_id, thread_ts)] = involved
            if follow_up_only and not involved:
                return
            history = self.history(replies, before_ts=message_ts)
        user = await self._people.user(user_id)
        posted = await post(self._client, channel_id, render.thinking_message(), thread_ts=thread_ts)
        if posted is None:
            return
        self.mark(channel_id, thread_ts)
        await self.stream_answer(channel, user, question, history, self._editing.live(channel_id, posted), thread_ts)

    async def stream_answer(
        self, channel: Channel, user: User, question: str, history: Sequence[Turn], live: LiveMessage, thread_ts: str
    ) -> None:
        started = time.monotonic()
        final: Final | None = None
        try:
            async with aclosing(self.core.ask(channel, user, question, history)) as events:
                async for event in events:
                    if isinstance(event, Queued):
                        live.show(render.queued_message(event.position))
                    elif isinstance(event, Partial):
                        live.show(render.partial_message(event.reasoning, event.answer))
                    elif isinstance(event, Final):
                        final = event
                    elif isinstance(event, Failed):
                        await live.finish(render.notice_message(event.message))
                        return
                    if live.gone:
                        log.info("answer message %s/%s is gone; stopping the answer", live.channel, live.ts)
                        return
        except USER_FACING as error:
            await live.finish(render.notice_message(str(error)))
            return
        except asyncio.CancelledError:
            # The bot is shutting down: say so rather than leave "Thinking…" in the thread for good.
            with suppress(Exception):
                await asyncio.wait_for(live.finish(render.notice_message(STOPPED)), timeout=5)
            live.abandon()
            raise
        except Exception:
            log.exception("answering in %s failed", channel.index_name)
            await live.finish(render.notice_message(APOLOGY))
            return
        if final is None:
            log.error("answer stream in %s ended without a result", channel.index_name)
            await live.finish(render.notice_message(APOLOGY))
            return
        parts = render.answer_messages(final.answer, final.elapsed_s or time.monotonic() - started)
        # Each message is registered as soon as its ts is known, so that a quick 👍 on it already counts.
        await self.core.answer_posted(channel, live.ts, question, final.answer)
        await live.finish(parts[0], answer_metadata(1, len(parts)))
        for n, part in enumerate(parts[1:], start=2):
            metadata = answer_metadata(n, len(parts))
            ts = await post(self._client, live.channel, part, thread_ts=thread_ts, metadata=metadata)
            if ts:
                await self.core.answer_posted(channel, ts, question, final.answer)
        log.info("answered in %s (%d message(s), %.1f s)", channel.index_name, len(parts), time.monotonic() - started)
