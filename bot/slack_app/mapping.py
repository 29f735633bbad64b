"""Slack's channels and users as our `Channel` and `User`; moderators are workspace admins and owners."""

from __future__ import annotations

import logging
import time

from cachetools import LRUCache
from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import Channel, User
from bot.slack_app.api import API_ERRORS, Identity, error_code

log = logging.getLogger(__name__)


class People:
    """Which channel an event is about, and who a user is (users.info, remembered for a while)."""

    def __init__(self, client: AsyncWebClient, identity: Identity, moderator_ttl_s: float) -> None:
        self._client = client
        self._identity = identity
        self._ttl = moderator_ttl_s
        self._users: LRUCache[str, tuple[User, float]] = LRUCache(maxsize=5000)

    def channel(self, channel_id: str, team_id: str | None) -> Channel:
        return Channel("slack", team_id or self._identity.team_id, channel_id)

    async def user(self, user_id: str, fresh: bool = False) -> User:
        """Who `user_id` is; moderators are workspace admins and owners (users.info, cached for a while)."""
        cached = self._users.get(user_id)
        if cached is not None and not fresh and cached[1] > time.monotonic():
            return cached[0]
        try:
            info = (await self._client.users_info(user=user_id))["user"]
        except API_ERRORS as error:
            # Without users:read (or with Slack unreachable) nobody counts as a moderator; uploaders can still remove.
            log.warning("users.info %s failed: %s", user_id, error_code(error))
            return User(user_id, user_id, False)
        profile = info.get("profile") or {}
        name = profile.get("display_name") or info.get("real_name") or info.get("name") or user_id
        moderator = bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))
        user = User(user_id, name, moderator)
        self._users[user_id] = (user, time.monotonic() + self._ttl)
        return user
