"""Answering: Core's answer streamed into a placeholder at a pace Discord accepts, then posted in pieces and
remembered for follow-ups and feedback."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord

from bot.discord_app import render
from bot.discord_app.editing import ThrottledEditor, deliver
from bot.discord_app.targets import AnswerTarget
from bot.messages import Channel, Failed, Final, Partial, Queued, Turn, User
from rag_engine.errors import USER_FACING
from rag_engine.types import Answer

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core

log = logging.getLogger(__name__)


class Answers:
    """Part of `PaperBot`: streaming and posting answers."""

    core: Core
    edit_interval: float

    async def stream_answer(
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
        editor = ThrottledEditor(target.edit, self.edit_interval)
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
                        await self._post_answer(channel, question, event.answer, target, previous)
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

    async def _post_answer(
        self, channel: Channel, question: str, answer: Answer, target: AnswerTarget, previous: int | None
    ) -> None:
        pieces = render.answer_pieces(answer)
        ids = [await deliver(lambda: target.edit(pieces[0]))]
        for piece in pieces[1:]:
            ids.append(await deliver(lambda piece=piece: target.send_more(piece)))
        self._remember(ids, question, answer, previous)
        for message_id in ids:
            try:
                await self.core.answer_posted(channel, str(message_id), question, answer)
            except USER_FACING as error:
                log.warning("discord: could not remember answer %s: %s", message_id, error)
