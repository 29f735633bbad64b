"""The local web chat (Gradio): upload PDFs, manage the papers of a named index, and ask questions about them.

A thin adapter like the Discord and Slack ones: it turns clicks into calls on `Core` (`bot.web_handlers`) and renders
what Core returns (`bot.web_render`). Here: the page's layout (`layout` → `Page`), its events wired to the handlers
(`wire`), both put together by `build_app`, and serving it (`serve`). The page is served by uvicorn on the caller's
event loop, so Core's locks, queues and database connections are used from the loop they belong to. Nothing on the
page comes from the internet: analytics are off, the theme's fonts are served by the app itself or come from the
system.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import gradio as gr
import uvicorn
from fastapi import FastAPI

from bot import health
from bot import web_render as render
from bot.core import Core
from bot.messages import PaperInfo
from bot.web_handlers import DEFAULT_INDEX, LOCAL_USER, Handlers, channel_for
from bot.settings import Settings

logger = logging.getLogger(__name__)

#: Makes the click handler of one paper's Remove button.
Remover = Callable[[int], Callable[[str], Awaitable[tuple[str, list[PaperInfo], str]]]]


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


@dataclass
class Page:
    """The page's components that handlers read or redraw."""

    status: gr.Markdown
    index: gr.Dropdown
    upload: gr.File
    activity: gr.Markdown
    refresh_button: gr.Button
    clear_button: gr.Button
    confirmed: gr.Checkbox
    chatbot: gr.Chatbot
    question: gr.Textbox
    ask_button: gr.Button
    papers: gr.State  # list[PaperInfo] of the current index
    conversation: gr.State  # the chat as shown: web_render messages
    turns: gr.State  # list[Turn]: earlier questions and answers, for follow-ups
    answer_refs: gr.State  # chat message position -> message_ref given to Core (for 👍/👎)


def layout(settings: Settings, notice: str | None, remover: Remover) -> Page:
    """Lay out the page inside the current gr.Blocks; `remover(doc_id)` is the handler of a paper's Remove button."""
    papers = gr.State([])
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
                    remove.click(remover(paper.doc_id), inputs=[index], outputs=[activity, papers, status])

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
    return Page(
        status=status,
        index=index,
        upload=upload,
        activity=activity,
        refresh_button=refresh_button,
        clear_button=clear_button,
        confirmed=confirmed,
        chatbot=chatbot,
        question=question,
        ask_button=ask_button,
        papers=papers,
        conversation=gr.State([]),
        turns=gr.State([]),
        answer_refs=gr.State({}),
    )


def wire(page: Page, handlers: Handlers) -> None:
    """Connect the page's events to the handlers (inside the current gr.Blocks)."""
    page_state = [page.papers, page.status]
    page.index.change(
        handlers.on_switch,
        inputs=[page.index],
        outputs=[*page_state, page.activity, page.chatbot, page.conversation, page.turns, page.answer_refs],
    )
    page.upload.upload(
        handlers.on_upload,
        inputs=[page.upload, page.index],
        outputs=[page.activity, *page_state, page.upload],
        concurrency_limit=None,
        show_progress_on=[page.upload],  # the activity line itself says what is happening
    )
    page.refresh_button.click(handlers.on_load, inputs=[page.index], outputs=page_state)
    page.clear_button.click(
        handlers.on_clear,
        inputs=[page.index, page.confirmed],
        outputs=[page.activity, *page_state],
        js=_CONFIRM_CLEAR_JS,
    )
    # One event for Enter and the button, so a second question waits for the first answer in this tab.
    gr.on(
        [page.question.submit, page.ask_button.click],
        handlers.on_ask,
        inputs=[page.question, page.index, page.conversation, page.turns, page.answer_refs],
        outputs=[page.chatbot, page.question, page.conversation, page.turns, page.answer_refs, page.status],
        concurrency_limit=None,
        show_progress_on=[page.chatbot],
    )
    page.chatbot.like(handlers.on_like, inputs=[page.index, page.answer_refs], outputs=None)
    page.chatbot.clear(handlers.on_forget, outputs=[page.conversation, page.turns, page.answer_refs])


def build_app(core: Core, settings: Settings, *, notice: str | None = None) -> gr.Blocks:
    """The page. `notice` is an extra line under the status (e.g. which test model a screenshot shows)."""
    handlers = Handlers(core)
    with gr.Blocks(title=f"{settings.bot_name} · chat about your papers", analytics_enabled=False) as app:
        handlers.page = page = layout(settings, notice, handlers.remover)
        app.load(handlers.on_load, inputs=[page.index], outputs=[page.papers, page.status, page.index])
        wire(page, handlers)
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
