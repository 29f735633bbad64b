"""The local web chat (Gradio): upload PDFs, manage the papers of a named index, and ask questions about them.

A thin adapter like the Discord and Slack ones: it turns clicks into calls on `Core` and renders what Core returns
(see `bot.web_render`). The page is served by uvicorn on the caller's event loop, so Core's locks, queues and
database connections are used from the loop they belong to. Nothing on the page comes from the internet: analytics
are off, the theme's fonts are served by the app itself or come from the system.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import uvicorn
from fastapi import FastAPI

from bot import health
from bot import web_render as render
from bot.core import APOLOGY, Core
from bot.formatting import plural
from bot.hints import for_web
from bot.messages import Channel, Failed, Final, PaperInfo, Partial, Queued, Turn, User
from rag_engine.errors import USER_FACING
from rag_engine.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The person at the keyboard owns every index on their machine.
LOCAL_USER = User(id="local", name="you", is_moderator=True)
DEFAULT_INDEX = "default"
#: Streamed answers are redrawn at most this often; the final answer is always drawn.
REDRAW_EVERY_S = 0.1

_CSS = """
#status { font-size: 0.85rem; opacity: 0.85; }
#notice { font-size: 0.85rem; }
.paper-row { align-items: center; gap: 0.5rem; }
.paper-row .remove-paper { max-width: 5.5rem; min-width: 5.5rem; }
#activity:empty { display: none; }
"""

# Asks before clearing; the answer reaches Python as the hidden checkbox's value.
_CONFIRM_CLEAR_JS = "(index, _) => [index, confirm('Remove every paper from the index \"' + index + '\"?')]"


def theme() -> gr.themes.Base:
    """Gradio's default look with fonts bundled in Gradio (served by this app) or from the system, never Google."""
    return gr.themes.Default(
        font=[gr.themes.LocalFont("Source Sans Pro"), "ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "Consolas", "monospace"],
    )


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


def chat_box(value: list[dict] | None = None) -> gr.Chatbot:
    """The chat as the page shows it (`bot.web_render` makes what goes in it)."""
    return gr.Chatbot(
        value=value,
        label="Chat",
        height="max(420px, calc(100vh - 300px))",  # the chat takes what the window has left
        elem_id="chat",
        buttons=["copy"],
        allow_tags=False,
        sanitize_html=True,
        placeholder="Upload a PDF, then ask a question about it.",
    )


def build_app(core: Core, settings: Settings, *, notice: str | None = None) -> gr.Blocks:
    """The page. `notice` is an extra line under the status (e.g. which test model a screenshot shows)."""

    async def load_index(index_name: str) -> tuple[list[PaperInfo], str]:
        channel = channel_for(index_name)
        papers, error = await _guarded(core.list_papers(channel))
        info, status_error = await _guarded(core.status(channel))
        if info is not None:
            status_text = render.status_line(info)
        else:
            status_text = "**Status unavailable:** " + render.plain(status_error or APOLOGY)
        if error:
            status_text += "  \n**Papers unavailable:** " + render.plain(error)
        return papers or [], status_text

    def _remover(doc_id: int) -> Callable[[str], Awaitable[tuple[str, list[PaperInfo], str]]]:
        async def on_remove(index_name: str) -> tuple[str, list[PaperInfo], str]:
            removed, error = await _guarded(core.remove_paper(channel_for(index_name), LOCAL_USER, doc_id))
            if removed is not None:
                line = f"**Removed** {render.plain(removed.title)}."
            else:
                line = "**Not removed:** " + render.plain(error or APOLOGY)
            current, status_text = await load_index(index_name)
            return line, current, status_text

        return on_remove

    with gr.Blocks(title=f"{settings.bot_name} · chat about your papers", analytics_enabled=False) as app:
        conversation = gr.State([])  # the chat as shown: web_render messages
        turns = gr.State([])  # list[Turn]: earlier questions and answers, for follow-ups
        answer_refs = gr.State({})  # chat message position -> message_ref given to Core (for 👍/👎)
        papers = gr.State([])  # list[PaperInfo] of the current index

        gr.Markdown(
            f"# {render.plain(settings.bot_name)}\n"
            "Ask questions about your research papers. Answers come from local models and cite the pages they used."
        )
        status = gr.Markdown("Loading…", elem_id="status")
        if notice:
            gr.Markdown(render.plain(notice), elem_id="notice")

        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                index = gr.Dropdown(
                    choices=[DEFAULT_INDEX],
                    value=DEFAULT_INDEX,
                    allow_custom_value=True,
                    label="Index",
                    info="Pick an index, or type a new name to start one.",
                    elem_id="index",
                )
                upload = gr.File(file_count="multiple", label="Add PDFs", elem_id="upload", height=140)
                activity = gr.Markdown("", elem_id="activity")

                @gr.render(inputs=[papers])
                def paper_list(current: list[PaperInfo]) -> None:
                    gr.Markdown(render.papers_heading(current), elem_id="papers-heading")
                    for paper in current:
                        with gr.Row(elem_classes=["paper-row"]):
                            gr.Markdown(render.paper_label(paper, me=LOCAL_USER.id), elem_classes=["paper-title"])
                            remove = gr.Button(
                                "Remove", size="sm", variant="secondary", elem_classes=["remove-paper"], scale=0
                            )
                        remove.click(_remover(paper.doc_id), inputs=[index], outputs=[activity, papers, status])

                with gr.Row():
                    refresh_button = gr.Button("Refresh", size="sm", elem_id="refresh")
                    clear_button = gr.Button("Clear index", size="sm", variant="stop", elem_id="clear")
                confirmed = gr.Checkbox(value=False, visible=False)

            with gr.Column(scale=3):
                chatbot = chat_box()
                with gr.Row():
                    question = gr.Textbox(
                        placeholder="Ask about the papers in this index…",
                        show_label=False,
                        lines=1,
                        max_lines=6,
                        scale=6,
                        elem_id="question",
                    )
                    ask_button = gr.Button("Ask", variant="primary", scale=1, min_width=90, elem_id="ask")

        # --- handlers: each one is a Core call and a render ------------------------------------------------------
        async def on_load(index_name: str) -> tuple[list[PaperInfo], str, Any]:
            current, status_text = await load_index(index_name)
            names, _ = await _guarded(core.index_names())
            choices = sorted({DEFAULT_INDEX, index_name, *(names or [])})
            return current, status_text, gr.Dropdown(choices=choices, value=index_name)

        async def on_switch(index_name: str) -> dict[Any, Any]:
            current, status_text = await load_index(index_name)
            return {
                papers: current,
                status: status_text,
                activity: "",
                chatbot: [],
                conversation: [],
                turns: [],
                answer_refs: {},
            }

        async def on_upload(paths: list[str] | None, index_name: str) -> AsyncIterator[dict[Any, Any]]:
            channel = channel_for(index_name)
            done_lines: list[str] = []
            for path in paths or []:
                filename = Path(path).name
                data = await asyncio.to_thread(Path(path).read_bytes)
                yield {activity: "\n\n".join([*done_lines, render.progress_line(filename, "uploaded, reading…")])}
                report = None
                error: str | None = None
                try:
                    async for step, result in _with_progress(
                        lambda progress: core.ingest_upload(channel, LOCAL_USER, filename, data, progress)
                    ):
                        if step is not None:
                            yield {activity: "\n\n".join([*done_lines, render.progress_line(filename, step)])}
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
                current, status_text = await load_index(index_name)
                yield {activity: "\n\n".join(done_lines), papers: current, status: status_text}
            yield {upload: None}

        async def on_clear(index_name: str, really: bool) -> tuple[str, list[PaperInfo], str]:
            line = ""
            if really:
                count, error = await _guarded(core.clear(channel_for(index_name), LOCAL_USER))
                if error is None:
                    line = f"**Cleared** {plural(count, 'paper')} from this index."
                else:
                    line = "**Not cleared:** " + render.plain(error)
            current, status_text = await load_index(index_name)
            return line, current, status_text

        async def on_ask(
            text: str, index_name: str, shown: list[dict], earlier: list[Turn], refs: dict[int, str]
        ) -> AsyncIterator[dict[Any, Any]]:
            text = (text or "").strip()
            if not text:
                return
            channel = channel_for(index_name)
            before = [*shown, render.user_message(text)]
            reply: list[dict] = [render.looking_message()]
            yield {chatbot: before + reply, question: "", conversation: before}
            last_draw = 0.0
            events = core.ask(channel, LOCAL_USER, text, history=list(earlier))
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
                        _, error = await _guarded(core.answer_posted(channel, ref, text, answer))
                        if error is None:
                            refs = {**refs, **{len(before) + i: ref for i in range(len(reply))}}
                        earlier = [*earlier, Turn(question=text, answer=answer.answer)]
                    elif isinstance(event, Failed):
                        reply = [render.failed_message(for_web(event.message))]
                    last_draw = time.monotonic()
                    yield {chatbot: before + reply}
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
            _, status_text = await load_index(index_name)
            shown_now = before + reply
            yield {chatbot: shown_now, conversation: shown_now, turns: earlier, answer_refs: refs, status: status_text}

        async def on_like(index_name: str, refs: dict[int, str], data: gr.LikeData) -> None:
            position = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
            ref = refs.get(position)
            if ref is None or not isinstance(data.liked, bool):
                return
            vote = 1 if data.liked else -1
            await _guarded(core.record_feedback(channel_for(index_name), LOCAL_USER, ref, vote))

        async def on_forget() -> tuple[list, list, dict]:
            """The chat's own clear button: later questions start without the earlier turns."""
            return [], [], {}

        # --- wiring ------------------------------------------------------------------------------------------------
        app.load(on_load, inputs=[index], outputs=[papers, status, index])
        index.change(
            on_switch,
            inputs=[index],
            outputs=[papers, status, activity, chatbot, conversation, turns, answer_refs],
        )
        upload.upload(
            on_upload,
            inputs=[upload, index],
            outputs=[activity, papers, status, upload],
            concurrency_limit=None,
            show_progress_on=[upload],  # the activity line itself says what is happening
        )
        refresh_button.click(on_load, inputs=[index], outputs=[papers, status])
        clear_button.click(
            on_clear, inputs=[index, confirmed], outputs=[activity, papers, status], js=_CONFIRM_CLEAR_JS
        )
        # One event for Enter and the button, so a second question waits for the first answer in this tab.
        gr.on(
            [question.submit, ask_button.click],
            on_ask,
            inputs=[question, index, conversation, turns, answer_refs],
            outputs=[chatbot, question, conversation, turns, answer_refs, status],
            concurrency_limit=None,
            show_progress_on=[chatbot],
        )
        chatbot.like(on_like, inputs=[index, answer_refs], outputs=None)
        chatbot.clear(on_forget, outputs=[conversation, turns, answer_refs])

    # Core owns queueing and limits; Gradio's own per-event limit of 1 would hide Core's queue.
    app.queue(default_concurrency_limit=None)
    return app


def mount(app: gr.Blocks, settings: Settings) -> FastAPI:
    """The page as an ASGI app with every Gradio extra that talks to the outside world switched off."""
    return gr.mount_gradio_app(
        FastAPI(openapi_url=None, docs_url=None, redoc_url=None),
        app,
        path="/",
        server_name=settings.web_host,
        server_port=settings.web_port,
        footer_links=[],
        run_history=False,  # answers stay out of the browser's storage
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        theme=theme(),
        css=_CSS,
    )


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the entry point owns signals and stops us by cancelling."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def _listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as error:
        raise OSError(
            f"The web chat cannot listen on {host}:{port} ({error.strerror}). "
            "Set PAPERBOT_WEB_PORT to a free port, or stop what uses this one."
        ) from error


async def serve(
    core: Core,
    settings: Settings,
    *,
    on_ready: Callable[[str], None] | None = None,
    notice: str | None = None,
) -> None:
    """Serve the web chat on settings.web_host:web_port until cancelled. `on_ready` gets the URL once it listens
    (web_port 0 picks a free port); `notice` is passed to `build_app`."""
    sock = _listen(settings.web_host, settings.web_port)  # first: a taken port is reported before anything is built
    await serve_page(lambda: build_app(core, settings, notice=notice), settings, sock, on_ready=on_ready)


async def serve_page(
    page: Callable[[], gr.Blocks],
    settings: Settings,
    sock: socket.socket | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the Blocks that `page()` builds, mounted as `mount` does, on `sock` (else a new one on
    settings.web_host:web_port) until cancelled."""
    sock = sock or _listen(settings.web_host, settings.web_port)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
    config = uvicorn.Config(
        mount(page(), settings.model_copy(update={"web_port": port})),
        log_config=None,  # the entry point configures logging
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,  # an open tab keeps a streaming connection; don't wait for it forever
        ws="none",
    )
    server = _Server(config)
    running = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started and not running.done():
            await asyncio.sleep(0.05)
        if server.started:
            logger.info("web chat on %s", url)
            health.set_platform("web", lambda: not running.done())
            if on_ready is not None:
                on_ready(url)
        await asyncio.shield(running)
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await running
        raise
    finally:
        sock.close()
