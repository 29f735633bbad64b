"""👍/👎 reactions on the bot's answers, recorded as feedback on them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.discord_app import render
from bot.messages import User
from rag_engine.errors import USER_FACING

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core

log = logging.getLogger(__name__)


class Feedback:
    """Part of `PaperBot`: the `on_raw_reaction_add` event."""

    core: Core

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.guild_id is None or self.user is None or payload.user_id == self.user.id:
            return
        if payload.member is not None and payload.member.bot:
            return
        vote = render.vote(str(payload.emoji))
        if vote is None:
            return
        self.spawn(self.record_vote(payload, vote), name=f"discord-vote-{payload.message_id}")

    async def record_vote(self, payload: discord.RawReactionActionEvent, vote: int) -> None:
        assert payload.guild_id is not None
        channel = await self.channel_of(payload.guild_id, None, payload.channel_id)
        name = payload.member.display_name if payload.member is not None else str(payload.user_id)
        user = User(id=str(payload.user_id), name=name)
        try:
            known = await self.core.record_feedback(channel, user, str(payload.message_id), vote)
        except USER_FACING as error:
            log.warning("discord: feedback on %s not recorded: %s", payload.message_id, error)
            return
        log.info("discord: vote %+d on %s %s", vote, payload.message_id, "recorded" if known else "ignored (no answer)")
