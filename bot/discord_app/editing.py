"""Editing a Discord message while it is being written, at a pace Discord accepts, and retrying a call whose loss a
user would notice."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import discord

log = logging.getLogger(__name__)

#: Discord answers edits of one channel's messages with 429 beyond about five in five seconds; once a second per
#: message keeps a single stream well inside that and still looks live.
EDIT_INTERVAL_S = 1.0


class ThrottledEditor:
    """Shows the latest text of a message being written, editing it at most once per `interval` seconds.

    `update` only records the newest text and never waits for Discord; one flush task (owned here) sends it when the
    interval allows, skipping texts that a newer one replaced meanwhile. `final` waits for an edit in flight, drops
    anything pending and always sends its text.
    """

    def __init__(self, edit: Callable[[str], Awaitable[Any]], interval: float) -> None:
        self._edit = edit
        self._interval = interval
        self._shown = ""
        self._pending: str | None = None
        self._last = -math.inf
        self._lock = asyncio.Lock()  # one edit at a time
        self._flusher: asyncio.Task[None] | None = None
        self.edits = 0

    def mark_sent(self, text: str) -> None:
        """The message was just created with `text` (counts towards the interval)."""
        self._shown, self._last = text, time.monotonic()

    async def update(self, text: str) -> None:
        self._pending = None if text == self._shown else text
        if self._pending is not None and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush(), name="discord-edit-flush")

    async def final(self, text: str) -> None:
        async with self._lock:
            await self._stop_flusher()
            if text != self._shown:
                await self._send(text, final=True)

    async def close(self) -> None:
        """Stop the flush task after any edit in flight, dropping a pending text; safe to call more than once."""
        async with self._lock:
            await self._stop_flusher()

    async def _stop_flusher(self) -> None:
        # Called with the lock held, so the flusher is asleep or waiting for the lock, never mid-edit.
        self._pending = None
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.wait([flusher])  # unlike `await flusher`, a cancel of *our* caller still propagates

    async def _flush(self) -> None:
        while self._pending is not None:
            wait = self._last + self._interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._lock:
                text, self._pending = self._pending, None
                if text is None:
                    return
                try:
                    await self._send(text, final=False)
                except Exception:  # noqa: BLE001 - nobody awaits this task; the next edit carries the full text
                    log.warning("discord: edit failed", exc_info=True)

    async def _send(self, text: str, *, final: bool) -> None:
        try:
            if final:
                await deliver(lambda: self._edit(text))
            else:
                await self._edit(text)
        except discord.HTTPException as error:
            # A lost intermediate edit is harmless (the next one carries the full text); a lost final one is not.
            log.warning("discord: edit failed (%s %s, final=%s)", error.status, error.code, final)
            if final:
                raise
            return
        finally:
            self._last = time.monotonic()  # a failed edit still counts against Discord's rate limit
        self._shown = text
        self.edits += 1


T = TypeVar("T")
_RETRY_DELAYS_S = (2.0, 5.0)


async def deliver(call: Callable[[], Awaitable[T]]) -> T:
    """Make a Discord call whose loss a user would notice (the final text of an answer), trying again a little
    later when Discord was overloaded or kept rate limiting after discord.py's own retries."""
    for delay in (*_RETRY_DELAYS_S, None):
        try:
            return await call()
        except discord.HTTPException as error:
            if delay is None or not (error.status == 429 or error.status >= 500):
                raise
            log.warning("discord: %s %s, trying again in %.0f s", error.status, error.code, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def reply(message: discord.Message, text: str) -> discord.Message | None:
    """Reply in the message's channel; None (logged) when Discord refuses, e.g. no permission to post there."""
    try:
        return await message.reply(text, mention_author=False)
    except discord.HTTPException as error:
        log.warning("discord: cannot reply in channel %s (%s %s)", message.channel.id, error.status, error.code)
        return None
