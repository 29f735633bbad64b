"""Slack's slash commands: `/ask` (the question is posted, then answered in its thread) and `/papers`, each on the
skeleton every platform shares (`bot.slash.run_command`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Core
from bot.messages import Channel
from bot.slack_app import blocks as render
from bot.slack_app.api import Identity, post
from bot.slack_app.blocks import SlackMessage
from bot.slack_app.editing import Editing
from bot.slack_app.mapping import People
from bot.slack_app.threads import Threads
from bot.slash import run_command

log = logging.getLogger(__name__)

#: Runs work as a task the bot owns, under a name for the logs.
Spawn = Callable[[Coroutine[Any, Any, Any], str], None]
Ack = Callable[..., Awaitable[Any]]


class SlashCommands:
    """The `/ask` and `/papers` listeners."""

    def __init__(
        self,
        core: Core,
        client: AsyncWebClient,
        identity: Identity,
        people: People,
        threads: Threads,
        editing: Editing,
        spawn: Spawn,
        bot_name: str,
    ) -> None:
        self.core = core
        self._client = client
        self._identity = identity
        self._people = people
        self._threads = threads
        self._editing = editing
        self._spawn = spawn
        self._bot_name = bot_name

    def _run(self, name: str, ack: Ack, command: dict[str, Any], respond: Any, work: Callable[[Channel], Any]) -> None:
        async def context() -> Channel | None:
            channel = self._people.channel(command["channel_id"], command.get("team_id"))
            if not self.core.is_allowed(channel):
                await respond(**_ephemeral(render.notice_message("I'm not enabled in this channel.")))
                return None
            return channel

        async def fail(message: str) -> None:
            await respond(**_ephemeral(render.notice_message(message)))

        # The whole command runs as an owned task; Bolt waits (up to 3 s) for its ack, which comes first.
        flow = run_command(name, defer=ack, context=context, work=work, fail=fail)
        self._spawn(flow, f"{name} {command['channel_id']}")

    async def on_ask(self, ack: Ack, command: dict[str, Any], respond: Any) -> None:
        self._run("/ask", ack, command, respond, lambda channel: self._ask(channel, command, respond))

    async def on_papers(self, ack: Ack, command: dict[str, Any], respond: Any) -> None:
        self._run("/papers", ack, command, respond, lambda channel: self._papers(channel, command, respond))

    async def _ask(self, channel: Channel, command: dict[str, Any], respond: Any) -> None:
        question = render.plain_text(command.get("text", ""), self._identity.user_id)
        user = await self._people.user(command["user_id"])
        # The question is posted as a message so that the answer can stream into its thread (response_url only
        # allows five replies and no edits of the bot's own message).
        shown = render.escape(question)[: render.SECTION_CHARS - 100]
        header = render.SlackMessage(
            f"{user.name} asked: {question}"[: render.MESSAGE_CHARS],
            (render.section(f":question: <@{user.id}> asked: {shown}"),),
        )
        anchor = await post(self._client, command["channel_id"], header)
        if anchor is None:
            invite = f"I can't post in this channel. Invite me first (`/invite @{self._bot_name}`)."
            await respond(**_ephemeral(render.notice_message(invite)))
            return
        posted = await post(self._client, command["channel_id"], render.thinking_message(), thread_ts=anchor)
        if posted is None:
            return
        self._threads.mark(command["channel_id"], anchor)
        live = self._editing.live(command["channel_id"], posted)
        await self._threads.stream_answer(channel, user, question, (), live, anchor)

    async def _papers(self, channel: Channel, command: dict[str, Any], respond: Any) -> None:
        words = command.get("text", "").split()
        action = words[0].lower() if words else "help"
        if action == "list":
            reply = _ephemeral(render.papers_message(await self.core.list_papers(channel)))
        elif action == "status":
            reply = _ephemeral(render.status_message(await self.core.status(channel)))
        elif action == "remove":
            if len(words) != 2 or not words[1].isdigit():
                reply = _ephemeral(render.notice_message("Usage: `/papers remove ID` (`/papers list` shows the ids)."))
            else:
                user = await self._people.user(command["user_id"])
                paper = await self.core.remove_paper(channel, user, int(words[1]))
                reply = _in_channel(render.removed_message(user.id, user.name, paper))
        elif action == "clear":
            user = await self._people.user(command["user_id"], fresh=True)
            removed = await self.core.clear(channel, user)
            reply = _in_channel(render.cleared_message(user.id, user.name, removed))
        else:
            reply = _ephemeral(render.markdown_message(self.core.help_text()))
        await respond(**reply)


def _ephemeral(message: SlackMessage) -> dict[str, Any]:
    return {"response_type": "ephemeral", **message.payload()}


def _in_channel(message: SlackMessage) -> dict[str, Any]:
    return {"response_type": "in_channel", **message.payload()}
