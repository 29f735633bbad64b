"""How the web chat shows Core's results: chat messages, report lines and the status line.

The page renders Markdown (with HTML), so what a paper, a user or the model wrote could load things or link out: a
title `![x](https://host/x.png)` made the browser fetch that URL. Two ways in, and nothing else reaches the page:

- `plain`: titles, file names, passages, user text and Core's sentences are shown exactly as written. Every ASCII
  punctuation character becomes a numeric character reference, which Markdown shows as that character and never
  reads as markup, so no link, image, emphasis, HTML tag or autolink can form.
- `answer_html`: the model's Markdown (answer and reasoning) is rendered here, by markdown-it with raw HTML off,
  into one HTML block that the page passes through untouched: images become their alt text, links their text
  and address as text, so the answer can format but never load or link to anything.

The Chatbot's own HTML sanitiser stays on as a second guard.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from markdown_it import MarkdownIt

from bot.formatting import plural, source_lines
from bot.messages import PaperInfo, StatusInfo
from rag_engine.types import Answer, IngestReport

#: A message as gr.Chatbot takes it: {"role", "content", optional "metadata"}.
ChatMessage = dict

REASONING_TITLE = "Reasoning"


_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")
_INDENT = re.compile(r"^[ \t]+", re.MULTILINE)


def plain(text: str) -> str:
    """`text` as Markdown that shows exactly these characters: no markup, HTML, link or image can form in it.

    >>> plain("![x](https://example.com/x.png) <b>*hi*</b> www.example.com")
    '&#33;&#91;x&#93;&#40;https&#58;&#47;&#47;example&#46;com&#47;x&#46;png&#41; &#60;b&#62;&#42;hi&#42;&#60;&#47;b&#62; www&#46;example&#46;com'
    """
    # Leading blanks would make an indented code block, where character references are shown undecoded.
    return _PUNCTUATION.sub(lambda m: f"&#{ord(m.group())};", _INDENT.sub("", text))


def _image_as_text(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    alt = self.renderInlineAsText(tokens[idx].children or [], options, env)
    return html.escape(f"[image: {alt}]" if alt else "[image]")


# A link's text stays and its address follows as text (an autolink's text is its address: shown once).
def _link_open_as_text(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    env.setdefault("links", []).append("" if token.markup == "autolink" else str(token.attrs.get("href", "")))
    return ""


def _link_close_as_text(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    href = env["links"].pop()
    return html.escape(f" ({href})") if href else ""


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_text)
    md.add_render_rule("link_open", _link_open_as_text)
    md.add_render_rule("link_close", _link_close_as_text)
    return md


_MARKDOWN = _markdown()


def answer_html(markdown: str, suffix: str = "") -> str:
    """The model's Markdown as one inert HTML block: formatting kept, images as their alt text, links as text.

    >>> answer_html("**Yes** [1], see ![chart](https://example.com/c.png) and [here](https://example.com)")
    '<div class="answer"><p><strong>Yes</strong> [1], see [image: chart] and here (https://example.com)</p>&#10;</div>'
    """
    rendered = _MARKDOWN.render(markdown) + html.escape(suffix)
    # One line: the page's Markdown renderer passes an HTML block through as it is up to the first blank line, so
    # with no line break at all nothing in it is read as Markdown again (newlines inside <pre> survive as &#10;).
    return '<div class="answer">' + rendered.replace("\n", "&#10;") + "</div>"


def user_message(question: str) -> ChatMessage:
    return {"role": "user", "content": plain(question)}


def reasoning_message(reasoning: str, *, done: bool, seconds: float | None = None) -> ChatMessage:
    """The model's reasoning as a Chatbot "thought": an accordion, closed once the answer is complete."""
    metadata: dict = {"title": REASONING_TITLE, "status": "done" if done else "pending"}
    if seconds is not None:
        metadata["duration"] = round(seconds, 1)
    content = answer_html(reasoning) if reasoning.strip() else "…"
    return {"role": "assistant", "content": content, "metadata": metadata}


def looking_message() -> ChatMessage:
    """Shown from the moment a question is sent until Core's first event."""
    return {"role": "assistant", "content": "_Looking through the papers…_"}


def waiting_message(position: int) -> ChatMessage:
    where = "next in line" if position <= 1 else f"number {position} in the queue"
    return {"role": "assistant", "content": f"_Waiting for the model ({where})…_"}


def partial_message(answer: str) -> ChatMessage:
    return {"role": "assistant", "content": answer_html(answer, suffix=" …") if answer else "_Writing…_"}


def sources_markdown(answer: Answer) -> str:
    """'**Sources**' and one bullet per cited passage (`[n] Title, p. 3–4`); '' when there are none."""
    lines = source_lines(answer)
    if not lines:
        return ""
    return "**Sources**\n" + "\n".join(f"- {plain(line)}" for line in lines)


def final_message(answer: Answer) -> ChatMessage:
    text = answer_html(answer.answer.strip()) if answer.answer.strip() else "_(no answer)_"
    sources = sources_markdown(answer)
    return {"role": "assistant", "content": text + ("\n\n" + sources if sources else "")}


def failed_message(message: str) -> ChatMessage:
    """Core's own sentence for a failure, as it is."""
    return {"role": "assistant", "content": "**Sorry:** " + plain(message)}


def answer_messages(
    *, reasoning: str, body: ChatMessage, done: bool, seconds: float | None = None
) -> list[ChatMessage]:
    """The assistant's turn: the folded reasoning (when there is any) followed by the answer body."""
    messages = [reasoning_message(reasoning, done=done, seconds=seconds)] if reasoning.strip() else []
    return [*messages, body]


def report_line(filename: str, report: IngestReport) -> str:
    """One Markdown line per uploaded file: what was indexed, or Core's reason for refusing it."""
    name = plain(report.title or filename)
    if report.status == "indexed":
        size = f"{plural(report.pages, 'page')}, {plural(report.chunks, 'passage')}"
        line = f"**Indexed** {name}: {size} ({report.seconds:.1f} s)"
    elif report.status == "duplicate":
        line = f"**Already here** {name}: this paper is in the index already."
    else:
        line = f"**Not indexed** {plain(filename)}: {plain(report.message or 'it could not be read.')}"
    for warning in report.warnings:
        line += f"\n  - {plain(warning)}"
    return line


def progress_line(filename: str, step: str) -> str:
    return f"**Reading** {plain(filename)}: {plain(step)}"


def paper_label(paper: PaperInfo, me: str | None = None) -> str:
    """The paper list's entry for one paper; `me` is the viewer's user id (their uploads say "by you")."""
    by = ""
    if paper.uploader:
        by = " · by you" if paper.uploader == me else f" · by {plain(paper.uploader)}"
    added = plain(_when(paper.added))
    return f"**{plain(paper.title)}**  \n<small>{plural(paper.pages, 'page')} · added {added}{by}</small>"


def _when(timestamp: str) -> str:
    """'2025-03-01 14:07' from an ISO timestamp; anything else as it is.

    >>> _when("2026-11-25T21:31:52.623+00:00"), _when("yesterday")
    ('2026-11-25 21:31', 'yesterday')
    """
    try:
        return datetime.fromisoformat(timestamp).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return timestamp


def papers_heading(papers: Sequence[PaperInfo]) -> str:
    if not papers:
        return "### Papers\nNo papers in this index yet. Upload a PDF to start."
    return f"### Papers ({len(papers)})"


def status_line(info: StatusInfo) -> str:
    """One line: the index, its size, the model (and where it runs), the encoder and the queue."""
    parts = [
        f"index **{plain(info.index_name)}**",
        f"{plural(info.papers, 'paper')}, {plural(info.chunks, 'passage')}",
        f"model: {plain(info.model)} on {plain(info.runs_on)}",
        f"encoder: {plain(info.encoder)}",
        f"queue: {info.queue_depth}",
    ]
    parts += [f"{plain(key)}: {plain(value)}" for key, value in info.extra.items()]
    return " · ".join(parts)
