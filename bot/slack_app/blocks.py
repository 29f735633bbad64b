"""Slack's dialect, both ways: Block Kit messages for what Core returns, and plain text from Slack's message markup.

Pure functions, no I/O. Limits (docs.slack.dev, Block Kit reference): a section's text ≤ 3,000 characters, a context
block ≤ 10 elements, ≤ 50 blocks per message; messages whose blocks hold much more than ~12,000 characters in all are
refused with `msg_blocks_too_long`, so one message carries at most `MESSAGE_CHARS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.formatting import plural, source_lines, split_message
from bot.messages import PaperInfo, StatusInfo
from rag_engine.types import Answer, IngestReport

SECTION_CHARS = 3000
CONTEXT_ELEMENTS = 10
MESSAGE_BLOCKS = 50
MESSAGE_CHARS = 10_000  # summed text of one message's blocks; Slack's undocumented ceiling is near 13,000
STREAM_CHARS = 2900  # what a message shows while an answer is still being written
MARKDOWN_CHARS = 12_000  # a markdown block's text; also what one streaming call may carry

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One chat.postMessage / chat.update payload. `text`, the notification and history fallback, is plain text as a
    person should read it; `payload` escapes it, because Slack reads it as markup (`<!channel>` in a paper's title
    would notify everyone). `blocks` are already rendered mrkdwn."""

    text: str
    blocks: tuple[Block, ...] = ()

    def payload(self) -> dict[str, Any]:
        return {"text": fallback_text(self.text), "blocks": list(self.blocks)}


def fallback_text(text: str) -> str:
    """Plain text as a message's escaped `text`, at most MESSAGE_CHARS long, never cut inside an entity.

    >>> fallback_text("<!channel> A & B")
    '&lt;!channel&gt; A &amp; B'
    """
    escaped = escape(text)
    if len(escaped) <= MESSAGE_CHARS:
        return escaped
    return re.sub(r"&[a-z]*$", "", escaped[:MESSAGE_CHARS])


# --- Slack markup → plain text ---------------------------------------------------------------------------------------
_ANGLE = re.compile(r"<([^<>]+)>")


def plain_text(text: str, bot_user_id: str | None = None) -> str:
    """Slack message markup as a person reads it; mentions of the bot itself are dropped.

    >>> plain_text("<@U0BOT> is <https://arxiv.org/abs/1706.03762|this> good &amp; why? cc <@U2> <#C1|ml>", "U0BOT")
    'is https://arxiv.org/abs/1706.03762 good & why? cc @U2 #ml'
    """

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "" if target[1:] == bot_user_id else "@" + (label or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        return target  # a link: keep the URL, which is what matters to link detection

    text = _ANGLE.sub(replace, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def mentions(text: str, user_id: str) -> bool:
    """Whether Slack markup `text` mentions `user_id`.

    >>> mentions("hi <@U1|bob>", "U1"), mentions("hi <@U12>", "U1")
    (True, False)
    """
    return re.search(rf"<@{re.escape(user_id)}(?:\|[^>]*)?>", text) is not None


# --- Markdown (what the model writes) → mrkdwn -----------------------------------------------------------------------
_CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.DOTALL)
_ITALIC = re.compile(r"(?<![*\w])\*(?![\s*])([^*\n]+?)(?<![\s*])\*(?![*\w])")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")


def escape(text: str) -> str:
    """The three characters Slack wants escaped in message text.

    >>> escape("a < b & c > d")
    'a &lt; b &amp; c &gt; d'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """The inverse of `escape`: a message's `text` as we wrote it."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def to_mrkdwn(markdown: str) -> str:
    """Common Markdown as Slack mrkdwn; code spans and blocks are left as they are (escaped only).

    >>> to_mrkdwn("## Result\\n**Attention** is *all* you need [1]; [paper](https://arxiv.org/abs/1706.03762), `a<b`")
    '*Result*\\n*Attention* is _all_ you need [1]; <https://arxiv.org/abs/1706.03762|paper>, `a&lt;b`'
    """
    parts = _CODE.split(markdown)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code span or block
            out.append(escape(part))
            continue
        part = escape(part)
        part = _ITALIC.sub(r"_\1_", part)
        part = _BOLD.sub(r"*\2*", part)
        part = _HEADING.sub(r"*\1*", part)
        part = _LINK.sub(lambda m: f"<{m.group(2).replace('&amp;', '&')}|{m.group(1)}>", part)
        out.append(part)
    return "".join(out)


# --- blocks ----------------------------------------------------------------------------------------------------------
def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_CHARS]}}


def context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": t[:SECTION_CHARS]} for t in texts[:CONTEXT_ELEMENTS]],
    }


def divider() -> Block:
    return {"type": "divider"}


def markdown_block(markdown: str) -> Block:
    """Standard Markdown that Slack renders itself (the `markdown` block; not every workspace accepts it)."""
    return {"type": "markdown", "text": escape(markdown)[:MARKDOWN_CHARS]}


def block_chars(block: Block) -> int:
    """Characters of text in one block (what counts towards Slack's per-message ceiling)."""
    text = block.get("text", {})
    total = len(text) if isinstance(text, str) else len(text.get("text", ""))
    total += sum(len(e.get("text", "")) for e in block.get("elements", ()))
    return total


def _sections(mrkdwn: str) -> list[Block]:
    return [section(piece) for piece in split_message(mrkdwn, SECTION_CHARS)] if mrkdwn.strip() else []


def _pack(blocks: list[tuple[Block, str]], first_text: str) -> list[SlackMessage]:
    """Group (block, fallback text) pairs into messages within Slack's block and size limits."""
    messages: list[SlackMessage] = []
    current: list[Block] = []
    texts: list[str] = []
    chars = 0
    for block, fallback in blocks:
        size = block_chars(block)
        if current and (len(current) >= MESSAGE_BLOCKS or chars + size > MESSAGE_CHARS):
            messages.append(
                SlackMessage(_fallback(texts, first_text if not messages else "(continued)"), tuple(current))
            )
            current, texts, chars = [], [], 0
        current.append(block)
        if fallback:
            texts.append(fallback)
        chars += size
    if current:
        messages.append(SlackMessage(_fallback(texts, first_text if not messages else "(continued)"), tuple(current)))
    return messages


def _fallback(texts: list[str], default: str) -> str:
    text = "\n".join(t for t in texts if t).strip()
    return text[:MESSAGE_CHARS] if text else default


def answer_messages(answer: Answer, elapsed_s: float = 0.0, *, markdown: bool = False) -> list[SlackMessage]:
    """The final answer: answer sections, the reasoning in context blocks, then the sources (title, pages).

    Long answers become several messages, each within Slack's limits; the first replaces the placeholder, the others
    follow it in the thread. Each message's `text` holds the answer text it shows (notifications, thread history).
    With `markdown`, the answer goes in `markdown` blocks that Slack renders, instead of being converted to mrkdwn.
    """
    blocks: list[tuple[Block, str]] = []
    answer_text = answer.answer.strip() or "(no answer)"
    for piece in split_message(answer_text, SECTION_CHARS - 200):
        blocks.append((markdown_block(piece) if markdown else section(to_mrkdwn(piece)), piece))
    blocks += [(block, "") for block in answer_tail(answer, elapsed_s)]
    return _pack(blocks, first_text=answer_text[:200])


def answer_tail(answer: Answer, elapsed_s: float = 0.0) -> list[Block]:
    """What follows the answer's text: the reasoning (context blocks), the sources, the footer."""
    blocks: list[Block] = []
    reasoning = answer.reasoning.strip()
    if reasoning:
        pieces = split_message(reasoning, SECTION_CHARS - 400)
        for n, piece in enumerate(pieces):
            label = ":thought_balloon: *Reasoning*" + (f" ({n + 1}/{len(pieces)})" if len(pieces) > 1 else "")
            blocks.append(context(f"{label}\n{to_mrkdwn(piece)}"))
    lines = source_lines(answer, title=escape)  # each title escaped on its own
    if lines:
        rendered = "\n".join(f"• {line}" for line in lines)
        for n, piece in enumerate(split_message(rendered, SECTION_CHARS - 100)):
            blocks.append(section(("*Sources*\n" if n == 0 else "") + piece))
    footer = "React :+1: or :-1: to rate this answer."
    if elapsed_s > 0:
        footer = f"Answered in {elapsed_s:.1f} s · " + footer
    blocks.append(context(footer))
    return blocks


def partial_message(reasoning: str, answer: str) -> SlackMessage:
    """An answer still being written: the end of the reasoning while it is all there is, then the answer so far."""
    blocks: list[Block] = []
    answer = answer.strip()
    reasoning = reasoning.strip()
    if reasoning and not answer:
        tail = reasoning if len(reasoning) <= STREAM_CHARS - 100 else "…" + reasoning[-(STREAM_CHARS - 100) :]
        blocks.append(context(":thought_balloon: *Reasoning…*\n" + to_mrkdwn(tail)))
    if answer:
        shown = answer if len(answer) <= STREAM_CHARS else answer[:STREAM_CHARS].rsplit(" ", 1)[0] + " …"
        blocks.append(section(to_mrkdwn(shown)))
    blocks.append(context(":writing_hand: writing…"))
    return SlackMessage(text=(answer or "Thinking…")[:STREAM_CHARS], blocks=tuple(blocks))


def thinking_message() -> SlackMessage:
    return SlackMessage("Thinking…", (context(":thinking_face: Thinking…"),))


def queued_message(position: int) -> SlackMessage:
    where = "next in line" if position <= 1 else f"number {position} in the queue"
    text = f"Waiting for the model: {where}."
    return SlackMessage(text, (context(f":hourglass_flowing_sand: {text}"),))


def notice_message(text: str, emoji: str = ":warning:") -> SlackMessage:
    """A short message: a failure, a usage hint, a confirmation (shortened, with a note, if it is not short)."""
    mrkdwn = to_mrkdwn(text)
    return SlackMessage(text[:MESSAGE_CHARS], tuple(_fit(_sections(f"{emoji} {mrkdwn}" if emoji else mrkdwn))))


def removed_message(user_id: str, user_name: str, paper: PaperInfo) -> SlackMessage:
    """The channel's notice that someone removed a paper (the title escaped once, the person mentioned)."""
    text = f"{user_name} removed {paper.title} (id {paper.doc_id}) from this channel's papers."
    mrkdwn = (
        f":wastebasket: {mention(user_id)} removed *{escape(paper.title)}* (id {paper.doc_id}) "
        "from this channel's papers."
    )
    return SlackMessage(text, tuple(_fit(_sections(mrkdwn))))


def cleared_message(user_id: str, user_name: str, count: int) -> SlackMessage:
    text = f"{user_name} cleared this channel's papers ({count} removed)."
    mrkdwn = f":wastebasket: {mention(user_id)} cleared this channel's papers ({count} removed)."
    return SlackMessage(text, (section(mrkdwn),))


_USER_ID = re.compile(r"[UW][A-Z0-9]+")


def mention(user_id: str) -> str:
    """A mention of a user in mrkdwn (only ids Slack issues, so nothing else can be smuggled into the markup).

    >>> mention("U123"), mention("<!channel>")
    ('<@U123>', '&lt;!channel&gt;')
    """
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else escape(user_id)


def markdown_message(text: str) -> SlackMessage:
    """Longer Markdown text (help, the introduction) as sections."""
    return SlackMessage(text[:MESSAGE_CHARS], tuple(_fit(_sections(to_mrkdwn(text)))))


def _fit(blocks: list[Block], note: str = "…(shortened to fit one Slack message)") -> list[Block]:
    if len(blocks) <= MESSAGE_BLOCKS and sum(map(block_chars, blocks)) <= MESSAGE_CHARS:
        return blocks
    return _trim(blocks, note)


# --- ingestion -------------------------------------------------------------------------------------------------------
def ingest_started_message(name: str) -> SlackMessage:
    text = f"Reading {name}…"
    return SlackMessage(text, (context(f":page_facing_up: Reading *{escape(name)}*…"),))


def ingest_progress_message(name: str, line: str) -> SlackMessage:
    text = f"{name}: {line}"
    return SlackMessage(text, (context(f":page_facing_up: *{escape(name)}*: {escape(line)}"),))


def ingest_report_message(report: IngestReport, name: str) -> SlackMessage:
    """'Indexed *Title* (N pages)', 'already indexed', or the specific failure the pipeline reported."""
    title = report.title or name
    if report.status == "indexed":
        pages = plural(report.pages, "page")
        text = f"Indexed {title} ({pages})"
        blocks: list[Block] = [section(f":white_check_mark: Indexed *{escape(title)}* ({pages})")]
    elif report.status == "duplicate":
        text = f"{title} is already indexed in this channel"
        blocks = [section(f":information_source: *{escape(title)}* is already indexed in this channel.")]
    else:
        reason = report.message or "it could not be indexed"
        text = f"Could not index {name}: {reason}"
        blocks = [section(f":x: Could not index *{escape(name)}*: {to_mrkdwn(reason)}")]
    if report.warnings:
        blocks.append(context(*(f":warning: {escape(w)}" for w in report.warnings)))
    return SlackMessage(text, tuple(blocks))


# --- /papers ---------------------------------------------------------------------------------------------------------
def papers_message(papers: list[PaperInfo]) -> SlackMessage:
    """`/papers list`: one line per paper with its id, title, pages and who added it."""
    if not papers:
        return notice_message("No papers in this channel yet. Share a PDF or an arXiv link to add one.", ":books:")
    lines = []
    for paper in papers:
        by = f" by {mention(paper.uploader)}" if paper.uploader and _USER_ID.fullmatch(paper.uploader) else ""
        lines.append(f"`{paper.doc_id}` *{escape(paper.title)}* — {plural(paper.pages, 'page')}, added {escape(paper.added)}{by}")
    head = f":books: *{plural(len(papers), 'paper')} in this channel*"
    blocks = [section(head)] + [section(piece) for piece in split_message("\n".join(lines), SECTION_CHARS)]
    blocks = _fit(blocks, note=f"…list shortened; {plural(len(papers), 'paper')} in all.")
    text = f"{plural(len(papers), 'paper')}: " + "; ".join(
        f"{p.doc_id} {p.title}" for p in papers
    )
    return SlackMessage(text[:MESSAGE_CHARS], tuple(blocks))


def _trim(blocks: list[Block], note: str) -> list[Block]:
    kept: list[Block] = []
    chars = len(note)
    for block in blocks:
        if len(kept) >= MESSAGE_BLOCKS - 1 or chars + block_chars(block) > MESSAGE_CHARS:
            break
        kept.append(block)
        chars += block_chars(block)
    return kept + [context(note)]


def status_message(status: StatusInfo) -> SlackMessage:
    rows = [
        ("Papers", str(status.papers)),
        ("Passages", str(status.chunks)),
        ("Model", status.model),
        ("Runs on", status.runs_on),
        ("Encoder", status.encoder),
        ("Questions waiting", str(status.queue_depth)),
        *status.extra.items(),
    ]
    body = "\n".join(f"*{escape(k)}:* {escape(v)}" for k, v in rows)
    text = "; ".join(f"{k}: {v}" for k, v in rows)
    return SlackMessage(text[:MESSAGE_CHARS], tuple(_sections(f":bar_chart: *Index status*\n{body}")))
