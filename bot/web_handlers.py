"""What each click on the web chat does: a call on `Core`, and what to draw from its result (`bot.web_render`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import gradio as gr

from bot import web_render as render
from bot.core import Core
from bot.formatting import plural
from bot.hints import for_web
from bot.messages import APOLOGY, Channel, Failed, Final, PaperInfo, Partial, Queued, Turn, User
from rag_engine.errors import USER_FACING

if TYPE_CHECKING:  # annotations only: the page imports this module
    from bot.web_app import Page

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The person at the keyboard owns every index on their machine.
LOCAL_USER = User(id="local", name="you", is_moderator=True)
DEFAULT_INDEX = "default"
#: Streamed answers are redrawn at most this often; the final answer is always drawn.
REDRAW_EVERY_S = 0.1


def channel_for(index_name: str | None) -> Channel:
    """The web chat's indexes are free names, the same ones the CLI uses."""
    name = (index_name or "").strip() or DEFAULT_INDEX
    return Channel(platform="web", workspace="local", channel=name)


async def _guarded(call: Awaitable[T]) -> tuple[T | None, str | None]:
    """(result, None), or (None, the sentence to show) when Core refuses or fails."""
    try:
        return await call, None
    except USER_FACING as error:
        return None, for_web(str(error))
    except Exception:
        logger.exception("web chat: a call on Core failed")
        return None, APOLOGY


async def _with_progress(
    start: Callable[[Callable[[str], Awaitable[None]]], Awaitable[T]],
) -> AsyncIterator[tuple[str | None, T | None]]:
    """Run `start(progress)`; yield (step, None) for each progress line, then (None, result). Cancels on close."""
    steps: asyncio.Queue[str] = asyncio.Queue()

    async def progress(step: str) -> None:
        steps.put_nowait(step)

    task = asyncio.ensure_future(start(progress))
    try:
        while not task.done():
            next_step = asyncio.ensure_future(steps.get())
            await asyncio.wait({task, next_step}, return_when=asyncio.FIRST_COMPLETED)
            if next_step.done():
                yield next_step.result(), None
            else:
                next_step.cancel()
        while not steps.empty():
            yield steps.get_nowait(), None
        yield None, task.result()
    finally:
        task.cancel()


class Handlers:
    """What each click does: a Core call and a render. `page` is set once the page is laid out."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.page: Page

    async def load_index(self, index_name: str) -> tuple[list[PaperInfo], str]:
        channel = channel_for(index_name)
        papers, error = await _guarded(self.core.list_papers(channel))
        info, status_error = await _guarded(self.core.status(channel))
        if info is not None:
            status_text = render.status_line(info)
        else:
            status_text = "**Status unavailable:** " + render.plain(status_error or APOLOGY)
        if error:
            status_text += "  \n**Papers unavailable:** " + render.plain(error)
        return papers or [], status_text

    def remover(self, doc_id: int) -> Callable[[str], Awaitable[tuple[str, list[PaperInfo], str]]]:
        async def on_remove(index_name: str) -> tuple[str, list[PaperInfo], str]:
            removed, error = await _guarded(self.core.remove_paper(channel_for(index_name), LOCAL_USER, doc_id))
            if removed is not None:
                line = f"**Removed** {render.plain(removed.title)}."
            else:
                line = "**Not removed:** " + render.plain(error or APOLOGY)
            current, status_text = await self.load_index(index_name)
            return line, current, status_text

        return on_remove

    async def on_load(self, index_name: str) -> tuple[list[PaperInfo], str, Any]:
        current, status_text = await self.load_index(index_name)
        names, _ = await _guarded(self.core.index_names())
        choices = sorted({DEFAULT_INDEX, index_name, *(names or [])})
        return current, status_text, gr.Dropdown(choices=choices, value=index_name)

    async def on_switch(self, index_name: str) -> dict[Any, Any]:
        page = self.page
        current, status_text = await self.load_index(index_name)
        return {
            page.papers: current,
            page.status: status_text,
            page.activity: "",
            page.chatbot: [],
            page.conversation: [],
            page.turns: [],
            page.answer_refs: {},
        }

    async def on_upload(self, paths: list[str] | None, index_name: str) -> AsyncIterator[dict[Any, Any]]:
        page = self.page
        channel = channel_for(index_name)
        done_lines: list[str] = []
        for path in paths or []:
            filename = Path(path).name
            data = await asyncio.to_thread(Path(path).read_bytes)
            yield {page.activity: "\n\n".join([*done_lines, render.progress_line(filename, "uploaded, reading…")])}
            report = None
            error: str | None = None
            try:
                async for step, result in _with_progress(
                    lambda progress: self.core.ingest_upload(channel, LOCAL_USER, filename, data, progress)
                ):
                    if step is not None:
                        yield {page.activity: "\n\n".join([*done_lines, render.progress_line(filename, step)])}
                    else:
                        report = result
            except USER_FACING as failure:
                error = str(failure)
            except Exception:
                logger.exception("web chat: indexing %s failed", filename)
                error = APOLOGY
            if report is not None:
                done_lines.append(render.report_line(filename, report))
            else:
                done_lines.append(f"**Not indexed** {render.plain(filename)}: {render.plain(error or APOLOGY)}")
            current, status_text = await self.load_index(index_name)
            yield {page.activity: "\n\n".join(done_lines), page.papers: current, page.status: status_text}
        yield {page.upload: None}

    async def on_clear(self, index_name: str, really: bool) -> tuple[str, list[PaperInfo], str]:
        # A cancelled clear still answers, so the page (and a second click, which Gradio ignores while this
        # event is pending) knows it is done.
        line = "**Nothing cleared:** you cancelled."
        if really:
            count, error = await _guarded(self.core.clear(channel_for(index_name), LOCAL_USER))
            if error is None:
                line = f"**Cleared** {plural(count or 0, 'paper')} from this index."
            else:
                line = "**Not cleared:** " + render.plain(error)
        current, status_text = await self.load_index(index_name)
        return line, current, status_text

    async def on_ask(
        self, text: str, index_name: str, shown: list[dict], earlier: list[Turn], refs: dict[int, str]
    ) -> AsyncIterator[dict[Any, Any]]:
        page = self.page
        text = (text or "").strip()
        if not text:
            return
        channel = channel_for(index_name)
        before = [*shown, render.user_message(text)]
        reply: list[dict] = [render.looking_message()]
        yield {page.chatbot: before + reply, page.question: "", page.conversation: before}
        last_draw = 0.0
        events = self.core.ask(channel, LOCAL_USER, text, history=list(earlier))
        try:
            async for event in events:
                if isinstance(event, Queued):
                    reply = [render.waiting_message(event.position)]
                elif isinstance(event, Partial):
                    reply = render.answer_messages(
                        reasoning=event.reasoning, body=render.partial_message(event.answer), done=False
                    )
                    if time.monotonic() - last_draw < REDRAW_EVERY_S:
                        continue
                elif isinstance(event, Final):
                    answer = event.answer
                    reply = render.answer_messages(
                        reasoning=answer.reasoning,
                        body=render.final_message(answer),
                        done=True,
                        seconds=event.elapsed_s or None,
                    )
                    ref = f"web-{uuid.uuid4().hex}"
                    _, error = await _guarded(self.core.answer_posted(channel, ref, text, answer))
                    if error is None:
                        refs = {**refs, **{len(before) + i: ref for i in range(len(reply))}}
                    earlier = [*earlier, Turn(question=text, answer=answer.answer)]
                elif isinstance(event, Failed):
                    reply = [render.failed_message(for_web(event.message))]
                last_draw = time.monotonic()
                # The refs go with the answer they belong to: a 👍 clicked as soon as it shows must find its ref.
                yield {page.chatbot: before + reply, page.answer_refs: refs}
        except USER_FACING as failure:
            reply = [render.failed_message(str(failure))]
        except Exception:
            logger.exception("web chat: answering failed")
            reply = [render.failed_message(APOLOGY)]
        finally:
            closer = getattr(events, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
        _, status_text = await self.load_index(index_name)
        shown_now = before + reply
        yield {
            page.chatbot: shown_now,
            page.conversation: shown_now,
            page.turns: earlier,
            page.answer_refs: refs,
            page.status: status_text,
        }

    async def on_like(self, index_name: str, refs: dict[int, str], data: gr.LikeData) -> None:
        position = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        ref = refs.get(position)
        if ref is None or not isinstance(data.liked, bool):
            return
        vote = 1 if data.liked else -1
        await _guarded(self.core.record_feedback(channel_for(index_name), LOCAL_USER, ref, vote))

    async def on_forget(self) -> tuple[list, list, dict]:
        """The chat's own clear button: later questions start without the earlier turns."""
        return [], [], {}
