"""Answering in a thread: a "thinking" message, Core's answer streamed into it, then the final message(s)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import aclosing, suppress
from typing import TYPE_CHECKING

from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import Channel, Failed, Final, Partial, Queued, Turn, User
from bot.slack_app import blocks as render
from bot.slack_app.api import APOLOGY
from bot.slack_app.editing import EditBudget, LiveMessage
from bot.slack_app.history import _answer_metadata
from bot.slack_app.recent import _Recent
from rag_engine.errors import USER_FACING

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core

log = logging.getLogger(__name__)

STOPPED = "I was stopped before I could finish this answer (the bot is restarting). Please ask again in a minute."


class Answers:
    """Part of `SlackBot`: answering a question in a thread."""

    core: Core
    client: AsyncWebClient
    _threads: _Recent
    _edit_interval: float
    _budget: EditBudget

    async def _answer_in_thread(
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
            if follow_up_only and self._threads.get((channel_id, thread_ts)) is False:
                return
            replies = await self._thread_messages(channel_id, thread_ts)
            involved = any(self._is_answer(m) for m in replies)
            self._threads.put((channel_id, thread_ts), involved)
            if follow_up_only and not involved:
                return
            history = self._history(replies, before_ts=message_ts)
        user = await self._user(user_id)
        posted = await self._post(channel_id, render.thinking_message(), thread_ts=thread_ts)
        if posted is None:
            return
        self._threads.put((channel_id, thread_ts), True)
        await self._stream_answer(
            channel,
            user,
            question,
            history,
            LiveMessage(self.client, channel_id, posted, self._edit_interval, self._budget),
            thread_ts,
        )

    async def _stream_answer(
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
        await live.finish(parts[0], _answer_metadata(1, len(parts)))
        for n, part in enumerate(parts[1:], start=2):
            ts = await self._post(live.channel, part, thread_ts=thread_ts, metadata=_answer_metadata(n, len(parts)))
            if ts:
                await self.core.answer_posted(channel, ts, question, final.answer)
        log.info("answered in %s (%d message(s), %.1f s)", channel.index_name, len(parts), time.monotonic() - started)
