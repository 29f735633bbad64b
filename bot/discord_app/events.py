"""Discord events: messages (uploaded PDFs, paper links, and mentions or replies that ask a question), and joining a
guild."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord

from bot.discord_app import render
from bot.discord_app.ingest import _is_pdf
from bot.discord_app.mapping import PLATFORM
from bot.discord_app.targets import ReplyTarget
from bot.messages import Channel

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core

log = logging.getLogger(__name__)


class Events:
    """Part of `PaperBot`: the `on_message` and `on_guild_join` events."""

    core: Core

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or message.author.id == self.user.id or message.guild is None:
            return
        self.spawn(self.handle_message(message), name=f"discord-message-{message.id}")

    async def handle_message(self, message: discord.Message) -> None:
        assert message.guild is not None and self.user is not None
        channel = await self.channel_of(message.guild.id, message.channel, message.channel.id)
        if not self.core.is_allowed(channel):
            return
        user = self.user_of(message.author, message.channel)
        pdfs = [a for a in message.attachments if _is_pdf(a)]
        links = self.core.paper_links(message.content)
        for attachment in pdfs:
            await self.ingest_attachment(message, channel, user, attachment)
        for url in links:
            await self.ingest_link(message, channel, user, url)

        referenced = await self._referenced(message)
        own_role = message.guild.self_role
        mentioned = re.search(rf"<@!?{self.user.id}>", message.content) is not None or (
            own_role is not None and own_role in message.role_mentions
        )
        replying_to_bot = referenced is not None and referenced.author.id == self.user.id
        if not (mentioned or replying_to_bot):
            return
        question = _question_text(message.content, self.user.id, links, own_role.id if own_role else None)
        if not question:
            if not pdfs and not links:
                await self._reply(message, self.core.help_text())
            return
        history = await self._history(channel, referenced) if replying_to_bot and referenced is not None else []
        previous = referenced.id if referenced is not None and referenced.id in self._exchanges else None
        placeholder = await self._reply(message, render.THINKING)
        if placeholder is None:
            return
        log.info(
            "discord: question %s in %s by %s (%d earlier turns)", message.id, channel.index_name, user.id, len(history)
        )
        await self.stream_answer(channel, user, question, ReplyTarget(placeholder), history=history, previous=previous)

    async def _reply(self, message: discord.Message, text: str) -> discord.Message | None:
        """Reply in the message's channel; None (logged) when Discord refuses, e.g. no permission to post there."""
        try:
            return await message.reply(text, mention_author=False)
        except discord.HTTPException as error:
            log.warning("discord: cannot reply in channel %s (%s %s)", message.channel.id, error.status, error.code)
            return None

    async def on_guild_join(self, guild: discord.Guild) -> None:
        self.spawn(self.introduce(guild), name=f"discord-join-{guild.id}")

    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self.core.on_channel_gone(Channel(PLATFORM, str(channel.guild.id), str(channel.id)).index_name)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self.core.on_channel_gone(f"{PLATFORM}/{guild.id}/")  # every channel of the server

    async def introduce(self, guild: discord.Guild) -> None:
        """Introduce the bot in the first channel where it may post (the system channel when it can)."""
        me = guild.me
        candidates = ([guild.system_channel] if guild.system_channel else []) + sorted(
            guild.text_channels, key=lambda c: c.position
        )
        for channel in candidates:
            permissions = channel.permissions_for(me)
            if not (permissions.view_channel and permissions.send_messages):
                continue
            if not self.core.is_allowed(Channel(PLATFORM, str(guild.id), str(channel.id))):
                continue
            try:
                await channel.send(self.core.introduction())
            except discord.HTTPException as error:
                log.warning("discord: introduction refused in %s (%s %s)", channel.id, error.status, error.code)
                continue
            log.info("discord: joined guild %s; introduced in %s", guild.id, channel.id)
            return
        log.info("discord: joined guild %s; no channel to introduce myself in", guild.id)


def _question_text(content: str, bot_id: int, links: Sequence[str], role_id: int | None = None) -> str:
    """The message without the bot's mention and without paper links (those are being added, not asked about)."""
    text = re.sub(rf"<@!?{bot_id}>", " ", content)
    if role_id is not None:
        text = text.replace(f"<@&{role_id}>", " ")
    for url in links:
        text = text.replace(url, " ")
    text = re.sub(r"https?://(?:www\.)?(?:export\.)?arxiv\.org/(?:abs|pdf)/\S+", " ", text)
    return " ".join(text.split())
