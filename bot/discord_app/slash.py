"""Discord's slash commands: `/ask` and the `/papers` group, deferred within their 3-second window."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord_app import render
from bot.discord_app.targets import InteractionTarget
from bot.formatting import split_message
from bot.messages import Channel, User
from rag_engine.errors import USER_FACING

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core
    from bot.discord_app.app import PaperBot

log = logging.getLogger(__name__)


class SlashCommands:
    """Part of `PaperBot`: what each command does, and how a failed one is reported."""

    core: Core

    async def command_context(self, interaction: discord.Interaction) -> tuple[Channel, User] | None:
        """The channel and user of a deferred command, or None after telling the user the channel is not enabled."""
        assert interaction.guild_id is not None
        channel = await self.channel_of(interaction.guild_id, interaction.channel, interaction.channel_id or 0)
        if not self.core.is_allowed(channel):
            await interaction.edit_original_response(content=render.not_allowed())
            return None
        member = interaction.user
        user = User(id=str(member.id), name=member.display_name, is_moderator=interaction.permissions.manage_messages)
        return channel, user

    async def respond(self, interaction: discord.Interaction, pieces: Sequence[str], *, ephemeral: bool) -> None:
        """Fill a deferred response; pieces past the first become followups."""
        await interaction.edit_original_response(content=pieces[0])
        for piece in pieces[1:]:
            await interaction.followup.send(piece, ephemeral=ephemeral)

    async def slash_ask(self, interaction: discord.Interaction, question: str, paper: str | None) -> None:
        await interaction.response.defer(thinking=True)  # first: the 3-second window
        context = await self.command_context(interaction)
        if context is None:
            return
        channel, user = context
        await self.stream_answer(channel, user, question, InteractionTarget(interaction), paper=paper, shown="")

    async def slash_list(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = await self.command_context(interaction)
        if context is None:
            return
        try:
            pieces = render.papers_list(await self.core.list_papers(context[0]))
        except USER_FACING as error:
            pieces = [render.failed(str(error))]
        await self.respond(interaction, pieces, ephemeral=True)

    async def slash_status(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = await self.command_context(interaction)
        if context is not None:
            text = await self._guard(lambda: self.core.status(context[0]), render.status, "reading the status")
            await self.respond(interaction, [text], ephemeral=True)

    async def slash_help(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.respond(interaction, split_message(self.core.help_text(), render.MESSAGE_LIMIT), ephemeral=True)

    async def slash_remove(self, interaction: discord.Interaction, paper: int) -> None:
        # Ephemeral, so a refusal is seen only by who asked; the channel hears about a removal through a followup.
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = await self.command_context(interaction)
        if context is None:
            return
        channel, user = context
        try:
            info = await self.core.remove_paper(channel, user, paper)
        except USER_FACING as error:
            await interaction.edit_original_response(content=render.failed(str(error)))
            return
        await interaction.edit_original_response(content=render.removed(info))
        await interaction.followup.send(render.removed_notice(interaction.user.mention, info), ephemeral=False)

    async def slash_clear(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = await self.command_context(interaction)
        if context is None:
            return
        channel, user = context
        try:
            count = await self.core.clear(channel, user)
        except USER_FACING as error:
            await interaction.edit_original_response(content=render.failed(str(error)))
            return
        await interaction.edit_original_response(content=render.cleared(count))
        await interaction.followup.send(render.cleared_notice(interaction.user.mention, count), ephemeral=False)

    async def paper_choices(self, interaction: discord.Interaction, current: str) -> list[tuple[int, str]]:
        """(doc id, label) of this channel's papers matching what the user typed, for autocomplete."""
        if interaction.guild_id is None:
            return []
        channel = await self.channel_of(interaction.guild_id, interaction.channel, interaction.channel_id or 0)
        if not self.core.is_allowed(channel):
            return []
        try:
            papers = await self.core.list_papers(channel)
        except USER_FACING:
            return []
        needle = current.strip().lower()
        matches = [p for p in papers if needle in p.title.lower() or needle == str(p.doc_id)]
        return [(p.doc_id, f"{p.doc_id}: {p.title}"[:100]) for p in matches[:25]]

    async def _on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
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


def _add_commands(bot: PaperBot) -> None:
    tree = bot.tree

    async def paper_title_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        choices = await bot.paper_choices(interaction, current)
        return [app_commands.Choice(name=label, value=str(doc_id)) for doc_id, label in choices]

    async def paper_id_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        choices = await bot.paper_choices(interaction, current)
        return [app_commands.Choice(name=label, value=doc_id) for doc_id, label in choices]

    @tree.command(name="ask", description="Ask a question about the papers in this channel")
    @app_commands.describe(question="Your question", paper="Only this paper (its id or part of its title)")
    @app_commands.autocomplete(paper=paper_title_choices)
    @app_commands.guild_only()
    async def ask(interaction: discord.Interaction, question: str, paper: str | None = None) -> None:
        await bot.run_owned(bot.slash_ask(interaction, question, paper), _task_name(interaction))

    papers = app_commands.Group(name="papers", description="The papers in this channel", guild_only=True)

    @papers.command(name="list", description="List the papers in this channel")
    async def list_(interaction: discord.Interaction) -> None:
        await bot.run_owned(bot.slash_list(interaction), _task_name(interaction))

    @papers.command(name="remove", description="Remove one paper (its uploader or a moderator)")
    @app_commands.describe(paper="The paper's id (see /papers list)")
    @app_commands.autocomplete(paper=paper_id_choices)
    async def remove(interaction: discord.Interaction, paper: int) -> None:
        await bot.run_owned(bot.slash_remove(interaction, paper), _task_name(interaction))

    @papers.command(name="clear", description="Remove every paper from this channel (moderators)")
    async def clear(interaction: discord.Interaction) -> None:
        await bot.run_owned(bot.slash_clear(interaction), _task_name(interaction))

    @papers.command(name="status", description="Papers, model and queue at a glance")
    async def status(interaction: discord.Interaction) -> None:
        await bot.run_owned(bot.slash_status(interaction), _task_name(interaction))

    @papers.command(name="help", description="How to use paperbot")
    async def help_(interaction: discord.Interaction) -> None:
        await bot.run_owned(bot.slash_help(interaction), _task_name(interaction))

    tree.add_command(papers)



def _task_name(interaction: discord.Interaction) -> str:
    return f"discord-command-{interaction.id}"
