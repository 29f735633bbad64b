"""Slack's slash commands: `/ask` (the question is posted, then answered in its thread) and `/papers`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import Channel
from bot.slack_app import blocks as render
from bot.slack_app.api import APOLOGY
from bot.slack_app.blocks import SlackMessage
from bot.slack_app.editing import EditBudget, LiveMessage
from bot.slack_app.recent import _Recent
from rag_engine.errors import USER_FACING
from rag_engine.settings import Settings

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core

log = logging.getLogger(__name__)


class SlashCommands:
    """Part of `SlackBot`: the `/ask` and `/papers` listeners."""

    core: Core
    settings: Settings
    client: AsyncWebClient
    bot_user_id: str
    _threads: _Recent
    _edit_interval: float
    _budget: EditBudget

    async def _on_ask(self, ack: Callable[..., Awaitable[Any]], command: dict[str, Any], respond: Any) -> None:
        await ack()
        channel = self._channel(command["channel_id"], command.get("team_id"))
        if not self.core.is_allowed(channel):
            await respond(**_ephemeral(render.notice_message("I'm not enabled in this channel.")))
            return
        self._spawn(self._ask_command(channel, command, respond), f"/ask {command['channel_id']}")

    async def _ask_command(self, channel: Channel, command: dict[str, Any], respond: Any) -> None:
        question = render.plain_text(command.get("text", ""), self.bot_user_id)
        user = await self._user(command["user_id"])
        # The question is posted as a message so that the answer can stream into its thread (response_url only
        # allows five replies and no edits of the bot's own message).
        shown = render.escape(question)[: render.SECTION_CHARS - 100]
        header = render.SlackMessage(
            f"{user.name} asked: {question}"[: render.MESSAGE_CHARS],
            (render.section(f":question: <@{user.id}> asked: {shown}"),),
        )
        anchor = await self._post(command["channel_id"], header)
        if anchor is None:
            await respond(
                **_ephemeral(
                    render.notice_message(
                        "I can't post in this channel. Invite me first (`/invite @" + self.settings.bot_name + "`)."
                    )
                )
            )
            return
        posted = await self._post(command["channel_id"], render.thinking_message(), thread_ts=anchor)
        if posted is None:
            return
        self._threads.put((command["channel_id"], anchor), True)
        live = LiveMessage(self.client, command["channel_id"], posted, self._edit_interval, self._budget)
        await self._stream_answer(channel, user, question, (), live, anchor)

    async def _on_papers(self, ack: Callable[..., Awaitable[Any]], command: dict[str, Any], respond: Any) -> None:
        await ack()
        channel = self._channel(command["channel_id"], command.get("team_id"))
        if not self.core.is_allowed(channel):
            await respond(**_ephemeral(render.notice_message("I'm not enabled in this channel.")))
            return
        self._spawn(self._papers_command(channel, command, respond), f"/papers {command['channel_id']}")

    async def _papers_command(self, channel: Channel, command: dict[str, Any], respond: Any) -> None:
        words = command.get("text", "").split()
        action = words[0].lower() if words else "help"
        try:
            if action == "list":
                reply = _ephemeral(render.papers_message(await self.core.list_papers(channel)))
            elif action == "status":
                reply = _ephemeral(render.status_message(await self.core.status(channel)))
            elif action == "remove":
                if len(words) != 2 or not words[1].isdigit():
                    reply = _ephemeral(
                        render.notice_message("Usage: `/papers remove ID` (`/papers list` shows the ids).")
                    )
                else:
                    user = await self._user(command["user_id"])
                    paper = await self.core.remove_paper(channel, user, int(words[1]))
                    reply = _in_channel(render.removed_message(user.id, user.name, paper))
            elif action == "clear":
                user = await self._user(command["user_id"], fresh=True)
                removed = await self.core.clear(channel, user)
                reply = _in_channel(render.cleared_message(user.id, user.name, removed))
            else:
                reply = _ephemeral(render.markdown_message(self.core.help_text()))
        except USER_FACING as error:
            reply = _ephemeral(render.notice_message(str(error)))
        except Exception:
            log.exception("/papers %s in %s failed", action, channel.index_name)
            reply = _ephemeral(render.notice_message(APOLOGY))
        await respond(**reply)


def _ephemeral(message: SlackMessage) -> dict[str, Any]:
    return {"response_type": "ephemeral", **message.payload()}


def _in_channel(message: SlackMessage) -> dict[str, Any]:
    return {"response_type": "in_channel", **message.payload()}
