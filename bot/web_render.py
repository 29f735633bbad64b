"""How the web chat shows Core's results: chat messages, report lines and the status line, as escaped Markdown.

Every piece of paper text or model output passes through `escape` before it reaches the page, so a title or an
answer that contains HTML is shown as text, never run. The Chatbot's own HTML sanitiser stays on as a second guard.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime

from bot.formatting import source_lines
from bot.messages import PaperInfo, StatusInfo
from rag_engine.types import Answer, IngestReport

#: A message as gr.Chatbot takes it: {"role", "content", optional "metadata"}.
ChatMessage = dict

REASONING_TITLE = "Reasoning"


def escape(text: str) -> str:
    """Text from a paper, a user or the model, made inert for Markdown that allows HTML.

    >>> escape('<img src=x onerror="alert(1)">')
    '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;'
    """
    return html.escape(text, quote=True)


def user_message(question: str) -> ChatMessage:
    return {"role": "user", "content": escape(question)}


def reasoning_message(reasoning: str, *, done: bool, seconds: float | None = None) -> ChatMessage:
    """The model's reasoning as a Chatbot "thought": an accordion, closed once the answer is complete."""
    metadata: dict = {"title": REASONING_TITLE, "status": "done" if done else "pending"}
    if seconds is not None:
        metadata["duration"] = round(seconds, 1)
    return {"role": "assistant", "content": escape(reasoning) or "…", "metadata": metadata}


def looking_message() -> ChatMessage:
    """Shown from the moment a question is sent until Core's first event."""
    return {"role": "assistant", "content": "_Looking through the papers…_"}


def waiting_message(position: int) -> ChatMessage:
    where = "next in line" if position <= 1 else f"number {position} in the queue"
    return {"role": "assistant", "content": f"_Waiting for the model ({where})…_"}


def partial_message(answer: str) -> ChatMessage:
    return {"role": "assistant", "content": escape(answer) + " …" if answer else "_Writing…_"}


def sources_markdown(answer: Answer) -> str:
    """'**Sources**' and one bullet per cited passage (`[n] Title, pp. 3–4`); '' when there are none."""
    lines = source_lines(answer)
    if not lines:
        return ""
    return "**Sources**\n" + "\n".join(f"- {escape(line)}" for line in lines)


def final_message(answer: Answer) -> ChatMessage:
    text = escape(answer.answer.strip()) or "_(no answer)_"
    sources = sources_markdown(answer)
    return {"role": "assistant", "content": text + ("\n\n" + sources if sources else "")}


def failed_message(message: str) -> ChatMessage:
    """Core's own sentence for a failure, as it is."""
    return {"role": "assistant", "content": "**Sorry:** " + escape(message)}


def answer_messages(
    *, reasoning: str, body: ChatMessage, done: bool, seconds: float | None = None
) -> list[ChatMessage]:
    """The assistant's turn: the folded reasoning (when there is any) followed by the answer body."""
    messages = [reasoning_message(reasoning, done=done, seconds=seconds)] if reasoning.strip() else []
    return [*messages, body]


def report_line(filename: str, report: IngestReport) -> str:
    """One Markdown line per uploaded file: what was indexed, or Core's reason for refusing it."""
    name = escape(report.title or filename)
    if report.status == "indexed":
        size = f"{_count(report.pages, 'page')}, {_count(report.chunks, 'passage')}"
        line = f"**Indexed** {name}: {size} ({report.seconds:.1f} s)"
    elif report.status == "duplicate":
        line = f"**Already here** {name}: this paper is in the index already."
    else:
        line = f"**Not indexed** {escape(filename)}: {escape(report.message or 'it could not be read.')}"
    for warning in report.warnings:
        line += f"\n  - {escape(warning)}"
    return line


def progress_line(filename: str, step: str) -> str:
    return f"**Reading** {escape(filename)}: {escape(step)}"


def paper_label(paper: PaperInfo, me: str | None = None) -> str:
    """The paper list's entry for one paper; `me` is the viewer's user id (their uploads say "by you")."""
    by = ""
    if paper.uploader:
        by = " · by you" if paper.uploader == me else f" · by {escape(paper.uploader)}"
    added = escape(_when(paper.added))
    return f"**{escape(paper.title)}**  \n<small>{_count(paper.pages, 'page')} · added {added}{by}</small>"


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


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def status_line(info: StatusInfo) -> str:
    """One line: the index, its size, the model (and where it runs), the encoder and the queue."""
    parts = [
        f"index **{escape(info.index_name)}**",
        f"{_count(info.papers, 'paper')}, {_count(info.chunks, 'passage')}",
        f"model: {escape(info.model)} on {escape(info.runs_on)}",
        f"encoder: {escape(info.encoder)}",
        f"queue: {info.queue_depth}",
    ]
    parts += [f"{escape(key)}: {escape(value)}" for key, value in info.extra.items()]
    return " · ".join(parts)
