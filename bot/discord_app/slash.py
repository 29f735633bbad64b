"""Discord's slash commands: `/ask` and the `/papers` group, deferred within their 3-second window (the skeleton
every command shares is `bot.slash.run_command`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import discord
from discord import app_commands

from bot.core import Core
from bot.discord_app import render
from bot.discord_app.answers import Answering, InteractionTarget
from bot.discord_app.mapping import Places
from bot.formatting import split_message
from bot.messages import Channel, User
from bot.slash import run_command
from rag_engine.errors import USER_FACING

log = logging.getLogger(__name__)

#: Runs a command's coroutine as a task the bot owns (cancelled when it closes), under a name.
RunOwned = Callable[[Coroutine[Any, Any, Any], str], Awaitable[None]]


class SlashCommands:
    """What each command does, how a failed one is reported, and the command tree's definitions (`register`)."""

    def __init__(self, core: Core, places: Places, answering: Answering) -> None:
        self.core = core
        self._places = places
        self._answering = answering

    async def context(self, interaction: discord.Interaction) -> tuple[Channel, User] | None:
        """The channel and user of a deferred command, or None after telling the user the channel is not enabled."""
        assert interaction.guild_id is not None
        channel = await self._places.channel_of(interaction.guild_id, interaction.channel, interaction.channel_id or 0)
        if not self.core.is_allowed(channel):
            await interaction.edit_original_response(content=render.not_allowed())
            return None
        member = interaction.user
        user = User(id=str(member.id), name=member.display_name, is_moderator=interaction.permissions.manage_messages)
        return channel, user

    async def _run(
        self,
        interaction: discord.Interaction,
        work: Callable[[tuple[Channel, User]], Awaitable[object]],
        *,
        ephemeral: bool = True,
    ) -> None:
        async def fail(message: str) -> None:
            await interaction.edit_original_response(content=render.failed(message))

        await run_command(
            getattr(interaction.command, "qualified_name", "?"),
            defer=lambda: interaction.response.defer(ephemeral=ephemeral, thinking=True),
            context=lambda: self.context(interaction),
            work=work,
            fail=fail,
        )

    @staticmethod
    async def respond(interaction: discord.Interaction, pieces: Sequence[str], *, ephemeral: bool) -> None:
        """Fill a deferred response; pieces past the first become followups."""
        await interaction.edit_original_response(content=pieces[0])
        for piece in pieces[1:]:
            await interaction.followup.send(piece, ephemeral=ephemeral)

    async def ask(self, interaction: discord.Interaction, question: str, paper: str | None) -> None:
        async def work(context: tuple[Channel, User]) -> None:
            channel, user = context
            target = InteractionTarget(interaction)
            await self._answering.stream(channel, user, question, target, paper=paper, shown="")

        await self._run(interaction, work, ephemeral=False)

    async def list_papers(self, interaction: discord.Interaction) -> None:
        async def work(context: tuple[Channel, User]) -> None:
            pieces = render.papers_list(await self.core.list_papers(context[0]))
            await self.respond(interaction, pieces, ephemeral=True)

        await self._run(interaction, work)

    async def show_status(self, interaction: discord.Interaction) -> None:
        async def work(context: tuple[Channel, User]) -> None:
            await self.respond(interaction, [render.status(await self.core.status(context[0]))], ephemeral=True)

        await self._run(interaction, work)

    async def show_help(self, interaction: discord.Interaction) -> None:
        """Answered anywhere, even where the bot is not enabled: it only explains."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.respond(interaction, split_message(self.core.help_text(), render.MESSAGE_LIMIT), ephemeral=True)

    async def remove(self, interaction: discord.Interaction, paper: int) -> None:
        # Ephemeral, so a refusal is seen only by who asked; the channel hears about a removal through a followup.
        async def work(context: tuple[Channel, User]) -> None:
            info = await self.core.remove_paper(*context, paper)
            await interaction.edit_original_response(content=render.removed(info))
            await interaction.followup.send(render.removed_notice(interaction.user.mention, info), ephemeral=False)

        await self._run(interaction, work)

    async def clear(self, interaction: discord.Interaction) -> None:
        async def work(context: tuple[Channel, User]) -> None:
            count = await self.core.clear(*context)
            await interaction.edit_original_response(content=render.cleared(count))
            await interaction.followup.send(render.cleared_notice(interaction.user.mention, count), ephemeral=False)

        await self._run(interaction, work)

    async def paper_choices(self, interaction: discord.Interaction, current: str) -> list[tuple[int, str]]:
        """(doc id, label) of this channel's papers matching what the user typed, for autocomplete."""
        if interaction.guild_id is None:
            return []
        channel = await self._places.channel_of(interaction.guild_id, interaction.channel, interaction.channel_id or 0)
        if not self.core.is_allowed(channel):
            return []
        try:
            papers = await self.core.list_papers(channel)
        except USER_FACING:
            return []
        needle = current.strip().lower()
        matches = [p for p in papers if needle in p.title.lower() or needle == str(p.doc_id)]
        return [(p.doc_id, f"{p.doc_id}: {p.title}"[:100]) for p in matches[:25]]

    @staticmethod
    async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """What discord.py reports outside a command's own handling (e.g. a failed autocomplete or check)."""
        original = getattr(error, "original", error)
        if isinstance(original, USER_FACING):
            text = render.failed(str(original))
        else:
            name = getattr(interaction.command, "qualified_name", "?")
            log.error("discord: command %s failed", name, exc_info=original)
            text = render.apology()
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.warning("discord: could not report a command error to the user")

    def register(self, tree: app_commands.CommandTree, run_owned: RunOwned) -> None:
        """Define `/ask` and `/papers …` on `tree`; each runs as a task the bot owns."""
        tree.error(self.on_error)

        async def paper_title_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            choices = await self.paper_choices(interaction, current)
            return [app_commands.Choice(name=label, value=str(doc_id)) for doc_id, label in choices]

        async def paper_id_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
            choices = await self.paper_choices(interaction, current)
            return [app_commands.Choice(name=label, value=doc_id) for doc_id, label in choices]

        @tree.command(name="ask", description="Ask a question about the papers in this channel")
        @app_commands.describe(question="Your question", paper="Only this paper (its id or part of its title)")
        @app_commands.autocomplete(paper=paper_title_choices)
        @app_commands.guild_only()
        async def ask(interaction: discord.Interaction, question: str, paper: str | None = None) -> None:
            await run_owned(self.ask(interaction, question, paper), _task_name(interaction))

        papers = app_commands.Group(name="papers", description="The papers in this channel", guild_only=True)

        @papers.command(name="list", description="List the papers in this channel")
        async def list_(interaction: discord.Interaction) -> None:
            await run_owned(self.list_papers(interaction), _task_name(interaction))

        @papers.command(name="remove", description="Remove one paper (its uploader or a moderator)")
        @app_commands.describe(paper="The paper's id (see /papers list)")
        @app_commands.autocomplete(paper=paper_id_choices)
        async def remove(interaction: discord.Interaction, paper: int) -> None:
            await run_owned(self.remove(interaction, paper), _task_name(interaction))

        @papers.command(name="clear", description="Remove every paper from this channel (moderators)")
        async def clear(interaction: discord.Interaction) -> None:
            await run_owned(self.clear(interaction), _task_name(interaction))

        @papers.command(name="status", description="Papers, model and queue at a glance")
        async def status(interaction: discord.Interaction) -> None:
            await run_owned(self.show_status(interaction), _task_name(interaction))

        @papers.command(name="help", description="How to use paperbot")
        async def help_(interaction: discord.Interaction) -> None:
            await run_owned(self.show_help(interaction), _task_name(interaction))

        tree.add_command(papers)


def _task_name(interaction: discord.Interaction) -> str:
    return f"discord-command-{interaction.id}"
