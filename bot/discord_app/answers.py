"""Answering: where an answer goes (a reply message, or an interaction's deferred response), and Core's answer
streamed into it at a pace Discord accepts, then posted in pieces and remembered for follow-ups and feedback."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

import discord

from bot.core import Core
from bot.discord_app import render
from bot.discord_app.conversations import Conversations
from bot.discord_app.editing import ThrottledEditor, deliver
from bot.messages import Channel, Failed, Final, Partial, Queued, Turn, User
from rag_engine.errors import USER_FACING
from rag_engine.types import Answer

log = logging.getLogger(__name__)


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


class Answering:
    """Streams Core's answers into targets and posts them; remembers them in `conversations`."""

    def __init__(self, core: Core, conversations: Conversations, edit_interval: float) -> None:
        self.core = core
        self._conversations = conversations
        self._edit_interval = edit_interval

    async def stream(
        self,
        channel: Channel,
        user: User,
        question: str,
        target: AnswerTarget,
        *,
        history: Sequence[Turn] = (),
        paper: str | None = None,
        previous: int | None = None,
        shown: str = render.THINKING,
    ) -> None:
        """Stream Core's answer into `target`: queue position, the answer as it grows, then the final pieces."""
        editor = ThrottledEditor(target.edit, self._edit_interval)
        editor.mark_sent(shown)
        started = time.monotonic()
        # aclosing: leaving early, or being cancelled at shutdown, closes the stream, and that stops the generation.
        events = contextlib.aclosing(self.core.ask(channel, user, question, history=history, paper=paper))
        try:
            async with events as stream:
                async for event in stream:
                    if isinstance(event, Queued):
                        await editor.update(render.queued(event.position))
                    elif isinstance(event, Partial):
                        await editor.update(render.streaming(event))
                    elif isinstance(event, Final):
                        await editor.close()
                        await self._post(channel, question, event.answer, target, previous)
                        log.info("discord: answered in %s after %.1fs", channel.index_name, time.monotonic() - started)
                        return
                    elif isinstance(event, Failed):
                        await editor.final(render.failed(event.message))
                        return
            log.error("discord: answer stream ended without Final or Failed")  # a bug in Core
            await editor.final(render.apology())
        except USER_FACING as error:
            await editor.final(render.failed(str(error)))
        except discord.HTTPException as error:
            log.warning("discord: could not show an answer in %s (%s %s)", channel.index_name, error.status, error.code)
        except Exception:
            log.exception("discord: answering failed in %s", channel.index_name)
            await editor.final(render.apology())
        finally:
            await editor.close()

    async def _post(
        self, channel: Channel, question: str, answer: Answer, target: AnswerTarget, previous: int | None
    ) -> None:
        pieces = render.answer_pieces(answer)
        ids = [await deliver(lambda: target.edit(pieces[0]))]
        for piece in pieces[1:]:
            ids.append(await deliver(lambda piece=piece: target.send_more(piece)))
        self._conversations.remember(ids, question, answer, previous)
        for message_id in ids:
            try:
                await self.core.answer_posted(channel, str(message_id), question, answer)
            except USER_FACING as error:
                log.warning("discord: could not remember answer %s: %s", message_id, error)
