"""Conversations: the message a reply refers to, the answers the bot remembers posting, and the earlier turns that a
follow-up question sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import discord
from cachetools import LRUCache

from bot.core import Core
from bot.discord_app import render
from bot.messages import Channel, Turn
from rag_engine.types import Answer

MAX_HISTORY_TURNS = 6
REMEMBERED_ANSWERS = 2000


@dataclass(frozen=True, slots=True)
class Exchange:
    """A posted answer: its question and answer, and the answer that question replied to (for longer threads)."""

    turn: Turn
    previous: int | None


class Conversations:
    """Following replies back through the bot's answers; the latest `REMEMBERED_ANSWERS` are kept in memory, older
    ones (and those from before a restart) are looked up in Core."""

    def __init__(self, core: Core, client: discord.Client) -> None:
        self._core = core
        self._client = client
        self._exchanges: LRUCache[int, Exchange] = LRUCache(maxsize=REMEMBERED_ANSWERS)

    def knows(self, message_id: int) -> bool:
        """Whether `message_id` is an answer the bot remembers posting."""
        return message_id in self._exchanges

    def forget(self) -> None:
        """Forget every remembered answer (what a restart does; Core still has them)."""
        self._exchanges.clear()

    async def referenced(self, message: discord.Message) -> discord.Message | None:
        """The message this one replies to. Discord sends it along; it is fetched only when the bot was pinged."""
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        if isinstance(reference.cached_message, discord.Message):
            return reference.cached_message
        if self._client.user not in message.mentions:
            return None
        try:
            return await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            return None

    async def history(self, channel: Channel, answer_message: discord.Message) -> list[Turn]:
        """Earlier turns of a conversation, oldest first, following replies back from `answer_message`."""
        turns: list[Turn] = []
        cursor: int | None = answer_message.id
        while cursor is not None and len(turns) < MAX_HISTORY_TURNS:
            exchange = self._exchanges.get(cursor)
            if exchange is None:
                break
            turns.append(exchange.turn)
            cursor = exchange.previous
        if not turns:
            # Not in memory (e.g. after a restart): the stored answer, else the answer text the message shows.
            stored = await self._core.answer_for(channel, str(answer_message.id))
            body = render.answer_body(answer_message.content)
            if stored is not None:
                turns.append(stored)
            elif body:
                turns.append(Turn(question="", answer=body))
        return list(reversed(turns))

    def remember(self, message_ids: Sequence[int], question: str, answer: Answer, previous: int | None) -> None:
        exchange = Exchange(Turn(question=question, answer=answer.answer), previous)
        for message_id in message_ids:
            self._exchanges[message_id] = exchange
