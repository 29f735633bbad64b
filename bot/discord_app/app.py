"""The Discord client: intents, the tasks it owns, shutdown, and the gateway events it handles (messages that add
papers or ask, reactions that rate answers, joining a guild); `serve` is what `paperbot run discord` runs.

The work itself is done by parts built here and handed what they need: `Places` (which index a channel uses),
`Conversations` (replies and remembered answers), `Answering`, `Ingestion` and `SlashCommands`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine, Sequence
from typing import Any

import discord
from discord import app_commands

from bot import health
from bot.core import Core
from bot.discord_app import render
from bot.discord_app.answers import Answering, ReplyTarget
from bot.discord_app.conversations import Conversations
from bot.discord_app.editing import EDIT_INTERVAL_S, reply
from bot.discord_app.ingest import Ingestion, is_pdf
from bot.discord_app.mapping import PLATFORM, Places, user_of
from bot.discord_app.slash import SlashCommands
from bot.messages import Channel, User
from rag_engine.errors import USER_FACING
from bot.settings import Settings

log = logging.getLogger(__name__)


class PaperBot(discord.Client):
    """paperbot on Discord. One instance per running bot; `serve` runs it."""

    def __init__(
        self, core: Core, settings: Settings, *, edit_interval: float = EDIT_INTERVAL_S, **options: Any
    ) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        # Nothing the bot writes may ping anyone: answers quote papers, and papers can say "@everyone".
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(intents=intents, **options)
        self.core = core
        self.places = Places(self)
        self.conversations = Conversations(core, self)
        self.answering = Answering(core, self.conversations, edit_interval)
        self.ingestion = Ingestion(core, settings, edit_interval)
        self.commands = SlashCommands(core, self.places, self.answering)
        self.tree = app_commands.CommandTree(self)
        self.commands.register(self.tree, self.run_owned)
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle --------------------------------------------------------------------------------------------------
    async def setup_hook(self) -> None:
        synced = await self.tree.sync()
        log.info("discord: synced %d application commands", len(synced))

    async def close(self) -> None:
        """Stop the work this bot started (uploads, answers), then disconnect."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await super().close()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` as a task this bot owns: cancelled on close, its failures logged."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def run_owned(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run `coro` as an owned task and wait for it (slash commands: discord.py starts their tasks, not us).
        Its failure is raised here, where the command tree reports it."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("discord task %s failed", task.get_name(), exc_info=error)

    async def on_ready(self) -> None:
        log.info("discord: connected as %s in %d guilds", getattr(self.user, "id", "?"), len(self.guilds))

    # --- messages: papers to add, questions to answer ----------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or message.author.id == self.user.id or message.guild is None:
            return
        self.spawn(self.handle_message(message), name=f"discord-message-{message.id}")

    async def handle_message(self, message: discord.Message) -> None:
        assert message.guild is not None and self.user is not None
        channel = await self.places.channel_of(message.guild.id, message.channel, message.channel.id)
        if not self.core.is_allowed(channel):
            return
        user = user_of(message.author, message.channel)
        pdfs = [a for a in message.attachments if is_pdf(a)]
        links = self.core.paper_links(message.content)
        for attachment in pdfs:
            await self.ingestion.attachment(message, channel, user, attachment)
        for url in links:
            await self.ingestion.link(message, channel, user, url)

        referenced = await self.conversations.referenced(message)
        own_role = message.guild.self_role
        mentioned = re.search(rf"<@!?{self.user.id}>", message.content) is not None or (
            own_role is not None and own_role in message.role_mentions
        )
        replying_to_bot = referenced is not None and referenced.author.id == self.user.id
        if not (mentioned or replying_to_bot):
            return
        question = question_text(message.content, self.user.id, links, own_role.id if own_role else None)
        if not question:
            if not pdfs and not links:
                await reply(message, self.core.help_text())
            return
        history = []
        if replying_to_bot and referenced is not None:
            history = await self.conversations.history(channel, referenced)
        previous = referenced.id if referenced is not None and self.conversations.knows(referenced.id) else None
        placeholder = await reply(message, render.THINKING)
        if placeholder is None:
            return
        log.info(
            "discord: question %s in %s by %s (%d earlier turns)", message.id, channel.index_name, user.id, len(history)
        )
        await self.answering.stream(
            channel, user, question, ReplyTarget(placeholder), history=history, previous=previous
        )

    # --- reactions: 👍/👎 on answers ------------------------------------------------------------------------------
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
        channel = await self.places.channel_of(payload.guild_id, None, payload.channel_id)
        name = payload.member.display_name if payload.member is not None else str(payload.user_id)
        user = User(id=str(payload.user_id), name=name)
        try:
            known = await self.core.record_feedback(channel, user, str(payload.message_id), vote)
        except USER_FACING as error:
            log.warning("discord: feedback on %s not recorded: %s", payload.message_id, error)
            return
        log.info("discord: vote %+d on %s %s", vote, payload.message_id, "recorded" if known else "ignored (no answer)")

    # --- joining a guild; channels and guilds going away --------------------------------------------------------------
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


def question_text(content: str, bot_id: int, links: Sequence[str], role_id: int | None = None) -> str:
    """The message without the bot's mention and without paper links (those are being added, not asked about)."""
    text = re.sub(rf"<@!?{bot_id}>", " ", content)
    if role_id is not None:
        text = text.replace(f"<@&{role_id}>", " ")
    for url in links:
        text = text.replace(url, " ")
    text = re.sub(r"https?://(?:www\.)?(?:export\.)?arxiv\.org/(?:abs|pdf)/\S+", " ", text)
    return " ".join(text.split())


# --- entry point ------------------------------------------------------------------------------------------------------
async def serve(core: Core, settings: Settings) -> None:
    """Run the Discord bot until cancelled (`paperbot run discord`)."""
    if settings.discord_token is None:
        raise ValueError("Set DISCORD_TOKEN (or PAPERBOT_DISCORD_TOKEN) to the bot's token from the developer portal.")
    bot = PaperBot(core, settings)
    health.set_platform("discord", lambda: bot.is_ready() and not bot.is_closed())
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    except discord.LoginFailure as error:
        message = "Discord refused DISCORD_TOKEN; copy the bot token again from the developer portal."
        raise ValueError(message) from error
    except discord.PrivilegedIntentsRequired as error:
        raise ValueError(
            "Turn on the Message Content intent for this bot (developer portal → Bot → Privileged Gateway Intents)."
        ) from error
