"""The web chat: its rendering is inert HTML-wise, and the page works end to end in headless Chromium on the real Core
with the tiny real models, loading nothing from off the machine.

`PAPERBOT_WRITE_SCREENSHOT=1` also writes docs/screenshot-web.png (the README's picture of the page answering).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.expected_conditions import alert_is_present
from selenium.webdriver.support.ui import WebDriverWait

from bot import web_render as render
from bot.messages import PaperInfo, Partial, User
from bot.runtime import open_core
from bot.web_app import chat_box, serve, serve_page
from bot.web_handlers import LOCAL_USER, channel_for
from bot.settings import Settings
from rag_engine.types import Answer, IngestReport, Source
from tests.browser import CHROMEDRIVER, CHROMIUM, Browser, off_host
from tests.conftest import EDGE_PDFS, REAL_PDFS, REPO

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
SCREENSHOT = REPO / "docs" / "screenshot-web.png"
PAPER_PDF = REAL_PDFS / "distillation.pdf"
CORRUPT_PDF = EDGE_PDFS / "truncated_header_only.pdf"
HOSTILE_TITLE = 'Attention <img src=x onerror="window.__xss=1"> is all you need'
OTHER_USER = User(id="someone-else", name="someone else")
#: TEST-NET-2 (RFC 5737): nothing answers there, and any request to it is a request that should not have been made.
OUTSIDE = "198.51.100.7"
MD_IMAGE = f"![logo](http://{OUTSIDE}/pixel.png)"
MD_LINK = f"[click](http://{OUTSIDE}/go)"
MD_TITLE = f"Attention {MD_IMAGE} {MD_LINK} is all you need"
MD_ANSWER = f"**Yes** [1]. {MD_IMAGE} {MD_LINK} <http://{OUTSIDE}/auto> www.example.org\n\n- one\n- two"
MODEL_LABEL = "Model in this picture: tiny random-weight Qwen2 built for the tests, so its words are noise."


# --- rendering --------------------------------------------------------------------------------------------------------
def test_model_output_and_paper_text_reach_the_page_as_text_not_html() -> None:
    source = Source(n=1, doc_id=1, chunk_id=2, title=HOSTILE, page_start=3, page_end=4)
    answer = Answer(reasoning=HOSTILE, answer=HOSTILE, abstained=False, sources=(source,))
    messages = render.answer_messages(reasoning=answer.reasoning, body=render.final_message(answer), done=True)
    paper = PaperInfo(doc_id=1, title=HOSTILE, pages=2, added="today", uploader=HOSTILE)
    failed = IngestReport(status="failed", message=HOSTILE)
    shown = [m["content"] for m in messages] + [
        render.paper_label(paper),
        render.report_line(HOSTILE, failed),
        render.user_message(HOSTILE)["content"],
    ]
    for text in shown:
        assert "<img" not in text and "<script" not in text
        assert "alert(1)" in html.unescape(text)  # shown, as text
    assert "p. 3–4" in html.unescape(messages[-1]["content"])
    assert messages[0]["metadata"]["status"] == "done"  # the reasoning is folded once the answer is complete


def _markdown_answer() -> Answer:
    source = Source(n=1, doc_id=1, chunk_id=2, title=MD_TITLE, page_start=3, page_end=3)
    return Answer(reasoning=f"I saw {MD_IMAGE}", answer=MD_ANSWER, abstained=False, sources=(source,))


def test_titles_render_as_text_and_answers_as_markdown_that_loads_and_links_nothing() -> None:
    paper = PaperInfo(doc_id=1, title=MD_TITLE, pages=2, added="today", uploader=MD_LINK)
    report = IngestReport(status="indexed", title=MD_TITLE, pages=1, chunks=1)
    shown = (render.paper_label(paper), render.report_line("a.pdf", report), render.user_message(MD_TITLE)["content"])
    for text in shown:
        assert "](" not in text and "http://" not in text  # no Markdown link or image can form
        assert MD_TITLE in html.unescape(text)  # and the title is shown exactly as written
    answer = _markdown_answer()
    body, sources = render.final_message(answer)["content"].split("\n\n**Sources**\n")
    assert "<strong>Yes</strong>" in body and "<li>one</li>" in body  # the answer's own formatting is kept
    # One HTML block, on one line, so that the page's Markdown renderer leaves it as it is.
    assert body.startswith("<div") and body.endswith("</div>") and "\n" not in body
    assert "<img" not in body and "<a " not in body
    assert "[image: logo]" in body and f"click (http://{OUTSIDE}/go)" in body
    assert "](" not in sources and MD_TITLE in html.unescape(sources)  # the source's title, as written


async def test_markdown_from_titles_and_answers_fetches_nothing_in_headless_chromium(tmp_path: Path) -> None:
    """Defect 4: a Markdown image in a title made the browser fetch it. Nothing on the page may reach OUTSIDE."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "apt-get install -y chromium chromium-driver"
    answer = _markdown_answer()
    paper = PaperInfo(doc_id=1, title=MD_TITLE, pages=2, added="today", uploader=MD_LINK)
    shown = [
        render.user_message(MD_ANSWER),
        *render.answer_messages(reasoning=answer.reasoning, body=render.final_message(answer), done=False),
        render.failed_message(MD_ANSWER),
    ]

    def page() -> gr.Blocks:
        with gr.Blocks() as blocks:
            gr.Markdown(render.paper_label(paper), elem_id="papers")
            duplicate = IngestReport(status="duplicate", title=MD_TITLE)
            gr.Markdown(render.report_line("a.pdf", duplicate), elem_id="activity")
            chat_box(shown)
        return blocks

    loop = asyncio.get_running_loop()
    ready: asyncio.Future[str] = loop.create_future()
    settings = Settings(_env_file=None, data_dir=tmp_path, web_port=0)
    server = asyncio.create_task(serve_page(page, settings, on_ready=ready.set_result))
    try:
        url = await asyncio.wait_for(ready, 60)
        browser = await asyncio.to_thread(Browser, tmp_path / "chromium-profile")
        try:
            found = await asyncio.to_thread(_load_and_inspect, browser, url)
        finally:
            await asyncio.to_thread(browser.quit)
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    assert off_host(found["requests"]) == []
    assert found["outside"] == []  # no <img>, <a>, <source>… in the page names the outside host
    assert MD_TITLE in found["papers"] and MD_TITLE in found["activity"]  # as text, every character
    assert "Yes" in found["chat"] and "[image: logo]" in found["chat"]


def _load_and_inspect(browser: Browser, url: str) -> dict[str, Any]:
    driver, wait, text, _ = _page(browser)
    driver.get("about:blank")
    browser.forget()
    driver.get(url)
    wait.until(lambda _: "two" in text("#chat") and "need" in text("#papers") and "need" in text("#activity"))
    outside = driver.execute_script(
        "return [...document.querySelectorAll('[src],[href],[srcset],[poster]')]"
        ".map(e => e.outerHTML).filter(h => h.includes(arguments[0]))",
        OUTSIDE,
    )
    return {
        "papers": text("#papers"),
        "activity": text("#activity"),
        "chat": text("#chat"),
        "outside": outside,
        "requests": browser.requests,
    }


def test_serve_names_the_setting_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = Settings(_env_file=None, data_dir=tmp_path, web_port=port)
        with pytest.raises(OSError, match="PAPERBOT_WEB_PORT"):
            asyncio.run(serve(None, settings))  # type: ignore[arg-type]  # fails before Core is touched


# --- the page in a real browser ---------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_web_chat_in_headless_chromium(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "apt-get install -y chromium chromium-driver"
    # The status line names the model file; give the tiny model a name that says what it is.
    model = tmp_path / "tiny-random-qwen2-test.gguf"
    model.symlink_to(settings.llm_model)
    # One generation at a time, so that the page's question waits behind others in the queue.
    settings = settings.model_copy(
        update={"web_port": 0, "llm_model": str(model), "parallel": 1, "max_new_tokens": 128}
    )
    default = channel_for("default")
    hostile_pdf = _pdf_titled(tmp_path / "hostile.pdf", HOSTILE_TITLE)

    async with open_core(settings, heartbeat=False) as core:
        # The tiny encoder indexes a paper faster than the page redraws; encoding as slowly as a real model would
        # lets Core's progress lines reach the page.
        encode = core.engine.encoders.encode_documents

        async def slow_encode(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(1.0)
            return await encode(*args, **kwargs)

        monkeypatch.setattr(core.engine.encoders, "encode_documents", slow_encode)
        # What Core says about the corrupt file, asked directly in a scratch index: the page must show the same.
        probe = await core.ingest_upload(channel_for("probe"), LOCAL_USER, CORRUPT_PDF.name, CORRUPT_PDF.read_bytes())
        assert probe.status == "failed" and probe.message

        loop = asyncio.get_running_loop()
        busy: list[asyncio.Task] = []

        async def keep_model_busy() -> None:
            """Someone else's questions, one generating and two waiting when the page asks: the page's must wait."""
            generating = asyncio.Event()

            async def other_question(text: str) -> None:
                async for event in core.ask(default, OTHER_USER, text):
                    if isinstance(event, Partial):
                        generating.set()
                generating.set()

            busy.append(asyncio.create_task(other_question("What is the temperature used for?")))
            await asyncio.wait_for(generating.wait(), 120)
            for text in ("Why use soft targets?", "How large is the student?"):
                busy.append(asyncio.create_task(other_question(text)))
            while core.answerer.queue_depth < 2:  # both are in the queue before the page asks
                await asyncio.sleep(0.01)

        def occupy() -> None:  # called from the browser thread right before the page asks
            asyncio.run_coroutine_threadsafe(keep_model_busy(), loop).result()

        ready: asyncio.Future[str] = loop.create_future()
        server = asyncio.create_task(serve(core, settings, on_ready=ready.set_result, notice=MODEL_LABEL))
        try:
            url = await asyncio.wait_for(ready, 60)
            browser = await asyncio.to_thread(Browser, tmp_path / "chromium-profile")
            try:
                seen = await asyncio.to_thread(
                    _upload_ask_and_refuse, browser, url, probe.message, hostile_pdf, occupy
                )
                await asyncio.gather(*busy)
                # What the page did went through Core: the papers are in the index, the 👍 is stored with the answer.
                titles = [paper.title for paper in await core.list_papers(default)]
                assert seen["title"] in titles and HOSTILE_TITLE in titles and len(titles) == 2
                votes = await core.feedback(default)
                assert [vote["vote"] for vote in votes] == [1]
                # The reasoning, when the model wrote one, is folded away under its title.
                reasoning = votes[0]["answer"]["reasoning"].strip()
                assert ("Reasoning" in seen["final"]) == bool(reasoning)
                # Folded: Gradio renders a finished thought's title only, not its text. (Looking for the reasoning's
                # words in the page instead fails when the random model repeats them in the answer.)
                assert seen["unfolded"] == 0

                await asyncio.to_thread(_remove_switch_and_clear, browser, seen["title"])
                assert await core.list_papers(default) == []
                requests = browser.requests
            finally:
                await asyncio.to_thread(browser.quit)
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server

    assert max(seen["queue"], default=0) >= 2, "the page never showed its question waiting behind others"
    assert seen["streamed"] >= 2, "the answer was not drawn while it was being written"
    assert len(requests) > 10  # the page's own assets, its queue and upload calls were all recorded
    assert off_host(requests) == []


def _upload_ask_and_refuse(
    browser: Browser, url: str, corrupt_reason: str, hostile_pdf: Path, occupy: Callable[[], None]
) -> dict:
    """Upload a real paper, ask about it while the model is busy, 👍 the answer, then upload a corrupt PDF and one
    whose title is HTML, at once."""
    driver, wait, text, rows = _page(browser)
    driver.get("about:blank")
    browser.forget()  # what the browser loaded for itself before our page
    driver.get(url)
    wait.until(lambda _: "index default ·" in text("#status"))
    assert "No papers in this index yet" in text("#papers-heading")
    assert "tiny-random-qwen2-test.gguf" in text("#status")

    # A real paper: Core's progress lines while it is read (a MutationObserver records each redraw), then listed.
    _record_redraws(driver, "#activity")
    _upload(driver, PAPER_PDF)
    wait.until(lambda _: len(rows()) == 1)
    assert "Indexed" in text("#activity") and "1 paper," in text("#status")
    title = rows()[0].splitlines()[0]
    reading = {s for s in _redraws(driver, "#activity") if f"Reading {PAPER_PDF.name}:" in s}
    assert len(reading) >= 2  # "uploaded, reading…" and at least one step reported by Core

    # A question: the answer is streamed, then shown with its sources.
    _record_redraws(driver, "#chat")
    occupy()
    question = "What does the paper say about knowledge distillation?"
    driver.find_element(By.CSS_SELECTOR, "#question textarea").send_keys(question, Keys.ENTER)
    wait.until(lambda _: "Sources" in text("#chat"))
    final = text("#chat")
    unfolded = driver.execute_script("return document.querySelectorAll('#chat .title.expanded').length")
    snaps = _redraws(driver, "#chat")
    partial = {s for s in snaps if "Sources" not in s and (s.rstrip().endswith("…") or "Writing…" in s)}
    sources = final.split("Sources", 1)[1]
    assert title in sources and ("p. " in sources or "pp. " in sources)
    assert driver.find_element(By.CSS_SELECTOR, "#question textarea").get_attribute("value") == ""

    # 👍 on the answer (the caller checks that Core stored it).
    buttons = driver.find_elements(By.CSS_SELECTOR, "#chat button")
    [b for b in buttons if b.get_attribute("aria-label") == "Like"][-1].click()
    if os.environ.get("PAPERBOT_WRITE_SCREENSHOT") == "1":
        _write_screenshot(driver, question)

    # Several files at once: the corrupt one is refused with Core's own reason, the other one is indexed and its
    # title, which is HTML, is shown as text and never runs.
    _upload(driver, CORRUPT_PDF, hostile_pdf)
    wait.until(lambda _: len(rows()) == 2 and CORRUPT_PDF.name in text("#activity"))
    activity = text("#activity")
    assert f"Not indexed {CORRUPT_PDF.name}: {corrupt_reason}" in activity
    assert f"Indexed {HOSTILE_TITLE}" in activity
    assert any(row.startswith(HOSTILE_TITLE) for row in rows())
    assert driver.execute_script("return [window.__xss, document.querySelectorAll('img[src=\"x\"]').length]") == [
        None,
        0,
    ]

    return {
        "title": title,
        "queue": sorted({int(n) for s in snaps for n in re.findall(r"number (\d+) in the queue", s)}
                        | ({1} if any("next in line" in s for s in snaps) else set())),
        "streamed": len(partial),
        "final": final,
        "unfolded": unfolded,
    }


def _remove_switch_and_clear(browser: Browser, title: str) -> None:
    driver, wait, text, rows = _page(browser)

    # Remove one paper with its own button.
    other_row = next(r for r in driver.find_elements(By.CSS_SELECTOR, ".paper-row") if title not in r.text)
    other_row.find_element(By.TAG_NAME, "button").click()
    wait.until(lambda _: len(rows()) == 1)
    assert rows()[0].startswith(title) and "Removed" in text("#activity")

    # Another index is another set of papers and a fresh chat; coming back finds the paper again.
    for name in ("second", "default"):
        box = driver.find_element(By.CSS_SELECTOR, "#index input")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(name, Keys.ENTER)
        wait.until(lambda _: f"index {name} ·" in text("#status"))
        if name == "second":
            wait.until(lambda _: "No papers in this index yet" in text("#papers-heading"))
            assert "Sources" not in text("#chat")
    wait.until(lambda _: len(rows()) == 1)

    # Clear asks first: dismissing keeps the paper (else the second clear would report 0), accepting removes it.
    # The dialog opens once the page dispatches the click; Gradio drops a click while the previous one is pending,
    # so the second click waits for the cancelled clear's reply.
    driver.find_element(By.ID, "clear").click()
    wait.until(alert_is_present()).dismiss()
    wait.until(lambda _: "Nothing cleared" in text("#activity"))
    driver.find_element(By.ID, "clear").click()
    wait.until(alert_is_present()).accept()
    wait.until(lambda _: not rows() and "Cleared 1 paper " in text("#activity"))


def _record_redraws(driver, selector: str) -> None:
    driver.execute_script(
        """
        const [selector] = arguments, element = document.querySelector(selector);
        window.__redraws = window.__redraws || {};
        window.__redraws[selector] = [];
        new MutationObserver(() => window.__redraws[selector].push(element.innerText))
            .observe(element, {subtree: true, childList: true, characterData: true});
        """,
        selector,
    )


def _redraws(driver, selector: str) -> list[str]:
    return driver.execute_script("return window.__redraws[arguments[0]]", selector)


def _pdf_titled(path: Path, title: str) -> Path:
    """A one-page text PDF whose metadata title is `title`."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page()
    body = "Knowledge distillation trains a small student network to match the soft targets of a large teacher. "
    page.insert_textbox(pymupdf.Rect(72, 72, 540, 720), body * 12, fontsize=11)
    doc.set_metadata({"title": title})
    doc.save(path)
    return path


def _page(browser: Browser):
    driver = browser.driver
    wait = WebDriverWait(driver, 180, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException])

    # Read through JavaScript in one go: Gradio re-renders the paper list, so element handles go stale.
    def text(selector: str) -> str:
        return driver.execute_script("return document.querySelector(arguments[0])?.innerText ?? ''", selector)

    def rows() -> list[str]:
        return driver.execute_script("return [...document.querySelectorAll('.paper-row')].map(r => r.innerText)")

    return driver, wait, text, rows


def _upload(driver, *paths: Path) -> None:
    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys("\n".join(map(str, paths)))


def _write_screenshot(driver, question: str) -> None:
    """The page in a taller window with the question at the top of the chat, as a palette PNG (a page is mostly
    flat colours, so it stays small)."""
    from PIL import Image

    size = driver.get_window_size()
    driver.set_window_size(1440, 1300)
    asked = driver.find_element(By.XPATH, f"//*[@id='chat']//*[normalize-space(text())='{question}']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'}); window.scrollTo(0, 0);", asked)
    png = driver.get_screenshot_as_png()
    driver.set_window_size(size["width"], size["height"])
    image = Image.open(io.BytesIO(png)).convert("RGB")
    small = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    small.save(SCREENSHOT, optimize=True)
    assert SCREENSHOT.stat().st_size < 300_000
