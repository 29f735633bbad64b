"""Block Kit rendering: Slack's limits hold for any length, nothing the user should read is lost, markup converts."""

from __future__ import annotations

import random

import pytest

from bot.messages import PaperInfo, StatusInfo
from bot.slack_app import blocks as sb
from rag_engine.types import Answer, IngestReport, Source

WORDS = ["attention", "transformer", "encoder", "decoder", "residual", "layer", "norm", "softmax", "query", "key"]


def _words(n: int, seed: int) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(rng.choice(WORDS))
        if i % 40 == 39:
            out.append("\n\n")
    return " ".join(out)


def _within_limits(message: sb.SlackMessage) -> None:
    assert 0 < len(message.blocks) <= sb.MESSAGE_BLOCKS
    assert sum(sb.block_chars(b) for b in message.blocks) <= sb.MESSAGE_CHARS
    assert message.text and len(message.text) <= sb.MESSAGE_CHARS
    for block in message.blocks:
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= sb.SECTION_CHARS
        if block["type"] == "context":
            assert 0 < len(block["elements"]) <= sb.CONTEXT_ELEMENTS
            assert all(len(e["text"]) <= sb.SECTION_CHARS for e in block["elements"])


def _answer_sections(messages: list[sb.SlackMessage]) -> list[str]:
    """The answer's sections: every section before the first context block (the reasoning or the footer)."""
    out = []
    for message in messages:
        for block in message.blocks:
            if block["type"] != "section":
                return out
            out.append(block["text"]["text"])
    return out


@pytest.mark.parametrize(
    ("answer_words", "reasoning_words", "n_sources"),
    [(5, 0, 0), (400, 50, 2), (480, 400, 5), (2_500, 1_500, 12), (9_000, 4_000, 60)],
)
def test_answers_of_any_length_fit_slack_and_keep_every_word(answer_words: int, reasoning_words: int, n_sources: int):
    text = _words(answer_words, seed=answer_words)
    reasoning = _words(reasoning_words, seed=reasoning_words + 1)
    sources = tuple(Source(n, n, n, f"Paper {n} & friends", n, n + (n % 2)) for n in range(1, n_sources + 1))
    messages = sb.answer_messages(Answer(reasoning, text, False, sources), elapsed_s=2.34)

    for message in messages:
        _within_limits(message)
    assert _answer_sections(messages)
    assert " ".join(_answer_sections(messages)).split() == text.split()  # nothing lost, nothing reordered
    everything = "\n".join(sb.block_chars(b) and str(b) for m in messages for b in m.blocks)
    if reasoning:
        assert "Reasoning" in everything
        shown = " ".join(
            e["text"].split("\n", 1)[1]
            for m in messages
            for b in m.blocks
            if b["type"] == "context"
            for e in b["elements"]
            if "Reasoning" in e["text"]
        )
        assert shown.split() == reasoning.split()
    for source in sources:
        assert f"[{source.n}] Paper {source.n} &amp; friends, " in everything
    expected_parts = 1 if answer_words < 1_000 else 2
    assert len(messages) >= expected_parts
    assert "Answered in 2.3 s" in str(messages[-1].blocks[-1])
    assert messages[0].text.split()[:5] == text.split()[:5]  # notifications show the answer, not a placeholder


def test_sources_show_title_and_pages_in_citation_order():
    answer = Answer("r", "a [2] b [1]", False, (Source(1, 7, 70, "BERT", 3, 4), Source(2, 9, 90, "GPT", 5, 5)))
    (message,) = sb.answer_messages(answer)
    sources = next(
        b["text"]["text"] for b in message.blocks if b["type"] == "section" and "Sources" in b["text"]["text"]
    )
    assert sources.splitlines() == ["*Sources*", "• [1] BERT, p. 3–4", "• [2] GPT, p. 5"]


def test_a_single_word_longer_than_a_section_is_cut_not_dropped():
    blob = "x" * 7_000
    messages = sb.answer_messages(Answer("", blob, False))
    for message in messages:
        _within_limits(message)
    assert "".join(_answer_sections(messages)) == blob


def test_streaming_view_stays_within_one_message():
    long_reasoning = _words(3_000, seed=3)
    message = sb.partial_message(long_reasoning, "")
    _within_limits(message)
    shown = message.blocks[0]["elements"][0]["text"]
    assert shown.rstrip().endswith(sb.to_mrkdwn(long_reasoning.rstrip()[-50:]).strip())  # the newest reasoning

    long_answer = _words(3_000, seed=4)
    message = sb.partial_message(long_reasoning, long_answer)
    _within_limits(message)
    section = next(b for b in message.blocks if b["type"] == "section")["text"]["text"]
    assert section.endswith(" …") and long_answer.startswith(section[:-2].rstrip())
    assert "Reasoning" not in str(message.blocks)  # once the answer starts, it takes the space


def test_plain_text_reads_slack_markup():
    text = "<@U0BOT|paperbot>  compare <https://arxiv.org/abs/1706.03762|this> &amp; <#C9|ml-papers> with <@U7> &lt;3"
    assert sb.plain_text(text, "U0BOT") == "compare https://arxiv.org/abs/1706.03762 & #ml-papers with @U7 <3"
    assert sb.plain_text(text, "UOTHER").startswith("@paperbot compare")


def test_mentions_matches_whole_ids_only():
    assert sb.mentions("hey <@U0BOT> ?", "U0BOT")
    assert sb.mentions("hey <@U0BOT|paperbot>", "U0BOT")
    assert not sb.mentions("hey <@U0BOTX>", "U0BOT")
    assert not sb.mentions("hey @U0BOT", "U0BOT")


def test_markdown_becomes_mrkdwn_and_code_is_untouched():
    md = "# Title\n**bold** and *it* and __b2__; a<b & c\n```\n**not bold** <tag>\n```\nsee [x](https://e.org/?a=1&b=2)"
    out = sb.to_mrkdwn(md)
    assert out.splitlines()[0] == "*Title*"
    assert "*bold* and _it_ and *b2*; a&lt;b &amp; c" in out
    assert "```\n**not bold** &lt;tag&gt;\n```" in out
    assert "<https://e.org/?a=1&b=2|x>" in out


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            IngestReport(status="indexed", doc_id=3, title="Attention Is All You Need", pages=15),
            ":white_check_mark: Indexed *Attention Is All You Need* (15 pages)",
        ),
        (IngestReport(status="indexed", doc_id=3, title="One", pages=1), ":white_check_mark: Indexed *One* (1 page)"),
        (IngestReport(status="duplicate", doc_id=3, title="A <b>"), ":information_source: *A &lt;b&gt;* is already"),
        (
            IngestReport(status="failed", reason="encrypted", message="This PDF is password-protected."),
            ":x: Could not index *up.pdf*: This PDF is password-protected.",
        ),
    ],
)
def test_ingest_outcomes(report: IngestReport, expected: str):
    message = sb.ingest_report_message(report, "up.pdf")
    _within_limits(message)
    assert message.blocks[0]["text"]["text"].startswith(expected)


def test_ingest_warnings_are_shown():
    report = IngestReport(status="indexed", title="T", pages=2, warnings=("page 2 has no text",))
    message = sb.ingest_report_message(report, "t.pdf")
    assert message.blocks[-1]["type"] == "context" and "page 2 has no text" in str(message.blocks[-1])


def test_a_long_paper_list_is_shortened_with_a_note():
    papers = [PaperInfo(i, f"A rather long paper title number {i}", 10, "2025-01-01", "U123") for i in range(1, 2001)]
    message = sb.papers_message(papers)
    _within_limits(message)
    assert "2,000 papers in all" in str(message.blocks[-1])
    assert "`1` *A rather long paper title number 1* — 10 pages, added 2025-01-01 by <@U123>" in str(message.blocks)

    few = sb.papers_message(papers[:2])
    assert len(few.blocks) == 2 and "*2 papers in this channel*" in str(few.blocks[0])
    assert "No papers" in sb.papers_message([]).text


def test_status_and_queue_and_notices():
    status = StatusInfo("slack/T/C", 3, 120, "qwen2.gguf", "CPU", "colbert", 2, {"Jobs": "0"})
    text = str(sb.status_message(status).blocks)
    for part in ("*Papers:* 3", "*Passages:* 120", "*Runs on:* CPU", "*Questions waiting:* 2", "*Jobs:* 0"):
        assert part in text
    assert "next in line" in sb.queued_message(1).text and "number 4" in sb.queued_message(4).text
    huge = sb.notice_message("word " * 20_000)
    _within_limits(huge)


HOSTILE_TITLE = "<!channel> A & B <@U999> <https://evil.example|click>"


def test_fallback_text_of_every_message_is_escaped_so_a_title_or_answer_notifies_nobody():
    sources = (Source(1, 1, 1, HOSTILE_TITLE, 2, 2),)
    answer = Answer(HOSTILE_TITLE, f"{HOSTILE_TITLE} [1]", False, sources)
    paper = PaperInfo(1, HOSTILE_TITLE, 2, "2025-01-01", "U123")
    messages = [
        *sb.answer_messages(answer, elapsed_s=1.0),
        sb.partial_message("", HOSTILE_TITLE),
        sb.notice_message(HOSTILE_TITLE),
        sb.markdown_message(HOSTILE_TITLE),
        sb.ingest_started_message(HOSTILE_TITLE),
        sb.ingest_progress_message(HOSTILE_TITLE, HOSTILE_TITLE),
        sb.ingest_report_message(IngestReport(status="indexed", title=HOSTILE_TITLE, pages=2), "a.pdf"),
        sb.papers_message([paper]),
        sb.removed_message("U123", HOSTILE_TITLE, paper),
        sb.cleared_message("U123", HOSTILE_TITLE, 2),
    ]
    for message in messages:
        text = message.payload()["text"]
        assert "<" not in text and ">" not in text, text  # no mention, special mention or link can form
        assert "&lt;!channel&gt; A &amp; B" in text  # and the title reads as written
        assert sb.plain_text(text) == text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert len(sb.SlackMessage("&" * sb.MESSAGE_CHARS).payload()["text"]) <= sb.MESSAGE_CHARS


def test_remove_and_clear_notices_escape_the_title_once_and_mention_the_person():
    paper = PaperInfo(7, "A & B <1>", 2, "2025-01-01", "U123")
    removed = str(sb.removed_message("U123", "ann", paper).blocks)
    assert "<@U123> removed *A &amp; B &lt;1&gt;* (id 7)" in removed
    cleared = str(sb.cleared_message("U123", "ann", 2).blocks)
    assert "<@U123> cleared this channel's papers (2 removed)" in cleared
    assert sb.removed_message("U123", "ann", paper).payload()["text"].startswith("ann removed A &amp; B &lt;1&gt;")


def test_answers_in_markdown_blocks_keep_the_markdown_and_fit_slack():
    text = _words(2_500, seed=7) + "\n\n**bold** and a <!channel>"
    sources = (Source(1, 1, 1, "A & B", 2, 2),)
    messages = sb.answer_messages(Answer("why", text, False, sources), elapsed_s=1.0, markdown=True)
    for message in messages:
        _within_limits(message)
    markdown = [b["text"] for m in messages for b in m.blocks if b["type"] == "markdown"]
    assert markdown and " ".join(markdown).split() == sb.escape(text).split()  # all of it, as Markdown, escaped
    assert "**bold**" in markdown[-1] and "&lt;!channel&gt;" in markdown[-1]
    assert all(len(t) <= sb.MARKDOWN_CHARS for t in markdown)
    sections = [b["text"]["text"] for m in messages for b in m.blocks if b["type"] == "section"]
    assert "*Sources*\n• [1] A &amp; B, p. 2" in sections
