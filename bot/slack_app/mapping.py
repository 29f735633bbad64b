"""Slack's channels and users as our `Channel` and `User`; moderators are workspace admins and owners."""

from __future__ import annotations

import logging
import time

from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import Channel, User
from bot.slack_app.api import _API_ERRORS, _error_code
from bot.slack_app.recent import _Recent

log = logging.getLogger(__name__)


class ChannelsAndUsers:
    """Part of `SlackBot`: which channel an event is about, and who a user is."""

    team_id: str
    client: AsyncWebClient
    _users: _Recent
    _moderator_ttl: float

    def _channel(self, channel_id: str, team_id: str | None) -> Channel:
        return Channel("slack", team_id or self.team_id, channel_id)

    async def _user(self, user_id: str, fresh: bool = False) -> User:
        """Who `user_id` is; moderators are workspace admins and owners (users.info, cached for a while)."""
        cached = self._users.get(user_id)
        if cached is not None and not fresh and cached[1] > time.monotonic():
            return cached[0]
        try:
            info = (await self.client.users_info(user=user_id))["user"]
        except _API_ERRORS as error:
            # Without users:read (or with Slack unreachable) nobody counts as a moderator; uploaders can still remove.
            log.warning("users.info %s failed: %s", user_id, _error_code(error))
            return User(user_id, user_id, False)
        profile = info.get("profile") or {}
        name = profile.get("display_name") or info.get("real_name") or info.get("name") or user_id
        moderator = bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))
        user = User(user_id, name, moderator)
        self._users.put(user_id, (user, time.monotonic() + self._moderator_ttl))
        return user
