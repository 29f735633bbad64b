"""Editing a Slack message while an answer or an ingestion progresses: edits coalesced per message, and a budget
shared by all messages that keeps them inside chat.update's rate tier."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_app.api import API_ERRORS, error_code
from bot.slack_app.blocks import SlackMessage

log = logging.getLogger(__name__)

_GONE = {"message_not_found", "channel_not_found", "cant_update_message", "is_archived", "not_in_channel"}


class EditBudget:
    """A token bucket shared by every streaming message, so edits stay inside chat.update's rate tier
    (Tier 3, about 50 a minute per workspace) however many answers stream at once."""

    def __init__(self, per_minute: float, burst: int = 10) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    async def take(self) -> None:
        """Wait for one edit's worth of budget."""
        self._refill()
        while self._tokens < 1:
            await asyncio.sleep((1 - self._tokens) / self._rate)
            self._refill()
        self._tokens -= 1

    def spend(self) -> None:
        """A final edit is always sent; it is charged (possibly into debt, which delays later partial edits)."""
        self._refill()
        self._tokens -= 1


class LiveMessage:
    """One bot message that is edited as an answer or an ingestion progresses.

    Edits are coalesced: at most one per `interval` seconds for this message and within the shared `budget`; only the
    newest pending content is sent. `finish` always sends its content (after the interval has passed).
    """

    def __init__(self, client: AsyncWebClient, channel: str, ts: str, interval: float, budget: EditBudget) -> None:
        self.client = client
        self.channel = channel
        self.ts = ts
        self.gone = False  # the message was deleted or cannot be edited: stop working for it
        self._interval = interval
        self._budget = budget
        self._last = time.monotonic()
        self._pending: SlackMessage | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._sending = False

    def abandon(self) -> None:
        """Stop sending pending edits (the work behind this message ended without a final word)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()

    def show(self, message: SlackMessage) -> None:
        if self.gone:
            return
        self._pending = message
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def finish(self, message: SlackMessage, metadata: dict[str, Any] | None = None) -> str | None:
        """Send `message` as the last word (after any edit in flight); Slack's error code, or None when it took it."""
        self._pending = None
        if self._flusher is not None and not self._flusher.done():
            if self._sending:
                with suppress(Exception):
                    await self._flusher  # let the edit in flight land first, so the final one is the last
            else:
                self._flusher.cancel()
                with suppress(asyncio.CancelledError):
                    await self._flusher
        await asyncio.sleep(max(0.0, self._last + self._interval - time.monotonic()))
        self._budget.spend()
        return await self._update(message, metadata)

    async def _flush(self) -> None:
        while self._pending is not None and not self.gone:
            await asyncio.sleep(max(0.0, self._last + self._interval - time.monotonic()))
            await self._budget.take()
            message, self._pending = self._pending, None
            if message is None:
                return
            self._sending = True
            try:
                await self._update(message)
            finally:
                self._sending = False

    async def _update(self, message: SlackMessage, metadata: dict[str, Any] | None = None) -> str | None:
        if self.gone:
            return "message_not_found"
        extra = {"metadata": metadata} if metadata else {}
        try:
            await self.client.chat_update(channel=self.channel, ts=self.ts, **message.payload(), **extra)
        except API_ERRORS as error:
            code = error_code(error)
            self.gone = code in _GONE
            log.warning("chat.update %s/%s failed: %s", self.channel, self.ts, code)
            return code
        finally:
            self._last = time.monotonic()
        return None


class Editing:
    """Makes the `LiveMessage`s of one bot: its client, the per-message interval and the shared budget."""

    def __init__(self, client: AsyncWebClient, interval: float, edits_per_minute: float) -> None:
        self._client = client
        self._interval = interval
        self._budget = EditBudget(edits_per_minute)

    def live(self, channel: str, ts: str) -> LiveMessage:
        return LiveMessage(self._client, channel, ts, self._interval, self._budget)
