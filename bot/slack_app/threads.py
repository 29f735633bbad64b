"""Answering in threads: which messages of a thread are the bot's answers (marked with message metadata), the
earlier (question, answer) turns a follow-up sees, and Core's answer streamed into one message, then the final
message(s).

Two ways to stream, chosen per workspace. Slack's native streaming (chat.startStream / appendStream / stopStream,
through slack-sdk's `chat_stream` helper) shows the answer as Slack renders Markdown; the "Thinking…" placeholder
shows the queue and the reasoning until the answer's first words, then gives way to the stream. Where Slack answers
those methods, or the `markdown` block, with an error (`unknown_method`, `invalid_blocks`, …), the workspace is
remembered as lacking them and answers stream as before: throttled chat.update of the placeholder, in mrkdwn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import aclosing, suppress
from typing import Any

from cachetools import LRUCache
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
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
#: Answer characters gathered before each streaming call (slack-sdk's helper buffers them), to stay within rate tiers.
STREAM_BUFFER_CHARS = 64
STOPPED = "I was stopped before I could finish this answer (the bot is restarting). Please ask again in a minute."


def answer_metadata(part: int, parts: int) -> dict[str, Any]:
    """Message metadata marking part `part` of `parts` of an answer (how thread history finds the bot's answers)."""
    return {"event_type": ANSWER_METADATA, "event_payload": {"part": part, "parts": parts}}


class Capabilities:
    """What each workspace turned down (native streaming, the `markdown` block), so it is not asked again."""

    STREAMING = "streaming"
    MARKDOWN = "markdown_block"

    def __init__(self) -> None:
        self._refused: dict[str, set[str]] = {}

    def allows(self, workspace: str, feature: str) -> bool:
        return feature not in self._refused.get(workspace, set())

    def refuse(self, workspace: str, feature: str, code: str) -> None:
        if self.allows(workspace, feature):
            log.info("workspace %s lacks %s (%s): using chat.update and mrkdwn there", workspace, feature, code)
        self._refused.setdefault(workspace, set()).add(feature)


class NativeAnswer:
    """An answer streamed with Slack's native streaming into a new message in the thread. `sent` is the answer
    text handed to the stream so far; the stream starts (chat.startStream) once enough of it is buffered."""

    def __init__(self, stream: AsyncChatStream) -> None:
        self.stream = stream
        self.sent = ""
        self.broken = False  # a streaming call failed after the start: the message is finished with chat.update

    @property
    def started(self) -> bool:
        return self.stream.ts is not None

    async def extend(self, answer: str) -> None:
        """Hand the stream what `answer` adds to what was sent (an answer that was rewritten is left to the end)."""
        if not self.broken and answer.startswith(self.sent) and len(answer) > len(self.sent):
            delta, self.sent = answer[len(self.sent) :], answer
            await self.stream.append(markdown_text=render.escape(delta))


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
        self.capabilities = Capabilities()

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
        live = self._editing.live(channel_id, posted)
        await self.stream_answer(channel, user, question, history, live, thread_ts)

    async def _native(self, channel: Channel, user: User, channel_id: str, thread_ts: str) -> NativeAnswer | None:
        if not self.capabilities.allows(channel.workspace, Capabilities.STREAMING):
            return None
        stream = await self._client.chat_stream(
            channel=channel_id,
            thread_ts=thread_ts,
            recipient_team_id=channel.workspace,
            recipient_user_id=user.id,
            buffer_size=STREAM_BUFFER_CHARS,
        )
        return NativeAnswer(stream)

    def _refused(self, channel: Channel, feature: str, error: Exception) -> bool:
        """Whether `error` is Slack turning a feature down (remembered for the workspace), not a passing failure."""
        if not isinstance(error, SlackApiError):
            return False
        self.capabilities.refuse(channel.workspace, feature, error_code(error))
        return True

    async def stream_answer(
        self, channel: Channel, user: User, question: str, history: Sequence[Turn], live: LiveMessage, thread_ts: str
    ) -> None:
        """Core's answer into `live` (the placeholder), or into a native stream once the answer's words start."""
        started = time.monotonic()
        final: Final | None = None
        native = await self._native(channel, user, live.channel, thread_ts)
        try:
            async with aclosing(self.core.ask(channel, user, question, history)) as events:
                async for event in events:
                    if isinstance(event, Queued):
                        live.show(render.queued_message(event.position))
                    elif isinstance(event, Partial):
                        if native is not None and event.answer.strip():
                            native = await self._extend(channel, native, event.answer, live)
                        if native is None or not native.started:
                            live.show(render.partial_message(event.reasoning, event.answer))
                    elif isinstance(event, Final):
                        final = event
                    elif isinstance(event, Failed):
                        await self._fail(native, live, render.notice_message(event.message))
                        return
                    if live.gone and (native is None or not native.started):
                        log.info("answer message %s/%s is gone; stopping the answer", live.channel, live.ts)
                        return
        except USER_FACING as error:
            await self._fail(native, live, render.notice_message(str(error)))
            return
        except asyncio.CancelledError:
            # The bot is shutting down: say so rather than leave "Thinking…" in the thread for good.
            with suppress(Exception):
                await asyncio.wait_for(self._fail(native, live, render.notice_message(STOPPED)), timeout=5)
            live.abandon()
            raise
        except Exception:
            log.exception("answering in %s failed", channel.index_name)
            await self._fail(native, live, render.notice_message(APOLOGY))
            return
        if final is None:
            log.error("answer stream in %s ended without a result", channel.index_name)
            await self._fail(native, live, render.notice_message(APOLOGY))
            return
        elapsed = final.elapsed_s or time.monotonic() - started
        if native is not None and await self._finish_native(channel, question, final, native, live, elapsed):
            return
        await self._finish_placeholder(channel, question, final, live, thread_ts, elapsed)

    async def _extend(
        self, channel: Channel, native: NativeAnswer, answer: str, live: LiveMessage
    ) -> NativeAnswer | None:
        """Stream more of the answer; None when the workspace refused native streaming (the placeholder carries on).
        Once the stream has started, the placeholder is deleted: the stream is the answer's message now."""
        was_started = native.started
        try:
            await native.extend(answer)
        except API_ERRORS as error:
            if was_started or not self._refused(channel, Capabilities.STREAMING, error):
                log.warning("native streaming in %s failed: %s", channel.index_name, error_code(error))
            if not was_started:
                return None
            native.broken = True
            return native
        if native.started and not was_started:
            live.abandon()
            with suppress(*API_ERRORS):
                await self._client.chat_delete(channel=live.channel, ts=live.ts)
        return native

    async def _fail(self, native: NativeAnswer | None, live: LiveMessage, notice: render.SlackMessage) -> None:
        """Say why there is no answer: in the stream's message once it replaced the placeholder, else there."""
        if native is not None and native.started and native.stream.ts is not None:
            if not native.broken:
                with suppress(Exception):
                    await native.stream.stop()
            live = self._editing.live(live.channel, native.stream.ts)
        await live.finish(notice)

    async def _finish_native(
        self, channel: Channel, question: str, final: Final, native: NativeAnswer, live: LiveMessage, elapsed: float
    ) -> bool:
        """Close the native stream with the rest of the answer, its reasoning, sources and footer; False when the
        stream could not even start (the placeholder then gets the answer)."""
        answer = final.answer
        text = answer.answer.strip() or "(no answer)"
        tail = render.answer_tail(answer, elapsed)
        metadata = answer_metadata(1, 1)
        try:
            if not native.broken and len(text) <= render.MARKDOWN_CHARS and text.startswith(native.sent):
                await native.extend(text)
                await native.stream.stop(blocks=tail, metadata=metadata)
            else:  # rewritten, too long, or a failed stream: end it, then show the answer as chat.update would
                if not native.broken:
                    await native.stream.stop()
                parts = render.answer_messages(answer, elapsed)
                await self._editing.live(live.channel, str(native.stream.ts)).finish(parts[0], metadata)
        except API_ERRORS as error:
            if not native.started:
                self._refused(channel, Capabilities.STREAMING, error)
                return False
            log.warning("finishing the native stream in %s failed: %s", channel.index_name, error_code(error))
            return True
        ts = str(native.stream.ts)
        if native.started and live.ts != ts:
            live.abandon()
            with suppress(*API_ERRORS):
                await self._client.chat_delete(channel=live.channel, ts=live.ts)
        await self.core.answer_posted(channel, ts, question, answer)
        log.info("answered in %s (native stream, %.1f s)", channel.index_name, elapsed)
        return True

    async def _finish_placeholder(
        self, channel: Channel, question: str, final: Final, live: LiveMessage, thread_ts: str, elapsed: float
    ) -> None:
        """The final answer in the placeholder (and more messages when it is long), in `markdown` blocks where the
        workspace accepts them, else in mrkdwn."""
        markdown = self.capabilities.allows(channel.workspace, Capabilities.MARKDOWN)
        parts = render.answer_messages(final.answer, elapsed, markdown=markdown)
        # Each message is registered as soon as its ts is known, so that a quick 👍 on it already counts.
        await self.core.answer_posted(channel, live.ts, question, final.answer)
        error = await live.finish(parts[0], answer_metadata(1, len(parts)))
        if markdown and error == "invalid_blocks":
            self.capabilities.refuse(channel.workspace, Capabilities.MARKDOWN, error)
            parts = render.answer_messages(final.answer, elapsed)
            await live.finish(parts[0], answer_metadata(1, len(parts)))
        for n, part in enumerate(parts[1:], start=2):
            metadata = answer_metadata(n, len(parts))
            ts = await post(self._client, live.channel, part, thread_ts=thread_ts, metadata=metadata)
            if ts:
                await self.core.answer_posted(channel, ts, question, final.answer)
        log.info("answered in %s (%d message(s), %.1f s)", channel.index_name, len(parts), elapsed)
