"""👍/👎 reactions on the bot's answers, recorded as feedback on them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.messages import Channel

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core

log = logging.getLogger(__name__)

_VOTES = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}


class Feedback:
    """Part of `SlackBot`: the `reaction_added` listener."""

    core: Core
    bot_user_id: str

    async def _on_reaction(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        item = event.get("item") or {}
        vote = _VOTES.get(event.get("reaction", "").split("::")[0])
        if vote is None or item.get("type") != "message" or not self._first_time(body):
            return
        if event.get("item_user") and event["item_user"] != self.bot_user_id:
            return
        channel = self._channel(item["channel"], body.get("team_id"))
        if self.core.is_allowed(channel):
            self._spawn(self._record_vote(channel, event["user"], item["ts"], vote), f"vote {item['ts']}")

    async def _record_vote(self, channel: Channel, user_id: str, ts: str, vote: int) -> None:
        user = await self._user(user_id)
        recorded = await self.core.record_feedback(channel, user, ts, vote)
        log.info(
            "reaction %+d on %s/%s by %s: %s",
            vote,
            channel.channel,
            ts,
            user.id,
            "recorded" if recorded else "not an answer",
        )
