"""paperbot in Slack, end to end: the unmodified slack-bolt / slack-sdk clients talk over loopback to a stand-in Slack
(tests/fakes/slack_server.py) and a stand-in arXiv, and the real Core answers with the tiny real models.

Events arrive through Socket Mode (the stand-in's websocket) and as signed HTTP requests to the bot's endpoint. Every
assertion is about what Slack was asked to show, or what Core stored.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Core
from bot.download import Downloader
from bot.messages import Channel, Failed, Final, Queued, User
from bot.runtime import open_core
from bot.slack_app import ANSWER_METADATA, STOPPED, SlackBot, SlackSetupError, serve
from bot.slack_app import blocks as sb
from rag_engine.errors import QueueFull
from bot.settings import Settings
from tests.conftest import EDGE_PDFS, REAL_PDFS, make_settings
from tests.fakes.arxiv_server import ArxivStandIn
from tests.fakes.slack_server import SlackStandIn

pytestmark = pytest.mark.asyncio(loop_scope="module")

EDIT_INTERVAL = 0.25  # the tests' stand-in for Slack's one edit a second, to keep them quick
ADMIN, AUTHOR, OTHER = "UADMIN", "UAUTHOR", "UOTHER"
MINIMAL = EDGE_PDFS / "ok_minimal.pdf"  # two pages about late interaction retrieval
QUESTION = "how does late interaction retrieval score documents?"  # shares words with MINIMAL (lexical relevance)


# --- fixtures --------------------------------------------------------------------------------------------------------
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def arxiv() -> AsyncIterator[ArxivStandIn]:
    async with ArxivStandIn({"1706.03762": REAL_PDFS / "1706.03762.pdf"}) as stand_in:
        yield stand_in


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slack() -> AsyncIterator[SlackStandIn]:
    users = {ADMIN: {"name": "ada", "is_admin": True}, AUTHOR: {"name": "bo"}, OTHER: {"name": "cy"}}
    async with SlackStandIn(users=users) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def slack_settings(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory, arxiv: ArxivStandIn) -> Settings:
    return make_settings(
        tmp_path_factory.mktemp("slack") / "data",
        tiny_models,
        max_new_tokens=192,
        queue_size=8,  # 4 generating + at most 4 waiting per channel: a flood of 20 must be partly refused
        user_rate_per_minute=50,
        download_hosts=["127.0.0.1"],
        arxiv_base_url=arxiv.base_url,
        slack_bot_token=SlackStandIn.BOT_TOKEN,
        slack_app_token=SlackStandIn.APP_TOKEN,
        slack_signing_secret=SlackStandIn.SIGNING_SECRET,
        slack_http_port=0,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def core(slack_settings: Settings) -> AsyncIterator[Core]:
    async with open_core(slack_settings, heartbeat=False) as opened:
        yield opened


def _bot(core: Core, settings: Settings, slack: SlackStandIn, mode: str) -> SlackBot:
    return SlackBot(
        core,
        settings.model_copy(update={"slack_mode": mode}),
        client=AsyncWebClient(token=slack.BOT_TOKEN, base_url=slack.api_url),
        files_host="127.0.0.1",  # where the stand-in serves url_private (files.slack.com in real life)
        http_host="127.0.0.1",
        edit_interval=EDIT_INTERVAL,
        edits_per_minute=600,
    )


@dataclass
class Via:
    """One way for Slack to reach a running bot: Socket Mode envelopes, or signed HTTP requests."""

    slack: SlackStandIn
    bot: SlackBot
    mode: str

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.bot.http_port}/slack/events" if self.mode == "http" else None

    async def event(self, event: dict[str, Any]) -> Any:
        return await self.slack.send_event(event, self.mode, self.url)

    async def events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            await self.event(event)

    async def command(self, command: str, text: str, channel: str, user: str) -> str:
        return await self.slack.send_command(command, text, channel, user, self.mode, self.url)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def socket_bot(core: Core, slack_settings: Settings, slack: SlackStandIn) -> AsyncIterator[Via]:
    async with _bot(core, slack_settings, slack, "socket") as bot:
        yield Via(slack, bot, "socket")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http_bot(core: Core, slack_settings: Settings, slack: SlackStandIn) -> AsyncIterator[Via]:
    async with _bot(core, slack_settings, slack, "http") as bot:
        yield Via(slack, bot, "http")


@pytest.fixture(params=["socket", "http"])
def via(request: pytest.FixtureRequest, socket_bot: Via, http_bot: Via) -> Via:
    return socket_bot if request.param == "socket" else http_bot


# --- helpers ---------------------------------------------------------------------------------------------------------
def chan(channel_id: str) -> Channel:
    return Channel("slack", SlackStandIn.TEAM, channel_id)


def answers(slack: SlackStandIn, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """The bot's finished answer messages in a thread."""
    return [
        m for m in slack.thread(channel, thread_ts) if (m.get("metadata") or {}).get("event_type") == ANSWER_METADATA
    ]


def notices(slack: SlackStandIn, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """The bot's warnings in a thread (a failure shown instead of an answer)."""
    return [m for m in slack.thread(channel, thread_ts) if _first_text(m).startswith(":warning:")]


def _first_text(message: dict[str, Any]) -> str:
    block = (message.get("blocks") or [{}])[0]
    return block.get("text", {}).get("text", "") or "".join(e.get("text", "") for e in block.get("elements", []))


def all_text(message: dict[str, Any]) -> str:
    parts = []
    for block in message.get("blocks") or []:
        parts.append(block.get("text", {}).get("text", ""))
        parts.extend(e.get("text", "") for e in block.get("elements", []))
    return "\n".join(parts)


async def add_paper(core: Core, channel: str, path: Path, user: str = AUTHOR) -> None:
    """Set-up shortcut straight through Core (the Slack upload path has its own test)."""
    report = await core.ingest_upload(chan(channel), User(user, user), path.name, path.read_bytes())
    assert report.status == "indexed", report


async def ask(via: Via, channel: str, user: str, question: str, thread_ts: str | None = None) -> tuple[str, dict]:
    """Mention the bot (Slack sends `message` and `app_mention`) and wait for the answer; returns (thread, answer)."""
    events = via.slack.mention(channel, user, question, thread_ts=thread_ts)
    await via.events(events)
    thread = thread_ts or events[0]["ts"]
    before = len(answers(via.slack, channel, thread))
    found = await via.slack.wait_for(lambda: answers(via.slack, channel, thread)[before:], timeout=90)
    return thread, found[0]


# --- adding papers ---------------------------------------------------------------------------------------------------
async def test_shared_pdf_is_downloaded_with_the_bot_token_and_indexed(
    socket_bot: Via, slack: SlackStandIn, core: Core, monkeypatch: pytest.MonkeyPatch
):
    # The tiny encoder indexes this paper faster than the 1-second edit throttle; encoding as slowly as a real
    # model would makes the progress lines reach the message.
    encode = core.engine.encoders.encode_documents

    async def slow_encode(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(1.5)
        return await encode(*args, **kwargs)

    monkeypatch.setattr(core.engine.encoders, "encode_documents", slow_encode)
    pdf = REAL_PDFS / "distillation.pdf"
    file = slack.add_file(pdf.name, pdf.read_bytes())
    event = slack.user_message("CUPLOAD", AUTHOR, "the distillation paper", files=[file])

    ack = await socket_bot.event(event)

    assert set(ack) == {"envelope_id"}  # acknowledged at once, with nothing else to say
    [done] = await slack.wait_for(
        lambda: [m for m in slack.thread("CUPLOAD", event["ts"]) if m["text"].startswith("Indexed")], timeout=120
    )
    [paper] = await core.list_papers(chan("CUPLOAD"))
    assert done["text"] == f"Indexed {paper.title} ({paper.pages} pages)"
    assert f"Indexed *{paper.title}*" in all_text(done) and paper.pages > 1
    assert paper.uploader == AUTHOR
    assert (f"/files-pri/{slack.TEAM}-{file['id']}/{pdf.name}", f"Bearer {slack.BOT_TOKEN}") in slack.downloads
    assert done["edits"] and done["edits"][0]["text"] == f"Reading {pdf.name}…"  # progress, then the outcome
    assert any(edit["text"].startswith(f"{pdf.name}: ") for edit in done["edits"])  # Core's progress lines shown


async def test_arxiv_link_is_fetched_from_arxiv_and_indexed(
    http_bot: Via, slack: SlackStandIn, arxiv: ArxivStandIn, core: Core
):
    event = slack.user_message("CARXIV", AUTHOR, "worth a read: <https://arxiv.org/abs/1706.03762v5|Attention>")

    status = await http_bot.event(event)

    assert status == 200
    [done] = await slack.wait_for(
        lambda: [m for m in slack.thread("CARXIV", event["ts"]) if m["text"].startswith("Indexed")], timeout=180
    )
    [paper] = await core.list_papers(chan("CARXIV"))
    assert done["text"] == f"Indexed {paper.title} ({paper.pages} pages)" and paper.pages == 15
    assert "/pdf/1706.03762v5" in arxiv.requests


async def test_corrupt_and_missing_files_get_their_specific_error_and_the_bot_keeps_serving(
    socket_bot: Via, slack: SlackStandIn, core: Core
):
    channel = "CBROKEN"
    broken = ["not_a_pdf.pdf", "truncated_header_only.pdf", "encrypted_user_password.pdf", "html_named_pdf.pdf"]
    expected = {}
    for name in broken:
        report = await core.ingest_upload(chan("CEXPECTED"), User(AUTHOR, "bo"), name, (EDGE_PDFS / name).read_bytes())
        assert report.status == "failed" and report.message
        expected[name] = report.message
    files = [slack.add_file(name, (EDGE_PDFS / name).read_bytes()) for name in broken]
    # Partial file objects (Slack's `file_access: check_file_info`): the bot must ask files.info for the rest.
    event = slack.user_message(channel, AUTHOR, "", files=files, partial_files=True)
    gone = slack.add_file("deleted.pdf", b"%PDF-1.7 gone")
    gone_event = slack.user_message(channel, AUTHOR, "", files=[gone])
    vanished = slack.add_file("vanished.pdf", b"%PDF-1.7 gone")
    vanished_event = slack.user_message(channel, AUTHOR, "", files=[vanished], partial_files=True)
    slack.delete_file(gone["id"])  # deleted before the bot got to them: 404 on download, file_not_found on files.info
    slack.delete_file(vanished["id"])

    await socket_bot.events([event, gone_event, vanished_event])

    def outcomes() -> dict[str, str]:
        return {
            m["text"].split(": ", 1)[0]: m["text"]
            for m in slack.thread(channel, event["ts"])
            if m["text"].startswith("Could not index")
        }

    done = await slack.wait_for(lambda: len(outcomes()) == len(broken) and outcomes(), timeout=60)
    for name in broken:
        assert done[f"Could not index {name}"] == f"Could not index {name}: {expected[name]}"
    [missing] = await slack.wait_for(
        lambda: [m for m in slack.thread(channel, gone_event["ts"]) if m["text"].startswith("Could not index")]
    )
    assert "HTTP 404" in missing["text"]
    [inaccessible] = await slack.wait_for(lambda: slack.thread(channel, vanished_event["ts"]))
    assert "file_not_found" in inaccessible["text"]
    assert {c.args["file"] for c in slack.api("files.info")} >= {f["id"] for f in files}
    assert await core.list_papers(chan(channel)) == []

    # ...and the bot still works: a good PDF is indexed and a question answered in the same channel,
    minimal = slack.add_file(MINIMAL.name, MINIMAL.read_bytes())
    good = slack.user_message(channel, AUTHOR, "", files=[minimal])
    await socket_bot.event(good)
    await slack.wait_for(lambda: [m for m in slack.thread(channel, good["ts"]) if m["text"].startswith("Indexed")])
    _, answer = await ask(socket_bot, channel, OTHER, QUESTION)
    assert "Sources" in all_text(answer)
    # ...and a huge message gets Core's specific refusal instead of an answer.
    [expected_refusal] = [e async for e in core.ask(chan("CEXPECTED"), User("UX", "x"), "why " * 10_000)]
    huge = slack.mention(channel, OTHER, "why " * 10_000)
    await socket_bot.events(huge)
    [refusal] = await slack.wait_for(lambda: notices(slack, channel, huge[0]["ts"]))
    assert isinstance(expected_refusal, Failed) and refusal["text"] == expected_refusal.message


# --- answering -------------------------------------------------------------------------------------------------------
async def test_mention_gets_a_placeholder_then_a_streamed_answer_with_sources(
    via: Via, slack: SlackStandIn, core: Core
):
    channel = f"CASK{via.mode.upper()}"
    await add_paper(core, channel, MINIMAL)
    [paper] = await core.list_papers(chan(channel))

    thread, answer = await ask(via, channel, AUTHOR, QUESTION)

    placeholder = next(c for c in slack.api("chat.postMessage") if c.args.get("thread_ts") == thread)
    assert placeholder.args["text"] == "Thinking…" and placeholder.args["channel"] == channel
    edits = [c for c in slack.api("chat.update") if c.args["ts"] == answer["ts"]]
    assert len(edits) >= 2, "the answer should stream: several edits of the placeholder"
    times = [placeholder.at] + [c.at for c in edits]
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= EDIT_INTERVAL * 0.9  # throttled
    assert edits[-1].args["metadata"]["event_type"] == ANSWER_METADATA
    text = all_text(answer)
    assert answer["blocks"][0]["type"] == "section" and answer["blocks"][0]["text"]["text"].strip()
    assert f"*Sources*\n• [1] {paper.title}, p" in text
    assert len(slack.thread(channel, thread)) == 1  # `message` + `app_mention` for one mention: answered once


async def test_thread_reply_continues_the_conversation(socket_bot: Via, slack: SlackStandIn, core: Core):
    channel = "CTHREAD"
    await add_paper(core, channel, MINIMAL)
    thread, first = await ask(socket_bot, channel, AUTHOR, QUESTION)

    follow_up = slack.user_message(channel, AUTHOR, "and what are the token vectors compared with?", thread_ts=thread)
    await socket_bot.event(follow_up)

    second = await slack.wait_for(lambda: answers(slack, channel, thread)[1:])
    assert second[0]["ts"] != first["ts"]
    fetched = [c for c in slack.api("conversations.replies") if c.args["ts"] == thread]
    assert fetched and fetched[-1].args["include_all_metadata"] in ("1", "true", True)
    # The history the bot built from that thread: the first question with the bot's first answer.
    history = socket_bot.bot.threads.history(slack.replies(channel, thread), before_ts=follow_up["ts"])
    stored = await core.answer_for(chan(channel), first["ts"])
    assert stored is not None and [(t.question, t.answer) for t in history] == [(QUESTION, stored.answer.strip())]

    # A mention inside the thread (Slack sends `message` and `app_mention` again) is answered once, in the thread.
    await socket_bot.events(slack.mention(channel, OTHER, "late interaction, once more?", thread_ts=thread))
    await slack.wait_for(lambda: answers(slack, channel, thread)[2:])
    await socket_bot.bot.wait_idle()
    assert len(slack.thread(channel, thread)) == 3

    # A reply in a thread the bot never answered in is left alone.
    other = slack.user_message(channel, OTHER, "unrelated chatter")
    reply = slack.user_message(channel, AUTHOR, "indeed, late interaction", thread_ts=other["ts"])
    await socket_bot.events([other, reply])
    await socket_bot.bot.wait_idle()
    assert slack.thread(channel, other["ts"]) == []


async def test_long_answer_is_split_into_messages_within_slack_limits(
    slack: SlackStandIn, core: Core, slack_settings: Settings
):
    channel = "CLONG"
    await add_paper(core, channel, MINIMAL)
    filler = " ".join(f"word{i}" for i in range(4_000))  # ~35,000 characters: three or four messages

    class LongAnswers(Core):
        """The real Core, with each answer lengthened (the tiny model writes a few dozen tokens)."""

        async def ask(self, *args: Any, **kwargs: Any):  # type: ignore[override]
            async for event in super().ask(*args, **kwargs):
                if isinstance(event, Final):
                    event = replace(event, answer=replace(event.answer, answer=filler))
                yield event

    downloader = Downloader(["127.0.0.1"], max_bytes=1 << 20)
    long_core = LongAnswers(core.answerer, core.settings, downloader)
    try:
        async with _bot(long_core, slack_settings, slack, "http") as bot:
            via = Via(slack, bot, "http")
            events = slack.mention(channel, AUTHOR, QUESTION)
            await via.events(events)
            thread = events[0]["ts"]
            parts = await slack.wait_for(
                lambda: (
                    (found := answers(slack, channel, thread))
                    and len(found) == found[0]["metadata"]["event_payload"]["parts"]
                    and found
                )
            )
            await bot.wait_idle()
            # Every part is a known answer: a reaction on the last one is recorded.
            await via.event(slack.reaction(channel, OTHER, parts[-1]["ts"], "+1"))
            await bot.wait_idle()
    finally:
        await downloader.close()

    assert len(parts) >= 3
    assert [p["metadata"]["event_payload"]["part"] for p in parts] == list(range(1, len(parts) + 1))
    sections = [b["text"]["text"] for p in parts for b in p["blocks"] if b["type"] == "section"]
    answer_sections = [s for s in sections if not s.startswith("*Sources*")]
    assert " ".join(answer_sections).split() == filler.split()  # every word once, in order, across messages
    for part in parts:  # the stand-in refuses what Slack refuses, so these held for every call; checked here too
        assert len(part["blocks"]) <= 50 and all(len(s) <= 3000 for s in sections)
    recorded = await core.feedback(chan(channel))
    assert [(f["message_ref"], f["vote"]) for f in recorded] == [(parts[-1]["ts"], 1)]


async def test_two_channels_never_see_each_others_papers(http_bot: Via, slack: SlackStandIn, core: Core):
    await add_paper(core, "CISOA", MINIMAL)
    await add_paper(core, "CISOB", REAL_PDFS / "distillation.pdf")
    [paper_a] = await core.list_papers(chan("CISOA"))
    [paper_b] = await core.list_papers(chan("CISOB"))

    listed = {}
    for channel in ("CISOA", "CISOB"):
        rid = await http_bot.command("/papers", "list", channel, OTHER)
        [listed[channel]] = await slack.wait_for(lambda rid=rid: slack.responses_to(rid))
    assert paper_a.title in listed["CISOA"]["text"] and paper_b.title not in listed["CISOA"]["text"]
    assert paper_b.title in listed["CISOB"]["text"] and paper_a.title not in listed["CISOB"]["text"]

    for channel, mine, theirs in (("CISOA", paper_a, paper_b), ("CISOB", paper_b, paper_a)):
        _, answer = await ask(http_bot, channel, OTHER, "how does late interaction retrieval distill knowledge?")
        sources = all_text(answer).split("*Sources*", 1)[1]
        assert mine.title in sources and theirs.title not in sources


async def test_twenty_mentions_at_once_are_all_answered_or_told_to_wait(
    socket_bot: Via, slack: SlackStandIn, core: Core
):
    channel = "CFLOOD"
    await add_paper(core, channel, MINIMAL)
    users = [f"UFLOOD{i:02d}" for i in range(20)]
    for user in users:
        slack.add_user(user)
    mentions = [slack.mention(channel, user, QUESTION) for user in users]

    acks = await asyncio.gather(*(socket_bot.event(e) for pair in mentions for e in pair))

    assert len(acks) == 40
    threads = [pair[0]["ts"] for pair in mentions]

    def finished() -> list[str] | None:
        done = [t for t in threads if answers(slack, channel, t) or notices(slack, channel, t)]
        return done if len(done) == 20 else None

    await slack.wait_for(finished, timeout=150)
    answered = [t for t in threads if answers(slack, channel, t)]
    refused = [notices(slack, channel, t)[0] for t in threads if notices(slack, channel, t)]
    assert len(answered) + len(refused) == 20
    assert len(answered) >= 4  # the model's parallel slots
    assert refused and {m["text"] for m in refused} == {str(QueueFull())}  # "busy, try again in a moment"
    assert all(len(slack.thread(channel, t)) == 1 for t in threads)  # one reply per question, no duplicates
    waited = [e["text"] for t in answered for m in slack.thread(channel, t) for e in m["edits"]]
    assert any(text.startswith("Waiting for the model") for text in waited)  # queue positions were shown


async def test_reactions_on_answers_are_recorded(socket_bot: Via, slack: SlackStandIn, core: Core):
    channel = "CVOTE"
    await add_paper(core, channel, MINIMAL)
    thread, answer = await ask(socket_bot, channel, AUTHOR, QUESTION)

    await socket_bot.event(slack.reaction(channel, OTHER, answer["ts"], "+1"))
    await socket_bot.event(slack.reaction(channel, ADMIN, answer["ts"], "-1::skin-tone-3"))
    await socket_bot.event(slack.reaction(channel, OTHER, thread, "+1"))  # on the question, not an answer
    await socket_bot.event(slack.reaction(channel, OTHER, answer["ts"], "tada"))  # not a vote

    await socket_bot.bot.wait_idle()
    recorded = await core.feedback(chan(channel))
    assert sorted((f["user"], f["vote"]) for f in recorded) == [(ADMIN, -1), (OTHER, 1)]
    assert all(f["message_ref"] == answer["ts"] and f["question"] == QUESTION for f in recorded)
    assert recorded[0]["answer"]["sources"]  # stored with its sources, for evaluation


# --- slash commands --------------------------------------------------------------------------------------------------
async def test_papers_commands_and_who_may_remove_or_clear(socket_bot: Via, slack: SlackStandIn, core: Core):
    channel = "CPAPERS"
    await add_paper(core, channel, MINIMAL, user=AUTHOR)
    [paper] = await core.list_papers(chan(channel))

    async def papers(text: str, user: str) -> dict[str, Any]:
        rid = await socket_bot.command("/papers", text, channel, user)
        [reply] = await slack.wait_for(lambda: slack.responses_to(rid))
        return reply

    help_reply = await papers("help", OTHER)
    assert help_reply["response_type"] == "ephemeral" and "/papers list" in all_text(help_reply)
    assert (await papers("", OTHER))["text"] == help_reply["text"]

    listed = await papers("list", OTHER)
    assert f"`{paper.doc_id}` *{paper.title}* — {paper.pages} pages" in all_text(listed)
    assert f"by <@{AUTHOR}>" in all_text(listed)

    status = await papers("status", OTHER)
    assert "*Papers:* 1" in all_text(status) and "*Passages:* " in all_text(status)

    usage = await papers("remove seven", OTHER)
    assert usage["text"].startswith("Usage: `/papers remove ID`")

    refused = await papers(f"remove {paper.doc_id}", OTHER)  # neither the uploader nor an admin
    assert refused["response_type"] == "ephemeral" and all_text(refused).startswith(":warning:")
    refused_clear = await papers("clear", AUTHOR)  # the uploader, but not an admin
    assert refused_clear["response_type"] == "ephemeral" and all_text(refused_clear).startswith(":warning:")
    assert [p.doc_id for p in await core.list_papers(chan(channel))] == [paper.doc_id]

    removed = await papers(f"remove {paper.doc_id}", AUTHOR)
    assert removed["response_type"] == "in_channel" and paper.title in removed["text"]
    assert f"<@{AUTHOR}> removed *" in all_text(removed)  # a mention, not `&lt;@…&gt;` (escaped once, not twice)
    assert await core.list_papers(chan(channel)) == []

    await add_paper(core, channel, MINIMAL, user=AUTHOR)
    await add_paper(core, channel, REAL_PDFS / "distillation.pdf", user=OTHER)
    cleared = await papers("clear", ADMIN)
    assert cleared["response_type"] == "in_channel" and "(2 removed)" in cleared["text"]
    assert f"<@{ADMIN}> cleared" in all_text(cleared)
    assert await core.list_papers(chan(channel)) == []
    assert {c.args["user"] for c in slack.api("users.info")} >= {ADMIN, AUTHOR, OTHER}  # moderator rights asked


async def test_ask_command_answers_in_a_thread(http_bot: Via, slack: SlackStandIn, core: Core):
    channel = "CSLASHASK"
    await add_paper(core, channel, MINIMAL)

    await http_bot.command("/ask", QUESTION, channel, OTHER)

    [anchor] = await slack.wait_for(
        lambda: [m for (ch, _), m in slack.messages.items() if ch == channel and "asked:" in m.get("text", "")]
    )
    assert f"<@{OTHER}> asked: {QUESTION}" in all_text(anchor)
    [answer] = await slack.wait_for(lambda: answers(slack, channel, anchor["ts"]))
    assert "Sources" in all_text(answer)


async def test_ask_command_where_the_bot_cannot_post_says_so(socket_bot: Via, slack: SlackStandIn):
    slack.not_in_channel.add("CNOTMEMBER")
    rid = await socket_bot.command("/ask", QUESTION, "CNOTMEMBER", OTHER)
    [reply] = await slack.wait_for(lambda: slack.responses_to(rid))
    assert reply["response_type"] == "ephemeral" and "/invite @paperbot" in reply["text"]


# --- the rest of a bot's life in a channel ---------------------------------------------------------------------------
async def test_bot_introduces_itself_when_it_joins_a_channel(http_bot: Via, slack: SlackStandIn, core: Core):
    await http_bot.event(slack.member_joined("CJOIN", OTHER))  # someone else joining: nothing to say
    await http_bot.event(slack.member_joined("CJOIN", slack.BOT_USER))

    [intro] = await slack.wait_for(
        lambda: [m for (ch, _), m in slack.messages.items() if ch == "CJOIN" and m.get("user") == slack.BOT_USER]
    )
    assert intro["text"] == core.introduction() and "thread_ts" not in intro
    await http_bot.bot.wait_idle()
    assert len([1 for (ch, _), m in slack.messages.items() if ch == "CJOIN"]) == 1


async def test_http_requests_must_be_signed_with_the_signing_secret(http_bot: Via, slack: SlackStandIn):
    body = slack.event_body(slack.mention("CFORGED", OTHER, QUESTION)[1])

    forged = await slack.post_signed(http_bot.url or "", json.dumps(body), "application/json", secret="not-the-secret")
    replayed = await slack.post_signed(
        http_bot.url or "", json.dumps(body), "application/json", timestamp=int(time.time()) - 600
    )

    assert (forged, replayed) == (401, 401)
    await http_bot.bot.wait_idle()
    assert not [m for (ch, _), m in slack.messages.items() if ch == "CFORGED" and m.get("user") == slack.BOT_USER]


async def test_rate_limited_edits_are_retried_not_lost(http_bot: Via, slack: SlackStandIn, core: Core):
    channel = "CRATE"
    await add_paper(core, channel, MINIMAL)
    slack.rate_limited["chat.update"] = 2  # Slack answers 429 + Retry-After to the next two edits

    _, answer = await ask(http_bot, channel, AUTHOR, QUESTION)

    assert slack.rate_limited["chat.update"] == 0
    assert "Sources" in all_text(answer)


async def test_serve_runs_until_cancelled_and_closes_unfinished_answers(
    slack: SlackStandIn, core: Core, slack_settings: Settings
):
    channel = "CSERVE"
    await add_paper(core, channel, MINIMAL)

    class Stalled(Core):
        """The real Core, except that a question never reaches the model (a long queue at shutdown time)."""

        async def ask(self, *args: Any, **kwargs: Any):  # type: ignore[override]
            yield Queued(3)
            await asyncio.Event().wait()

    downloader = Downloader(["127.0.0.1"], max_bytes=1 << 20)
    before = slack.open_connections
    running = asyncio.create_task(
        serve(Stalled(core.answerer, core.settings, downloader), slack_settings, base_url=slack.api_url)
    )
    try:
        await slack.wait_for(lambda: slack.open_connections == before + 1, timeout=20)
        events = slack.mention(channel, AUTHOR, QUESTION)
        for event in events:
            await slack.send_event(event, via="socket")  # the newest connection: the one `serve` opened
        [waiting] = await slack.wait_for(
            lambda: [m for m in slack.thread(channel, events[0]["ts"]) if m["text"].startswith("Waiting for the model")]
        )
        assert "number 3 in the queue" in waiting["text"]

        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    finally:
        running.cancel()
        await downloader.close()

    assert slack.thread(channel, events[0]["ts"])[0]["text"] == STOPPED  # not "Waiting…" for ever
    await slack.wait_for(lambda: slack.open_connections == before, timeout=10)  # its websocket is closed


async def test_missing_or_refused_tokens_are_explained(slack: SlackStandIn, core: Core, slack_settings: Settings):
    with pytest.raises(SlackSetupError, match="SLACK_BOT_TOKEN"):
        SlackBot(core, slack_settings.model_copy(update={"slack_bot_token": None}))
    with pytest.raises(SlackSetupError, match="SLACK_APP_TOKEN"):
        SlackBot(core, slack_settings.model_copy(update={"slack_app_token": None}))
    with pytest.raises(SlackSetupError, match="SLACK_SIGNING_SECRET"):
        SlackBot(core, slack_settings.model_copy(update={"slack_mode": "http", "slack_signing_secret": None}))

    revoked = slack_settings.model_copy(update={"slack_bot_token": SecretStr("xoxb-revoked")})
    with pytest.raises(SlackSetupError, match="invalid_auth"):
        await SlackBot(core, revoked, base_url=slack.api_url).start()


# --- Slack's native streaming, and falling back where a workspace lacks it ------------------------------------------
def _block_types(call_args: dict[str, Any]) -> list[str]:
    blocks = call_args.get("blocks") or []
    return [b.get("type") for b in (json.loads(blocks) if isinstance(blocks, str) else blocks)]


async def test_native_streaming_where_the_workspace_has_it(core: Core, slack_settings: Settings, slack: SlackStandIn):
    channel = "CNATIVE"
    await add_paper(core, channel, MINIMAL)
    slack.streaming = slack.markdown_blocks = True
    try:
        async with _bot(core, slack_settings, slack, "http") as bot:  # its own bot: nothing learnt yet
            via = Via(slack, bot, "http")
            thread, answer = await ask(via, channel, AUTHOR, QUESTION)
            await bot.wait_idle()
    finally:
        slack.streaming = slack.markdown_blocks = False

    [start] = [c for c in slack.api("chat.startStream") if c.args["channel"] == channel]
    assert start.args["thread_ts"] == thread
    assert (start.args["recipient_user_id"], start.args["recipient_team_id"]) == (AUTHOR, SlackStandIn.TEAM)
    [stop] = [c for c in slack.api("chat.stopStream") if c.args["channel"] == channel]
    assert stop.args["ts"] == answer["ts"] and stop.args["metadata"]["event_type"] == ANSWER_METADATA
    # The answer is the streamed Markdown (escaped once), followed by its sources and footer as blocks.
    stored = await core.answer_for(chan(channel), answer["ts"])  # registered for 👍/👎 and follow-ups
    assert stored is not None and answer["text"] == sb.escape(stored.answer.strip())
    assert "*Sources*\n• [1] " in all_text(answer)
    # The placeholder gave way to the stream: the thread holds the question's answer and nothing else.
    assert [m["ts"] for m in slack.thread(channel, thread)] == [answer["ts"]]
    assert not [c for c in slack.api("chat.update") if c.args.get("ts") == answer["ts"]]


async def test_without_native_streaming_or_markdown_blocks_the_bot_falls_back_and_remembers(
    core: Core, slack_settings: Settings, slack: SlackStandIn
):
    channel = "CFALLBACK"
    await add_paper(core, channel, MINIMAL)
    assert not slack.streaming and not slack.markdown_blocks  # the stand-in answers as a workspace without them
    async with _bot(core, slack_settings, slack, "http") as bot:
        via = Via(slack, bot, "http")
        _, first = await ask(via, channel, AUTHOR, QUESTION)
        _, second = await ask(via, channel, OTHER, "which vectors does late interaction compare?")
        await bot.wait_idle()

    # Each was tried once in this workspace (and turned down), then not again.
    assert len([c for c in slack.api("chat.startStream") if c.args["channel"] == channel]) == 1
    tried_markdown = [
        c for c in slack.api("chat.update") if c.args["channel"] == channel and "markdown" in _block_types(c.args)
    ]
    assert len(tried_markdown) == 1
    for answer in (first, second):  # both answered the way that works there: chat.update of the placeholder, mrkdwn
        assert answer["blocks"][0]["type"] == "section" and "*Sources*" in all_text(answer)
        assert len([c for c in slack.api("chat.update") if c.args["ts"] == answer["ts"]]) >= 2
