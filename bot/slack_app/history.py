"""Thread history: which messages of a thread are the bot's answers (marked with message metadata), and the earlier
(question, answer) turns that a follow-up question sees."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import Turn
from bot.slack_app import blocks as render
from bot.slack_app.api import _API_ERRORS, _error_code

log = logging.getLogger(__name__)

ANSWER_METADATA = "paperbot_answer"  # message metadata event type marking answer messages in a thread
HISTORY_TURNS = 6


class ThreadHistory:
    """Part of `SlackBot`: reading a thread back."""

    client: AsyncWebClient
    bot_user_id: str
    bot_id: str

    def _is_answer(self, message: dict[str, Any]) -> bool:
        mine = message.get("user") == self.bot_user_id or (self.bot_id and message.get("bot_id") == self.bot_id)
        return bool(mine and (message.get("metadata") or {}).get("event_type") == ANSWER_METADATA)

    async def _thread_messages(self, channel_id: str, thread_ts: str, pages: int = 5) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        cursor = None
        for _ in range(pages):
            try:
                response = await self.client.conversations_replies(
                    channel=channel_id, ts=thread_ts, limit=200, cursor=cursor, include_all_metadata=True
                )
            except _API_ERRORS as error:
                log.warning("conversations.replies %s/%s failed: %s", channel_id, thread_ts, _error_code(error))
                break
            messages.extend(response.get("messages", []))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return messages

    def _history(self, messages: list[dict[str, Any]], before_ts: str) -> list[Turn]:
        """Earlier (question, answer) pairs in a thread: a person's message followed by the bot's answer message(s)."""
        turns: list[Turn] = []
        question: str | None = None
        answer: list[str] = []
        for message in sorted(messages, key=lambda m: float(m.get("ts", 0))):
            if float(message.get("ts", 0)) >= float(before_ts):
                break
            if self._is_answer(message):
                if question is not None:
                    answer.append(render.unescape(message.get("text", "")))  # `text` is sent escaped
                continue
            if question is not None and answer:
                turns.append(Turn(question, "\n".join(answer)))
            if message.get("user") and not message.get("bot_id") and message.get("user") != self.bot_user_id:
                question, answer = render.plain_text(message.get("text", ""), self.bot_user_id), []
        if question is not None and answer:
            turns.append(Turn(question, "\n".join(answer)))
        return turns[-HISTORY_TURNS:]


def _answer_metadata(part: int, parts: int) -> dict[str, Any]:
    """Message metadata marking part `part` of `parts` of an answer (how thread history finds the bot's answers)."""
    return {"event_type": ANSWER_METADATA, "event_payload": {"part": part, "parts": parts}}
