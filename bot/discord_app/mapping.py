"""Discord's channels and members as our `Channel` and `User`: threads use their parent channel's index, and
moderators are members with Manage Messages."""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.messages import Channel, User

log = logging.getLogger(__name__)

PLATFORM = "discord"


class Places:
    """Which index a Discord channel uses (resolving channels the client has not cached)."""

    def __init__(self, client: discord.Client) -> None:
        self._client = client

    async def channel_of(self, guild_id: int, channel: Any, channel_id: int) -> Channel:
        """Threads use their parent channel's index."""
        if channel is None:
            channel = self._client.get_channel(channel_id)
        if channel is None or isinstance(channel, discord.PartialMessageable):
            try:
                channel = await self._client.fetch_channel(channel_id)
            except discord.HTTPException:
                log.warning("discord: could not resolve channel %s; using it as its own index", channel_id)
                return Channel(PLATFORM, str(guild_id), str(channel_id))
        parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
        return Channel(PLATFORM, str(guild_id), str(parent_id or channel.id))


def user_of(member: discord.abc.User, channel: Any) -> User:
    """Moderator = Manage Messages in that channel."""
    moderator = False
    if isinstance(member, discord.Member) and channel is not None and hasattr(channel, "permissions_for"):
        moderator = channel.permissions_for(member).manage_messages
    return User(id=str(member.id), name=member.display_name, is_moderator=moderator)
