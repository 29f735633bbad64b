"""Where an answer goes: a reply message, or an interaction's deferred response."""

from __future__ import annotations

import discord


class AnswerTarget:
    """A placeholder being turned into an answer: a reply message, or an interaction's deferred response."""

    async def edit(self, text: str) -> int:
        """Replace the first message's text; returns its id."""
        raise NotImplementedError

    async def send_more(self, text: str) -> int:
        """Post one more piece after the first; returns its id."""
        raise NotImplementedError


class ReplyTarget(AnswerTarget):
    def __init__(self, placeholder: discord.Message) -> None:
        self.placeholder = placeholder

    async def edit(self, text: str) -> int:
        await self.placeholder.edit(content=text)
        return self.placeholder.id

    async def send_more(self, text: str) -> int:
        message = await self.placeholder.channel.send(
            text, reference=self.placeholder.to_reference(fail_if_not_exists=False), mention_author=False
        )
        return message.id


class InteractionTarget(AnswerTarget):
    def __init__(self, interaction: discord.Interaction, ephemeral: bool = False) -> None:
        self.interaction = interaction
        self.ephemeral = ephemeral

    async def edit(self, text: str) -> int:
        message = await self.interaction.edit_original_response(content=text)
        return message.id

    async def send_more(self, text: str) -> int:
        message = await self.interaction.followup.send(text, ephemeral=self.ephemeral, wait=True)
        return message.id
