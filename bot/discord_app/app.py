"""The Discord client itself: intents, the command tree, the tasks it owns, shutdown; `serve` is what
`paperbot run discord` runs."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

import discord
from discord import app_commands

from bot import health
from bot.core import Core
from bot.discord_app.answers import Answers
from bot.discord_app.editing import EDIT_INTERVAL_S
from bot.discord_app.events import Events
from bot.discord_app.feedback import Feedback
from bot.discord_app.history import History, _Exchange
from bot.discord_app.ingest import Ingestion
from bot.discord_app.mapping import ChannelsAndUsers
from bot.discord_app.slash import SlashCommands, _add_commands
from rag_engine.settings import Settings

log = logging.getLogger(__name__)


class PaperBot(Events, Answers, History, Ingestion, SlashCommands, Feedback, ChannelsAndUsers, discord.Client):
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
        self.settings = settings
        self.edit_interval = edit_interval
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_command_error)
        _add_commands(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._exchanges: OrderedDict[int, _Exchange] = OrderedDict()

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
