"""What paperbot's Discord messages look like: Discord markdown, the 2,000-character limit, spoilered reasoning.

Pure functions from our types to message text; `bot.discord_app` decides when to send them.
"""

from __future__ import annotations

import re

from bot.formatting import plural, source_lines, split_message
from bot.messages import APOLOGY, PaperInfo, Partial, StatusInfo
from rag_engine.types import Answer, IngestReport

#: Discord's limit on a message's content.
MESSAGE_LIMIT = 2000

THINKING = "thinking…"
SOURCES_HEADER = "**Sources**"
REASONING_MARK = "💭 "
_SPOILER = "||"
_CURSOR = " ▌"
_STREAM_REASONING_TAIL = 280

UP_VOTES = ("👍", "⬆️")
DOWN_VOTES = ("👎", "⬇️")


_MARKUP = re.compile(r"([\\*_~`|\[\]<>#]|^\s*-)", re.MULTILINE)


def plain(text: str) -> str:
    """`text` shown as written: every character Discord reads as markup is escaped, brackets included (a masked link
    `[text](url)` cannot form), wherever it is. discord.py's escape_markdown escapes only the first `[` of a line
    that looks like a link, so it must never be applied to a composed line, and is not used here.

    >>> print(plain("[a](https://x.example) and [b](https://y.example) *c* <@1>"))
    \\[a\\](https://x.example) and \\[b\\](https://y.example) \\*c\\* \\<@1\\>
    """
    return _MARKUP.sub(lambda m: m.group()[:-1] + "\\" + m.group()[-1], text)


# --- answers ----------------------------------------------------------------------------------------------------------
def queued(position: int) -> str:
    if position <= 1:
        return f"{THINKING}\n-# ⏳ You're next in line for the model."
    return f"{THINKING}\n-# ⏳ In the queue: {plural(position - 1, 'question')} ahead of yours."


def streaming(partial: Partial, limit: int = MESSAGE_LIMIT) -> str:
    """The answer so far while it is being written. Kept within one message: the final render splits properly."""
    answer = partial.answer.strip()
    if answer:
        text = answer + _CURSOR
        if len(text) > limit:
            note = "\n-# … (the rest follows when the answer is complete)"
            text = text[: limit - len(note) - 1].rstrip() + "…" + note
        return text
    reasoning = " ".join(partial.reasoning.split())
    if not reasoning:
        return THINKING
    if len(reasoning) > _STREAM_REASONING_TAIL:
        reasoning = "…" + reasoning[-_STREAM_REASONING_TAIL:]
    return f"{THINKING}\n-# {REASONING_MARK}{plain(reasoning)}"


def answer_pieces(answer: Answer, limit: int = MESSAGE_LIMIT) -> list[str]:
    """The finished answer as messages of at most `limit` characters: the answer, its sources (title and pages),
    then the reasoning hidden behind a spoiler. Blocks are split on their own, so a spoiler or a code block never
    spans two messages, then packed into as few messages as fit."""
    blocks = split_message(answer.answer.strip() or "…", limit)
    lines = source_lines(answer, title=plain)  # each title escaped on its own
    if lines:
        blocks += split_message(SOURCES_HEADER + "\n" + "\n".join(lines), limit)
    reasoning = answer.reasoning.strip()
    if reasoning:
        # `|` would close the spoiler early; code fences do not render inside one.
        reasoning = reasoning.replace("|", "\\|").replace("```", "'''")
        wrap = len(REASONING_MARK) + 2 * len(_SPOILER)
        blocks += [f"{REASONING_MARK}{_SPOILER}{piece}{_SPOILER}" for piece in split_message(reasoning, limit - wrap)]
    return _pack(blocks, limit)


def _pack(blocks: list[str], limit: int) -> list[str]:
    messages: list[str] = []
    current = ""
    for block in blocks:
        candidate = f"{current}\n\n{block}" if current else block
        if len(candidate) <= limit:
            current = candidate
        else:
            messages.append(current)
            current = block
    if current:
        messages.append(current)
    return messages


def answer_body(content: str) -> str | None:
    """The answer text of a message rendered by `answer_pieces`, or None when `content` is no answer.

    >>> answer_body("It is 42 [1].\\n\\n**Sources**\\n[1] Paper, p. 2")
    'It is 42 [1].'
    >>> answer_body("indexed *Paper* (3 pages)") is None
    True
    """
    for marker in (f"\n\n{SOURCES_HEADER}\n", f"\n\n{REASONING_MARK}{_SPOILER}"):
        if marker in content:
            return content.split(marker, 1)[0].strip()
    return None


def failed(message: str) -> str:
    return f"⚠️ {message}"


def apology() -> str:
    return failed(APOLOGY)


# --- papers -----------------------------------------------------------------------------------------------------------
def _title(title: str | None, fallback: str) -> str:
    return f"*{plain(title or fallback)}*"


def ingest_started(filename: str) -> str:
    return f"📥 Reading {_title(filename, filename)}…"


def ingest_progress(filename: str, line: str) -> str:
    return f"📥 {_title(filename, filename)}: {line}"


def ingest_report(report: IngestReport, source: str) -> str:
    """The last word on one upload or link: indexed, already there, or why not."""
    title = _title(report.title, source)
    if report.status == "indexed":
        text = f"✅ indexed {title} ({plural(report.pages, 'page')})"
        if report.warnings:
            text += "\n" + "\n".join(f"-# ⚠️ {plain(w)}" for w in report.warnings)
        return text
    if report.status == "duplicate":
        return f"ℹ️ {title} is already in this channel's papers."
    return f"❌ Could not index {_title(source, source)}: {report.message or 'the file could not be read.'}"


def too_large(filename: str, size_bytes: int, limit_mb: float) -> str:
    return (
        f"❌ {_title(filename, filename)} is {size_bytes / 2**20:.1f} MB; the limit here is {limit_mb:g} MB, "
        "so I did not download it."
    )


def download_failed(filename: str) -> str:
    return f"❌ I could not download {_title(filename, filename)} from Discord. Please try posting it again."


def papers_list(papers: list[PaperInfo], limit: int = MESSAGE_LIMIT) -> list[str]:
    if not papers:
        return ["No papers in this channel yet. Drop a PDF or an arXiv link here to add one."]
    header = f"**{plural(len(papers), 'paper')} in this channel**"
    lines = []
    for paper in papers:
        who = f" by {plain(paper.uploader)}" if paper.uploader else ""
        added = f", added {paper.added[:10]}" if paper.added else ""
        lines.append(f"`{paper.doc_id}` {_title(paper.title, paper.filename)}: {plural(paper.pages, 'page')}{added}{who}")
    return split_message(header + "\n" + "\n".join(lines), limit)


def status(info: StatusInfo) -> str:
    lines = [
        f"**Papers:** {info.papers:,} ({plural(info.chunks, 'passage')})",
        f"**Model:** {plain(info.model)} on {info.runs_on}",
        f"**Encoder:** {plain(info.encoder)}",
        f"**Queue:** {plural(info.queue_depth, 'question')} waiting",
    ]
    lines += [f"**{plain(k)}:** {plain(v)}" for k, v in info.extra.items()]
    return "\n".join(lines)


def removed(paper: PaperInfo) -> str:
    return f"🗑️ Removed {_title(paper.title, paper.filename)} from this channel's papers."


def removed_notice(user_mention: str, paper: PaperInfo) -> str:
    return f"🗑️ {user_mention} removed {_title(paper.title, paper.filename)} from this channel's papers."


def cleared(count: int) -> str:
    return f"🧹 Cleared this channel's papers ({count} removed)."


def cleared_notice(user_mention: str, count: int) -> str:
    return f"🧹 {user_mention} cleared this channel's papers ({count} removed)."


def not_allowed() -> str:
    return "I'm not enabled in this channel."


# --- feedback ---------------------------------------------------------------------------------------------------------
_SKIN_TONES = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f]")


def vote(emoji: str) -> int | None:
    """+1 for 👍 (any skin tone), -1 for 👎, None for any other reaction.

    >>> vote("👍🏽"), vote("👎"), vote("🎉")
    (1, -1, None)
    """
    bare = _SKIN_TONES.sub("", emoji)
    if bare in {_SKIN_TONES.sub("", e) for e in UP_VOTES}:
        return 1
    if bare in {_SKIN_TONES.sub("", e) for e in DOWN_VOTES}:
        return -1
    return None
