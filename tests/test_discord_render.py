"""How paperbot's answers look on Discord: the 2,000-character limit, spoilered reasoning, sources, edit pacing."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from bot.discord_app import ThrottledEditor, render
from bot.discord_app.app import question_text
from bot.messages import PaperInfo, Partial
from rag_engine.types import Answer, IngestReport, Source

LIMIT = render.MESSAGE_LIMIT


def _sources(n: int) -> tuple[Source, ...]:
    return tuple(
        Source(n=i, doc_id=i, chunk_id=10 * i, title=f"Paper_{i}: a *study* of things", page_start=i, page_end=i + 1)
        for i in range(1, n + 1)
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+\d+", text)


def _long_answer() -> Answer:
    paragraphs = [" ".join(f"word{p * 1000 + i}" for i in range(120)) for p in range(6)]
    code = "```python\n" + "\n".join(f"value{i} = compute{i}(x)" for i in range(150)) + "\n```"
    answer = "\n\n".join(paragraphs[:3] + [code] + paragraphs[3:])
    reasoning = " ".join(f"step{i}" for i in range(900)) + " so a || b holds"
    return Answer(reasoning=reasoning, answer=answer, abstained=False, sources=_sources(3))


def _spoilers_balanced(piece: str) -> bool:
    return piece.replace("\\|", "").count("||") % 2 == 0


def test_short_answer_is_one_message_with_sources_and_hidden_reasoning() -> None:
    answer = Answer(reasoning="Section 3 defines it.", answer="It is 42 [1].", abstained=False, sources=_sources(2))
    pieces = render.answer_pieces(answer)
    assert len(pieces) == 1
    text = pieces[0]
    assert text.startswith("It is 42 [1].")
    assert render.SOURCES_HEADER in text
    # Titles and pages, with the title's markdown escaped so it shows as written.
    assert "[1] Paper\\_1: a \\*study\\* of things, p. 1–2" in text
    assert "[2] Paper\\_2: a \\*study\\* of things, p. 2–3" in text
    assert "||Section 3 defines it.||" in text
    assert text.index("It is 42") < text.index(render.SOURCES_HEADER) < text.index("||Section 3")


#: A masked link that is still live: `[text](url)` with neither bracket escaped.
_LIVE_LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")


def test_a_masked_link_in_a_title_stays_text_in_every_message_that_shows_the_title() -> None:
    title = "Results [click](https://evil.example/a) and [here](https://evil.example/b)"
    sources = (Source(n=1, doc_id=1, chunk_id=1, title=title, page_start=2, page_end=2),)
    answer = Answer(reasoning="", answer="Yes [1].", abstained=False, sources=sources)
    paper = PaperInfo(doc_id=1, title=title, pages=2, added="2026-01-01")
    shown = [
        *render.answer_pieces(answer),
        *render.papers_list([paper]),
        render.removed(paper),
        render.ingest_report(IngestReport(status="indexed", title=title, pages=2), "a.pdf"),
    ]
    for text in shown:
        assert "evil.example" in text
        assert not _LIVE_LINK.search(text), text


def test_long_answer_is_split_within_the_limit_without_breaking_words_spoilers_or_code() -> None:
    answer = _long_answer()
    pieces = render.answer_pieces(answer)
    assert len(pieces) >= 4
    for piece in pieces:
        assert 0 < len(piece) <= LIMIT
        assert piece.count("```") % 2 == 0, "a code block left open in one message"
        assert _spoilers_balanced(piece), "a spoiler left open in one message"
    joined = "\n".join(pieces)
    # Every word of the answer and of the reasoning arrives, whole and in order.
    assert [w for w in _words(joined) if w.startswith(("word", "value", "compute"))] == [
        w for w in _words(answer.answer)
    ]
    assert [w for w in _words(joined) if w.startswith("step")] == _words(answer.reasoning)
    # Reasoning only ever appears inside spoilers; the `||` in it is escaped rather than closing one early.
    for piece in pieces:
        outside = re.sub(r"\|\|.*?(?<!\\)\|\|", "", piece.replace("\\|", "\0"), flags=re.S)
        assert "step" not in outside
    assert "a \\|\\| b holds" in joined
    assert sum(render.SOURCES_HEADER in p for p in pieces) == 1


def test_pieces_are_packed_not_one_message_per_block() -> None:
    answer = Answer(reasoning="r" * 10, answer="a " * 300, abstained=False, sources=_sources(1))
    assert len(render.answer_pieces(answer)) == 1
    answer = Answer(reasoning="because " * 240, answer="a " * 300, abstained=False, sources=_sources(1))
    pieces = render.answer_pieces(answer)
    assert len(pieces) == 2 and render.SOURCES_HEADER in pieces[0]


def test_abstained_answer_without_sources_or_reasoning() -> None:
    pieces = render.answer_pieces(Answer(reasoning="", answer="The papers don't say.", abstained=True))
    assert pieces == ["The papers don't say."]


def test_answer_body_recovers_the_answer_from_a_rendered_message() -> None:
    text = "Because of the *attention* layer [1]."
    answer = Answer(reasoning="why", answer=text, abstained=False, sources=_sources(1))
    assert render.answer_body(render.answer_pieces(answer)[0]) == answer.answer
    assert render.answer_body(render.ingest_report(IngestReport(status="indexed", title="T", pages=2), "t.pdf")) is None


def test_streaming_view_stays_within_one_message() -> None:
    assert render.streaming(Partial(reasoning="", answer="")) == render.THINKING
    thinking = render.streaming(Partial(reasoning="first we look at table 2 " * 40, answer=""))
    assert thinking.startswith(render.THINKING) and len(thinking) < 400 and "table 2" in thinking
    growing = render.streaming(Partial(reasoning="r", answer="The method works."))
    assert growing.startswith("The method works.") and "r" not in growing.removeprefix("The method works.").strip("▌ ")
    huge = render.streaming(Partial(reasoning="", answer="word " * 1000))
    assert len(huge) <= LIMIT and "follows" in huge


def test_queue_position_is_shown() -> None:
    assert "next" in render.queued(1)
    assert "3 questions ahead" in render.queued(4)
    assert "1 question ahead" in render.queued(2)


def test_ingest_outcomes_read_as_the_issue_asks() -> None:
    ok = render.ingest_report(IngestReport(status="indexed", title="Attention Is All You Need", pages=15), "a.pdf")
    assert ok == "✅ indexed *Attention Is All You Need* (15 pages)"
    dup = render.ingest_report(IngestReport(status="duplicate", title="X"), "x.pdf")
    assert "already" in dup and "*X*" in dup
    failed = IngestReport(status="failed", reason="encrypted", message="It is password-protected.")
    bad = render.ingest_report(failed, "s.pdf")
    assert "*s.pdf*" in bad and "It is password-protected." in bad
    big = render.too_large("big.pdf", 80 * 2**20, 50)
    assert "80.0 MB" in big and "50 MB" in big


def test_paper_list_splits_and_escapes() -> None:
    papers = [PaperInfo(i, f"Title_{i} " + "x" * 60, 10, "2025-01-02T03:04:05", uploader="u1") for i in range(1, 80)]
    pieces = render.papers_list(papers)
    assert len(pieces) > 1 and all(len(p) <= LIMIT for p in pieces)
    joined = "\n".join(pieces)
    assert joined.count("Title\\_") == 79 and "79 papers" in pieces[0] and "added 2025-01-02" in joined
    assert "No papers" in render.papers_list([])[0]


@pytest.mark.parametrize(
    ("emoji", "vote"), [("👍", 1), ("👍🏿", 1), ("👎", -1), ("👎🏻", -1), ("❤️", None), ("🎉", None)]
)
def test_votes(emoji: str, vote: int | None) -> None:
    assert render.vote(emoji) == vote


def test_question_text_drops_the_mention_and_paper_links() -> None:
    text = "<@42> what does https://arxiv.org/abs/1706.03762v5 say about <@!42> heads?"
    assert question_text(text, 42, ["http://127.0.0.1:1/pdf/1706.03762v5"]) == "what does say about heads?"
    assert question_text("<@7> hi", 42, []) == "<@7> hi"


async def test_throttled_editor_edits_at_most_once_per_interval_and_always_shows_the_final_text() -> None:
    shown: list[tuple[float, str]] = []

    async def edit(text: str) -> None:
        shown.append((time.monotonic(), text))

    interval = 0.1
    editor = ThrottledEditor(edit, interval)
    editor.mark_sent("thinking…")
    start = time.monotonic()
    for i in range(60):  # ~0.6 s of tokens arriving every 10 ms
        await editor.update(f"token {i}")
        await asyncio.sleep(0.01)
    await editor.final("done")
    elapsed = time.monotonic() - start
    texts = [t for _, t in shown]
    assert texts[-1] == "done"
    assert 3 <= len(shown) <= elapsed / interval + 2
    gaps = [b - a for (a, _), (b, _) in zip(shown, shown[1:-1])]  # the final edit may follow sooner
    assert all(g >= interval * 0.9 for g in gaps), gaps
    # Texts only move forward: a stale pending text is never shown after a newer one.
    numbers = [int(t.split()[1]) for t in texts[:-1]]
    assert numbers == sorted(numbers)


async def test_throttled_editor_flushes_a_pending_text_when_the_stream_pauses() -> None:
    shown: list[str] = []

    async def edit(text: str) -> None:
        shown.append(text)

    editor = ThrottledEditor(edit, 0.05)
    await editor.update("queued: 3 ahead")
    await asyncio.sleep(0.01)
    await editor.update("queued: 2 ahead")  # too soon: kept, then shown once the interval is over
    await asyncio.sleep(0.15)
    assert shown == ["queued: 3 ahead", "queued: 2 ahead"]
    await editor.close()


async def test_throttled_editor_final_waits_for_an_edit_in_flight_and_wins() -> None:
    shown: list[str] = []
    slow = asyncio.Event()

    async def edit(text: str) -> None:
        if text == "partial":
            await slow.wait()  # Discord is slow to answer this one
        shown.append(text)

    editor = ThrottledEditor(edit, 0.05)
    await editor.update("partial")
    await asyncio.sleep(0.01)
    await editor.update("newer partial")
    final = asyncio.create_task(editor.final("final"))
    await asyncio.sleep(0.1)
    assert not final.done(), "the final edit waits for the edit in flight"
    slow.set()
    await final
    assert shown == ["partial", "final"], "the pending partial is dropped; the final text is the last one shown"
