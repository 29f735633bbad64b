"""paperbot on Discord, end to end: the unmodified discord.py client talks over loopback to a fake Discord
(gateway websocket + REST + CDN, tests/fakes/discord_server.py) and a fake arXiv, with the real Core on the tiny models.

The client is pointed at the fakes only through its two URL settings (`Route.BASE`, `DEFAULT_GATEWAY`). Tests act
as users (post, reply, react, run slash commands) and assert on what users would see: the messages the bot posts and
how they change, interaction responses and who can see them. One bot and one fake serve the whole module; each test
uses its own channels (or only reads the two preloaded ones), so the tests pass in any order and on their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import discord
import pymupdf
import pytest
import pytest_asyncio
import yarl
from pydantic import SecretStr

from bot.core import Core
from bot.discord_app import EDIT_INTERVAL_S, PaperBot, render, serve
from bot.messages import Channel, Final, PaperInfo, Turn, User
from bot.runtime import open_core
from bot.settings import Settings
from tests.conftest import EDGE_PDFS, REAL_PDFS, make_settings
from tests.fakes.arxiv_server import ArxivStandIn
from tests.fakes.discord_server import (
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeUser,
    Upload,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

T = TypeVar("T")

ATTENTION = REAL_PDFS / "1706.03762.pdf"  # preloaded into #papers
DISTILLATION = REAL_PDFS / "distillation.pdf"  # preloaded into #other
REPTILE = REAL_PDFS / "1803.02999.pdf"  # uploaded through Discord
SEARCH_ENGINES_ID = "2204.10628"  # served by the arXiv stand-in
ANSWER_TIMEOUT = 60.0


def _pages(path: Path) -> int:
    with pymupdf.open(path) as doc:
        return doc.page_count


@dataclass
class World:
    fake: FakeDiscord
    arxiv: ArxivStandIn
    core: Core
    bot: PaperBot
    task: asyncio.Task[None]
    settings: Settings
    lab: FakeGuild
    newlab: FakeGuild
    papers: FakeChannel  # Attention Is All You Need
    other: FakeChannel  # Distilling the Knowledge in a Neural Network
    uploads: FakeChannel  # the upload test's
    links: FakeChannel  # the arXiv link test's
    broken: FakeChannel  # the broken and oversized attachment tests'
    askone: FakeChannel  # /ask about one paper
    clearing: FakeChannel  # /papers clear
    scratch: FakeChannel  # /papers remove
    offlimits: FakeChannel  # not on the allow-list
    thread: FakeChannel  # a thread of #papers
    alice: FakeUser
    bob: FakeUser
    mod: FakeUser
    identified_at_start: int

    def channel(self, fake_channel: FakeChannel) -> Channel:
        parent = fake_channel.parent_id or fake_channel.id
        return Channel("discord", str(fake_channel.guild_id), str(parent))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    # Discord allows about 5 message posts/edits per channel per 5 s; the same rule 10x faster keeps the test short.
    fake = FakeDiscord(message_rate=(5, 0.5))
    lab = fake.add_guild("lab")
    papers = fake.add_channel(lab, "papers")
    other = fake.add_channel(lab, "other")
    uploads = fake.add_channel(lab, "uploads")
    links = fake.add_channel(lab, "links")
    broken = fake.add_channel(lab, "broken")
    askone = fake.add_channel(lab, "askone")
    clearing = fake.add_channel(lab, "clearing")
    scratch = fake.add_channel(lab, "scratch")
    offlimits = fake.add_channel(lab, "offlimits")
    thread = await fake.add_thread(papers, "a thread about attention")
    newlab = fake.add_guild("newlab", joined=False)
    fake.add_channel(newlab, "announcements", bot_can_send=False)
    fake.add_channel(newlab, "general")
    alice, bob = fake.add_member(lab, "alice"), fake.add_member(lab, "bob")
    mod = fake.add_member(lab, "mod", moderator=True)

    arxiv = ArxivStandIn({SEARCH_ENGINES_ID: REAL_PDFS / f"{SEARCH_ENGINES_ID}.pdf"})
    allowed = [str(c.id) for g in (lab, newlab) for c in g.channels.values() if c is not offlimits and not c.is_thread]
    async with fake, arxiv:
        settings = make_settings(
            tmp_path_factory.mktemp("discord") / "data",
            tiny_models,
            queue_size=8,  # 20 mentions at once: some answered, the rest told to wait
            user_rate_per_minute=1000,  # rate limits are Core's (tested there); here they would only add noise
            allowed_channels=allowed,
            download_hosts=["127.0.0.1"],
            arxiv_base_url=arxiv.base_url,
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(discord.http.Route, "BASE", fake.api_base)
            patch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
            async with open_core(settings, heartbeat=False) as core:
                loader = User("fixture", "fixture")
                for fake_channel, pdf in ((papers, ATTENTION), (other, DISTILLATION)):
                    channel = Channel("discord", str(lab.id), str(fake_channel.id))
                    report = await core.ingest_upload(channel, loader, pdf.name, pdf.read_bytes())
                    assert report.status == "indexed", report
                bot = PaperBot(core, settings, guild_ready_timeout=0.1)
                task = asyncio.create_task(bot.start(fake.token), name="discord-bot")
                await fake.wait_ready()
                await asyncio.wait_for(bot.wait_until_ready(), 10)
                world = World(
                    fake, arxiv, core, bot, task, settings, lab, newlab, papers, other, uploads, links, broken,
                    askone, clearing, scratch, offlimits, thread, alice, bob, mod, fake.identified,
                )
                yield world
                if not world.bot.is_closed():
                    await world.bot.close()
                await asyncio.wait_for(world.task, 10)
    assert fake.unhandled == [], "the bot called Discord routes the fake does not serve"


# --- helpers ----------------------------------------------------------------------------------------------------------
async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    """Poll an async check (e.g. through Core) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


def finished(message: FakeMessage) -> bool:
    """The bot has written its last word into a placeholder (an answer or a failure, not thinking/queued)."""
    content = message.content
    return bool(content) and not content.startswith(render.THINKING) and "▌" not in content


async def answer_to(world: World, question: FakeMessage, timeout: float = ANSWER_TIMEOUT) -> list[FakeMessage]:
    """The bot's reply pieces to `question`, once the first one is finished."""
    fake = world.fake
    return await fake.wait_for(
        lambda: (r := fake.replies_to(question)) and finished(r[0]) and r, timeout, f"an answer to {question.content!r}"
    )


async def ingest_reply(world: World, post: FakeMessage, count: int = 1) -> list[FakeMessage]:
    """The bot's status replies to a message with papers, once each shows an outcome."""
    fake = world.fake

    def done() -> list[FakeMessage] | None:
        replies = [m for m in fake.messages.values() if m.reference_id == post.id and m.author.id == fake.bot.id]
        if len(replies) == count and all(m.content.startswith(("✅", "❌", "ℹ️", "⚠️")) for m in replies):
            return replies
        return None

    return await fake.wait_for(done, ANSWER_TIMEOUT, "ingestion outcomes")


async def responded(world: World, interaction: FakeInteraction, followups: int = 0) -> FakeInteraction:
    """Wait until a command's deferred response has its content (and `followups` more messages)."""
    await world.fake.wait_for(
        lambda: interaction.original and interaction.original.content and len(interaction.visible) >= 1 + followups,
        ANSWER_TIMEOUT, f"/{interaction.command}",
    )
    assert interaction.errors == [], interaction.errors
    assert interaction.callbacks[0]["type"] == 5, "commands defer first (the 3-second window)"
    return interaction


def assert_paced(message: FakeMessage, interval: float = EDIT_INTERVAL_S) -> None:
    """Edits of one message are at least `interval` apart, except the final one, which always goes out."""
    gaps = [b - a for a, b in zip(message.times, message.times[1:-1])]
    assert all(gap >= interval * 0.95 for gap in gaps), f"edits too fast: {gaps}"


async def ensure_paper(world: World, fake_channel: FakeChannel, pdf: Path) -> PaperInfo:
    """The paper in that channel, added through Core if an earlier test has not added it through Discord."""
    channel = world.channel(fake_channel)
    for paper in await world.core.list_papers(channel):
        if paper.filename == pdf.name:
            return paper
    report = await world.core.ingest_upload(channel, User("fixture", "fixture"), pdf.name, pdf.read_bytes())
    assert report.status == "indexed", report
    return next(p for p in await world.core.list_papers(channel) if p.doc_id == report.doc_id)


def spy_on_ask(monkeypatch: pytest.MonkeyPatch, core: Core) -> list[dict[str, Any]]:
    """Record what the adapter asks Core (and the Final answers), still running the real Core."""
    calls: list[dict[str, Any]] = []
    real_ask = core.ask

    async def ask(channel: Channel, user: User, question: str, history: Any = (), paper: Any = None) -> Any:
        call = {"channel": channel, "user": user, "question": question, "history": list(history), "paper": paper}
        calls.append(call)
        async for event in real_ask(channel, user, question, history=history, paper=paper):
            if isinstance(event, Final):
                call["final"] = event.answer
            yield event

    monkeypatch.setattr(core, "ask", ask)
    return calls


# --- startup ----------------------------------------------------------------------------------------------------------
async def test_commands_are_synced_at_startup_and_no_introduction_in_known_guilds(world: World) -> None:
    commands = world.fake.commands
    assert set(commands) == {"ask", "papers"}
    subcommands = {o["name"] for o in commands["papers"]["options"]}
    assert subcommands == {"list", "remove", "clear", "status", "help"}
    ask_options = {o["name"]: o for o in commands["ask"]["options"]}
    assert ask_options["question"]["required"] and not ask_options["paper"].get("required", False)
    intro = world.core.introduction()
    known = [m for m in world.fake.bot_messages() if m.guild_id == world.lab.id]
    assert not any(m.content == intro for m in known), "restarts must not re-introduce the bot"
    assert world.identified_at_start == 1


# --- adding papers ----------------------------------------------------------------------------------------------------
async def test_pdf_upload_is_indexed_with_progress(world: World) -> None:
    post = await world.fake.post(
        world.uploads, world.alice, "the reptile paper", attachments=[Upload(REPTILE.name, REPTILE.read_bytes())]
    )
    (status,) = await ingest_reply(world, post)
    assert status.contents[0] == render.ingest_started(REPTILE.name)
    (paper,) = [p for p in await world.core.list_papers(world.channel(world.uploads)) if p.filename == REPTILE.name]
    assert paper.uploader == str(world.alice.id)
    assert status.content == f"✅ indexed *{render.plain(paper.title)}* ({_pages(REPTILE)} pages)"
    assert "Meta-Learning" in paper.title


async def test_arxiv_link_is_indexed_from_the_arxiv_stand_in(world: World) -> None:
    post = await world.fake.post(
        world.links, world.bob, f"see https://arxiv.org/abs/{SEARCH_ENGINES_ID}v2 for the details"
    )
    (status,) = await ingest_reply(world, post)
    assert status.content.startswith("✅ indexed *"), status.content
    assert status.content.endswith(f"({_pages(REAL_PDFS / f'{SEARCH_ENGINES_ID}.pdf')} pages)")
    assert f"/pdf/{SEARCH_ENGINES_ID}v2" in world.arxiv.requests
    titles = [p.title for p in await world.core.list_papers(world.channel(world.links))]
    assert any("Autoregressive" in t for t in titles), titles
    # A link alone is not a question: no answer placeholder was posted.
    assert not any(m.content.startswith(render.THINKING) for m in world.fake.replies_to(post))


async def test_broken_pdfs_get_their_specific_error_and_the_bot_keeps_serving(world: World) -> None:
    bad = ["encrypted_user_password.pdf", "html_named_pdf.pdf", "truncated_header_only.pdf", "empty.pdf"]
    # What Core says about each file (through a channel nobody uses), to compare with what Discord shows.
    scratch = Channel("discord", "0", "expected-errors")
    expected = {}
    for name in bad:
        report = await world.core.ingest_upload(scratch, User("x", "x"), name, (EDGE_PDFS / name).read_bytes())
        assert report.status == "failed" and report.message
        expected[name] = report.message
    assert len(set(expected.values())) == len(bad), "each failure should say what is wrong"

    post = await world.fake.post(
        world.broken, world.alice, "", attachments=[Upload(n, (EDGE_PDFS / n).read_bytes()) for n in bad]
    )
    replies = await ingest_reply(world, post, count=len(bad))
    for name, reply in zip(bad, sorted(replies, key=lambda m: m.id)):
        assert reply.content.startswith("❌") and f"*{name.replace('_', chr(92) + '_')}*" in reply.content
        assert expected[name] in reply.content

    text = f"{world.fake.mention()} what is scaled dot-product attention?"
    question = await world.fake.post(world.papers, world.bob, text)
    (answer, *_) = await answer_to(world, question)
    assert render.SOURCES_HEADER in answer.content
    assert not world.task.done()


async def test_oversized_and_undownloadable_attachments(world: World) -> None:
    limit_bytes = int(world.settings.max_file_mb * 2**20)
    huge = Upload("huge.pdf", b"%PDF-1.7 tiny bytes", declared_size=limit_bytes + 1)
    broken = Upload("flaky.pdf", REPTILE.read_bytes(), status=500)
    post = await world.fake.post(world.broken, world.bob, "two more", attachments=[huge, broken])
    replies = sorted(await ingest_reply(world, post, count=2), key=lambda m: m.id)
    assert "huge.pdf" in replies[0].content and f"{world.settings.max_file_mb:g} MB" in replies[0].content
    assert replies[1].content == render.download_failed("flaky.pdf")
    downloaded = [path for path in world.fake.cdn_downloads if path.endswith(("/huge.pdf", "/flaky.pdf"))]
    assert downloaded and all(path.endswith("/flaky.pdf") for path in downloaded), "size is checked before downloading"


# --- asking -----------------------------------------------------------------------------------------------------------
async def test_mention_gets_placeholder_then_answer_with_sources(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_ask(monkeypatch, world.core)
    question = await world.fake.post(
        world.papers, world.alice, f"{world.fake.mention()} how does multi-head attention work?"
    )
    (answer, *more) = await answer_to(world, question)
    assert answer.contents[0] == render.THINKING
    assert answer.edits >= 1
    assert_paced(answer)
    final = calls[0]["final"]
    assert calls[0]["question"] == "how does multi-head attention work?"
    assert calls[0]["channel"] == world.channel(world.papers)
    shown = "\n".join(m.content for m in [answer, *more])
    assert render.SOURCES_HEADER in shown and final.sources
    for source in final.sources:
        assert source.title == "Attention Is All You Need"
        assert f"{source.title}, p" in shown
    assert answer.allowed_mentions is not None and answer.allowed_mentions["parse"] == [], "answers never ping anyone"


async def test_reply_to_an_answer_continues_the_conversation(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_ask(monkeypatch, world.core)
    first = await world.fake.post(world.papers, world.bob, f"{world.fake.mention()} what is the encoder made of?")
    (answer, *_) = await answer_to(world, first)
    follow = await world.fake.post(world.papers, world.bob, "and the decoder?", reply_to=answer)  # no @mention
    await answer_to(world, follow)
    assert len(calls) == 2
    assert calls[1]["question"] == "and the decoder?"
    assert calls[1]["history"] == [Turn(question="what is the encoder made of?", answer=calls[0]["final"].answer)]


async def test_a_reply_after_a_restart_still_knows_the_question(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_ask(monkeypatch, world.core)
    first = await world.fake.post(world.papers, world.bob, f"{world.fake.mention()} how are positions encoded?")
    (answer, *_) = await answer_to(world, first)
    # A restart comes after the answer is stored (it is stored just after its last edit is seen).
    assert await eventually(lambda: world.core.answer_for(world.channel(world.papers), str(answer.id)))
    world.bot.conversations.forget()  # what a restart forgets; the database remembers the posted answer
    follow = await world.fake.post(world.papers, world.bob, "and why sinusoids?", reply_to=answer)
    await answer_to(world, follow)
    assert calls[1]["history"] == [Turn(question="how are positions encoded?", answer=calls[0]["final"].answer)]


async def test_mentioning_the_bots_role_asks_too(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_ask(monkeypatch, world.core)
    question = await world.fake.post(
        world.papers, world.bob, f"{world.fake.mention_role(world.lab)} what is layer normalization for?"
    )
    (answer, *_) = await answer_to(world, question)
    assert render.SOURCES_HEADER in answer.content
    assert calls[0]["question"] == "what is layer normalization for?"
    # A message that mentions someone else is not for the bot.
    other = await world.fake.post(world.papers, world.bob, f"{world.fake.mention(world.alice)} what do you think?")
    probe = await world.fake.post(world.papers, world.bob, f"{world.fake.mention()} what is dropout?")
    await answer_to(world, probe)
    assert world.fake.replies_to(other) == []


async def test_thread_uses_its_parent_channels_papers(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_ask(monkeypatch, world.core)
    question = await world.fake.post(world.thread, world.alice, f"{world.fake.mention()} what is positional encoding?")
    (answer, *_) = await answer_to(world, question)
    assert answer.channel_id == world.thread.id
    assert calls[0]["channel"] == world.channel(world.papers)
    assert {s.title for s in calls[0]["final"].sources} == {"Attention Is All You Need"}
    listing = await responded(world, await world.fake.slash(world.thread, world.alice, "papers", "list"))
    assert "Attention Is All You Need" in listing.original.content


async def test_two_channels_never_see_each_others_papers(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_on_ask(monkeypatch, world.core)
    text = f"{world.fake.mention()} what does the softmax temperature do?"
    in_papers = await world.fake.post(world.papers, world.bob, text)
    in_other = await world.fake.post(world.other, world.bob, text)
    await answer_to(world, in_papers)
    await answer_to(world, in_other)
    by_channel = {c["channel"].channel: {s.title for s in c["final"].sources} for c in calls}
    assert by_channel[str(world.papers.id)] == {"Attention Is All You Need"}
    assert by_channel[str(world.other.id)] == {"Distilling the Knowledge in a Neural Network"}
    lists = {}
    for channel in (world.papers, world.other):
        interaction = await responded(world, await world.fake.slash(channel, world.bob, "papers", "list"))
        lists[channel.id] = interaction.original.content
    assert "Attention" in lists[world.papers.id] and "Distilling" not in lists[world.papers.id]
    assert "Distilling" in lists[world.other.id] and "Attention" not in lists[world.other.id]


async def test_twenty_mentions_at_once_are_all_answered_or_told_to_wait(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tiny model answers a batch of questions faster than the 1-second edit throttle, so nobody would ever see a
    # queue position; decoding steps as slow as a real 3B model's on a small GPU (~25 tok/s) make the wait visible.
    backend = world.core.answerer.backend
    step = backend._step

    def real_model_pace() -> None:
        time.sleep(0.04)
        step()

    monkeypatch.setattr(backend, "_step", real_model_pace)
    fake = world.fake
    askers = [fake.add_member(world.lab, f"student{i}") for i in range(20)]
    posts = await asyncio.gather(*[
        fake.post(world.papers, user, f"{fake.mention()} question {i}: why use attention instead of recurrence?")
        for i, user in enumerate(askers)
    ])

    def all_finished() -> list[FakeMessage] | None:
        firsts = [fake.replies_to(p)[:1] for p in posts]
        if all(f and finished(f[0]) for f in firsts):
            return [f[0] for f in firsts]
        return None

    replies = await fake.wait_for(all_finished, 180, "20 answers")
    answered = [r for r in replies if render.SOURCES_HEADER in r.content]
    told_to_wait = [r for r in replies if r.content.startswith("⚠️")]
    assert len(answered) + len(told_to_wait) == 20, [r.content[:80] for r in replies]
    assert len(answered) >= world.settings.parallel
    assert all(r.contents[0] == render.THINKING for r in replies), "every mention gets its placeholder at once"
    assert any("queue" in c or "next in line" in c for r in replies for c in r.contents), "queue positions are shown"
    for reply in replies:
        assert_paced(reply)
    # 20 placeholders and their edits in one channel hit Discord's per-channel limit: discord.py waits as the rate
    # limit headers say (a 429 now and then is retried), and nothing is lost.
    assert len(fake.bot_messages(world.papers)) >= 20


async def test_huge_question_gets_a_clear_reply(world: World) -> None:
    post = await world.fake.post(world.papers, world.alice, f"{world.fake.mention()} " + "why attention? " * 250)
    (reply,) = await answer_to(world, post)
    assert reply.content.startswith("⚠️") and "characters" in reply.content
    assert not world.task.done()


# --- slash commands ---------------------------------------------------------------------------------------------------
async def test_slash_ask_streams_into_the_deferred_response(world: World) -> None:
    question = "What is the transformer built from?"
    interaction = await world.fake.slash(world.papers, world.alice, "ask", question=question)
    await world.fake.wait_for(lambda: interaction.original and finished(interaction.original), ANSWER_TIMEOUT, "/ask")
    assert interaction.callbacks[0] == {"type": 5}, "deferred publicly, within the window"
    assert interaction.errors == []
    assert not interaction.original.ephemeral
    assert "Attention Is All You Need, p" in "\n".join(m.content for m in interaction.visible)


async def test_slash_ask_about_one_paper_with_autocomplete(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    await ensure_paper(world, world.askone, EDGE_PDFS / "ok_minimal.pdf")
    reptile = await ensure_paper(world, world.askone, REPTILE)
    choose = await world.fake.autocomplete(world.askone, world.alice, "ask", None, "paper", reptile.title[:6].lower())
    await world.fake.wait_for(lambda: choose.callbacks, 10, "autocomplete choices")
    assert choose.callbacks[0]["type"] == 8
    choices = choose.callbacks[0]["data"]["choices"]
    assert [c["value"] for c in choices] == [str(reptile.doc_id)]

    calls = spy_on_ask(monkeypatch, world.core)
    interaction = await world.fake.slash(
        world.askone, world.alice, "ask", question="What does the algorithm update?", paper=str(reptile.doc_id)
    )
    await world.fake.wait_for(lambda: interaction.original and finished(interaction.original), ANSWER_TIMEOUT, "/ask")
    assert calls[0]["paper"] == str(reptile.doc_id)
    assert {s.doc_id for s in calls[0]["final"].sources} == {reptile.doc_id}


async def test_slash_papers_list_status_help(world: World) -> None:
    listing = await responded(world, await world.fake.slash(world.papers, world.bob, "papers", "list"))
    assert listing.original.ephemeral
    (paper,) = await world.core.list_papers(world.channel(world.papers))
    assert f"`{paper.doc_id}`" in listing.original.content and "Attention Is All You Need" in listing.original.content

    status = await responded(world, await world.fake.slash(world.papers, world.bob, "papers", "status"))
    info = await world.core.status(world.channel(world.papers))
    assert f"**Papers:** 1 ({info.chunks} passages)" in status.original.content
    assert info.model in status.original.content

    helping = await responded(world, await world.fake.slash(world.papers, world.bob, "papers", "help"))
    assert helping.original.content == world.core.help_text()


async def test_slash_papers_remove_by_uploader_not_by_others(world: World) -> None:
    fake, ok = world.fake, EDGE_PDFS / "ok_minimal.pdf"
    post = await fake.post(world.scratch, world.alice, "", attachments=[Upload(ok.name, ok.read_bytes())])
    (status,) = await ingest_reply(world, post)
    assert status.content.startswith("✅")
    (paper,) = await world.core.list_papers(world.channel(world.scratch))

    refused = await responded(world, await fake.slash(world.scratch, world.bob, "papers", "remove", paper=paper.doc_id))
    assert refused.original.ephemeral and refused.original.content.startswith("⚠️")
    assert refused.followups == [], "a refusal is not announced to the channel"
    assert [p.doc_id for p in await world.core.list_papers(world.channel(world.scratch))] == [paper.doc_id]

    removed = await responded(
        world, await fake.slash(world.scratch, world.alice, "papers", "remove", paper=paper.doc_id), followups=1
    )
    assert removed.original.ephemeral and removed.original.content.startswith("🗑️")
    (notice,) = [m for m in removed.visible if m is not removed.original]
    assert not notice.ephemeral and f"<@{world.alice.id}>" in notice.content
    assert await world.core.list_papers(world.channel(world.scratch)) == []


async def test_slash_papers_clear_is_for_moderators_only(world: World) -> None:
    fake = world.fake
    before = await world.core.list_papers(world.channel(world.papers))
    refused = await responded(world, await fake.slash(world.papers, world.alice, "papers", "clear"))
    assert refused.original.ephemeral, "the refusal is shown only to who asked"
    assert refused.original.content.startswith("⚠️") and "moderator" in refused.original.content.lower()
    assert await world.core.list_papers(world.channel(world.papers)) == before

    await ensure_paper(world, world.clearing, EDGE_PDFS / "ok_minimal.pdf")
    count = len(await world.core.list_papers(world.channel(world.clearing)))
    cleared = await responded(world, await fake.slash(world.clearing, world.mod, "papers", "clear"), followups=1)
    assert cleared.original.content == render.cleared(count)
    (notice,) = [m for m in cleared.visible if m is not cleared.original]
    assert not notice.ephemeral and f"({count} removed)" in notice.content
    assert await world.core.list_papers(world.channel(world.clearing)) == []


# --- reactions, allow-list, joining -----------------------------------------------------------------------------------
async def test_reactions_on_an_answer_are_recorded(world: World) -> None:
    fake, channel = world.fake, world.channel(world.other)
    question = await fake.post(world.other, world.alice, f"{fake.mention()} what is a soft target?")
    (answer, *_) = await answer_to(world, question)
    before = len(await world.core.feedback(channel))
    await fake.react(question, world.bob, "👍")  # not an answer: no feedback
    await fake.react(answer, world.bob, "👍🏽")
    await fake.react(answer, world.alice, "👎")
    await fake.react(answer, world.bob, "🎉")  # not a vote
    await fake.react(answer, fake.bot, "👍")  # the bot's own reaction never counts
    await fake.react(answer, world.mod, "👍")  # last: once it is recorded, the reactions before it were handled
    votes = await eventually(lambda: _new_votes(world.core, channel, before, 3))
    await eventually(lambda: _no_pending("discord-vote-"))
    votes = (await world.core.feedback(channel))[before:]
    expected = {(str(world.bob.id), 1), (str(world.alice.id), -1), (str(world.mod.id), 1)}
    assert len(votes) == 3 and {(v["user"], v["vote"]) for v in votes} == expected
    assert all(v["message_ref"] == str(answer.id) and v["question"] == "what is a soft target?" for v in votes)


async def _no_pending(prefix: str) -> bool:
    return not [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix) and not t.done()]


async def _new_votes(core: Core, channel: Channel, before: int, count: int) -> list[dict[str, Any]] | None:
    votes = (await core.feedback(channel))[before:]
    return votes if len(votes) >= count else None


async def test_channels_off_the_allow_list_are_ignored(world: World) -> None:
    fake = world.fake
    ok = EDGE_PDFS / "ok_minimal.pdf"
    upload = Upload(ok.name, ok.read_bytes())
    await fake.post(world.offlimits, world.alice, f"{fake.mention()} hello?", attachments=[upload])
    listing = await responded(world, await fake.slash(world.offlimits, world.alice, "papers", "list"))
    assert listing.original.content == render.not_allowed()
    # A later question elsewhere is answered, and by then nothing was posted or downloaded for the ignored channel.
    probe = await fake.post(world.papers, world.alice, f"{fake.mention()} what is attention?")
    await answer_to(world, probe)
    assert [m for m in fake.bot_messages(world.offlimits) if m.interaction_id is None] == []
    assert not any(f"/attachments/{world.offlimits.id}/" in path for path in fake.cdn_downloads)


async def test_joining_a_guild_introduces_the_bot_where_it_may_post(world: World) -> None:
    fake = world.fake
    await fake.join_guild(world.newlab)
    intro = await fake.wait_for(
        lambda: [m for m in fake.bot_messages() if m.guild_id == world.newlab.id], 10, "an introduction"
    )
    (message,) = intro
    assert message.content == world.core.introduction()
    assert fake.channels[message.channel_id].name == "general", "not in #announcements, where it may not post"


# --- long answers, and shutting down ----------------------------------------------------------------------------------
async def test_long_answer_streams_at_a_steady_pace_and_is_split(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Core whose model writes ~1,000 tokens (random weights: no end token), behind the same bot. How many
    characters those tokens make depends on the model's vocabulary and the backend, so the answer is split at a
    quarter of Discord's limit: the splitting is the same code, and the test no longer depends on that length."""
    limit = render.MESSAGE_LIMIT // 4
    pieces_of = render.answer_pieces
    monkeypatch.setattr(render, "answer_pieces", lambda answer: pieces_of(answer, limit))
    long_settings = world.settings.model_copy(update={"data_dir": tmp_path / "long", "max_new_tokens": 1100})
    async with open_core(long_settings, heartbeat=False) as long_core:
        channel = world.channel(world.papers)
        report = await long_core.ingest_upload(channel, User("f", "f"), ATTENTION.name, ATTENTION.read_bytes())
        assert report.status == "indexed"
        monkeypatch.setattr(world.bot.answering, "core", long_core)
        calls = spy_on_ask(monkeypatch, long_core)
        question = await world.fake.post(
            world.papers, world.alice, f"{world.fake.mention()} explain the attention mechanism of the transformer"
        )
        # The streaming view of an answer longer than one message has no cursor, so wait for Core's Final itself.
        await world.fake.wait_for(lambda: calls and "final" in calls[0], 120, "the final answer")
        answer = calls[0]["final"]
        expected = render.answer_pieces(answer)
        pieces = await world.fake.wait_for(
            lambda: len(r := world.fake.replies_to(question)) == len(expected) and r, 10, "the rest of the answer"
        )

    first = pieces[0]
    assert first.contents[0] == render.THINKING
    assert first.edits >= 3, "the answer is streamed, not posted at the end"
    assert_paced(first)
    assert all(0 < len(p.content) <= limit for p in pieces[1:]) and 0 < len(first.content) <= limit
    assert all(p.reference_id == first.id for p in pieces[1:]), "extra pieces continue the first"
    assert len(answer.answer) > limit
    assert [p.content for p in pieces] == expected
    shown = "\n".join(p.content for p in pieces)
    assert "".join(answer.answer.split()) in "".join(shown.split()), "the whole answer arrives, in order"
    position = 0
    for word in answer.answer.split():  # and words are never cut (random text can hold 'words' too long for that)
        if len(word) < limit // 2:
            position = shown.index(word, position) + len(word)
    assert render.SOURCES_HEADER in shown and "Attention Is All You Need, p" in shown


async def test_serve_explains_a_refused_token(world: World) -> None:
    settings = world.settings.model_copy(update={"discord_token": SecretStr("not-the-token")})
    identified = world.fake.identified
    with pytest.raises(ValueError, match="DISCORD_TOKEN"):
        await asyncio.wait_for(serve(world.core, settings), 10)
    assert world.fake.identified == identified, "no gateway session without a valid login"


async def test_serve_runs_until_cancelled_and_shuts_down_cleanly(world: World) -> None:
    """Hands the fake Discord from the module's bot to `serve`, cancels it mid-answer, then starts a new module bot
    for the tests that may follow."""
    await world.bot.close()
    await asyncio.wait_for(world.task, 10)
    fake = world.fake
    identified = fake.identified
    settings = world.settings.model_copy(update={"discord_token": SecretStr(fake.token)})
    served = asyncio.create_task(serve(world.core, settings), name="serve-discord")
    await fake.wait_for(lambda: fake.identified == identified + 1, 20, "serve() to connect")
    question = await fake.post(world.papers, world.alice, f"{fake.mention()} what are attention heads?")
    await fake.wait_for(lambda: fake.replies_to(question), 20, "a placeholder")
    served.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(served, 10)
    owned = ("discord-message-", "discord-vote-", "discord-command-", "discord-join-", "discord-edit-flush")
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith(owned) and not t.done()]
    assert leftovers == [], "every task the bot started ends with it"
    await fake.wait_for(lambda: not fake.connected, 5, "the gateway connection to close")

    # A new module bot, as the fixture started one, for whatever test runs next.
    world.bot = PaperBot(world.core, world.settings, guild_ready_timeout=0.1)
    world.task = asyncio.create_task(world.bot.start(fake.token), name="discord-bot")
    await fake.wait_for(lambda: fake.identified == identified + 2 and fake.connected, 20, "the new bot to connect")
    await asyncio.wait_for(world.bot.wait_until_ready(), 10)
