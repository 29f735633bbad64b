"""Conversations: the message a reply refers to, the answers the bot remembers posting, and the earlier turns that a
follow-up question sees."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import discord

from bot.core import Core
from bot.discord_app import render
from bot.messages import Channel, Turn
from rag_engine.types import Answer

MAX_HISTORY_TURNS = 6
_EXCHANGE_CACHE = 2000


@dataclass(frozen=True, slots=True)
class _Exchange:
    """A posted answer: its question and answer, and the answer that question replied to (for longer threads)."""

    turn: Turn
    previous: int | None


class History:
    """Part of `PaperBot`: following replies back through the bot's answers."""

    _exchanges: OrderedDict[int, _Exchange]
    core: Core

    async def _referenced(self, message: discord.Message) -> discord.Message | None:
        """The message this one replies to. Discord sends it along; it is fetched only when the bot was pinged."""
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        if isinstance(reference.cached_message, discord.Message):
            return reference.cached_message
        if self.user not in message.mentions:
            return None
        try:
            return await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            return None

    async def _history(self, channel: Channel, answer_message: discord.Message) -> list[Turn]:
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
            stored = await self.core.answer_for(channel, str(answer_message.id))
            body = render.answer_body(answer_message.content)
            if stored is not None:
                turns.append(stored)
            elif body:
                turns.append(Turn(question="", answer=body))
        return list(reversed(turns))

    def _remember(self, message_ids: Sequence[int], question: str, answer: Answer, previous: int | None) -> None:
        exchange = _Exchange(Turn(question=question, answer=answer.answer), previous)
        for message_id in message_ids:
            self._exchanges[message_id] = exchange
            self._exchanges.move_to_end(message_id)
        while len(self._exchanges) > _EXCHANGE_CACHE:
            self._exchanges.popitem(last=False)
