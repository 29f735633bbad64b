"""The Slack adapter: slack-bolt events and slash commands in, Core calls, Block Kit out.

One workspace per running bot (a bot token, plus an app token for Socket Mode or a signing secret for HTTP mode);
multi-workspace OAuth installs are out of scope. Events are acknowledged by Bolt before any work starts; the work runs
in tasks this adapter owns and cancels on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import aclosing, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot import slack_blocks as render
from bot.messages import Channel, Failed, Final, Partial, Queued, Turn, User
from bot.slack_blocks import SlackMessage
from rag_engine.errors import USER_FACING
from rag_engine.settings import Settings

if TYPE_CHECKING:  # used in annotations only
    from bot.core import Core

log = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong on my side. The error has been logged; please try again."
STOPPED = "I was stopped before I could finish this answer (the bot is restarting). Please ask again in a minute."
ANSWER_METADATA = "paperbot_answer"  # message metadata event type marking answer messages in a thread
HISTORY_TURNS = 6
_VOTES = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}
_GONE = {"message_not_found", "channel_not_found", "cant_update_message", "is_archived", "not_in_channel"}
#: What a Web API call can raise once slack-sdk's own retries (connection errors, 429s) are used up.
_API_ERRORS = (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError)


class SlackSetupError(ValueError):
    """A missing or rejected token: the message says which one and where it comes from."""


class EditBudget:
    """A token bucket shared by every streaming message, so edits stay inside chat.update's rate tier
    (Tier 3, about 50 a minute per workspace) however many answers stream at once."""

    def __init__(self, per_minute: float, burst: int = 10) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    async def take(self) -> None:
        """Wait for one edit's worth of budget."""
        self._refill()
        while self._tokens < 1:
            await asyncio.sleep((1 - self._tokens) / self._rate)
            self._refill()
        self._tokens -= 1

    def spend(self) -> None:
        """A final edit is always sent; it is charged (possibly into debt, which delays later partial edits)."""
        self._refill()
        self._tokens -= 1


class LiveMessage:
    """One bot message that is edited as an answer or an ingestion progresses.

    Edits are coalesced: at most one per `interval` seconds for this message and within the shared `budget`; only the
    newest pending content is sent. `finish` always sends its content (after the interval has passed).
    """

    def __init__(self, client: AsyncWebClient, channel: str, ts: str, interval: float, budget: EditBudget) -> None:
        self.client = client
        self.channel = channel
        self.ts = ts
        self.gone = False  # the message was deleted or cannot be edited: stop working for it
        self._interval = interval
        self._budget = budget
        self._last = time.monotonic()
        self._pending: SlackMessage | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._sending = False

    def abandon(self) -> None:
        """Stop sending pending edits (the work behind this message ended without a final word)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()

    def show(self, message: SlackMessage) -> None:
        if self.gone:
            return
        self._pending = message
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def finish(self, message: SlackMessage, metadata: dict[str, Any] | None = None) -> None:
        self._pending = None
        if self._flusher is not None and not self._flusher.done():
            if self._sending:
                with suppress(Exception):
                    await self._flusher  # let the edit in flight land first, so the final one is the last
            else:
                self._flusher.cancel()
                with suppress(asyncio.CancelledError):
                    await self._flusher
        await asyncio.sleep(max(0.0, self._last + self._interval - time.monotonic()))
        self._budget.spend()
        await self._update(message, metadata)

    async def _flush(self) -> None:
        while self._pending is not None and not self.gone:
            await asyncio.sleep(max(0.0, self._last + self._interval - time.monotonic()))
            await self._budget.take()
            message, self._pending = self._pending, None
            if message is None:
                return
            self._sending = True
            try:
                await self._update(message)
            finally:
                self._sending = False

    async def _update(self, message: SlackMessage, metadata: dict[str, Any] | None = None) -> None:
        if self.gone:
            return
        extra = {"metadata": metadata} if metadata else {}
        try:
            await self.client.chat_update(channel=self.channel, ts=self.ts, **message.payload(), **extra)
        except _API_ERRORS as error:
            code = _error_code(error)
            self.gone = code in _GONE
            log.warning("chat.update %s/%s failed: %s", self.channel, self.ts, code)
        finally:
            self._last = time.monotonic()


class _Recent:
    """A bounded map that forgets its oldest entries (event ids seen, threads the bot is in, user lookups)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, default: Any = None) -> Any:
        return self._items.get(key, default)

    def put(self, key: Any, value: Any = True) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __contains__(self, key: Any) -> bool:
        return key in self._items


class SlackBot:
    """paperbot in one Slack workspace. `async with SlackBot(core, settings) as bot:` connects it (Socket Mode, or an
    HTTP endpoint at `/slack/events`), and leaving the block disconnects it and cancels unfinished work."""

    def __init__(
        self,
        core: Core,
        settings: Settings,
        *,
        client: AsyncWebClient | None = None,
        base_url: str = AsyncWebClient.BASE_URL,
        files_host: str = "files.slack.com",
        http_host: str = "0.0.0.0",
        edit_interval: float = 1.0,
        edits_per_minute: float = 50.0,
        moderator_ttl_s: float = 600.0,
    ) -> None:
        self.core = core
        self.settings = settings
        self.mode = settings.slack_mode
        bot_token = _secret(settings.slack_bot_token)
        if not bot_token:
            raise SlackSetupError("SLACK_BOT_TOKEN (xoxb-…) is not set; see docs/slack_setup.md.")
        self._own_client = client is None
        self.client = client or AsyncWebClient(token=bot_token, base_url=base_url)
        self.client.token = self.client.token or bot_token
        # Slack answers 429 with Retry-After when a rate tier is exceeded; wait and retry instead of losing the edit.
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
        self.files_host = files_host
        self.http_host = http_host
        self.http_port: int | None = None
        self.bot_user_id = ""
        self.bot_id = ""
        self.team_id = ""
        self._edit_interval = edit_interval
        self._budget = EditBudget(edits_per_minute)
        self._moderator_ttl = moderator_ttl_s
        self._users = _Recent(5000)
        self._events_seen = _Recent(2000)
        self._threads = _Recent(5000)  # (channel, thread_ts) → whether the bot answers there
        self._tasks: set[asyncio.Task[Any]] = set()
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        signing_secret = _secret(settings.slack_signing_secret)
        if self.mode == "http" and not signing_secret:
            raise SlackSetupError("SLACK_SIGNING_SECRET is not set; HTTP mode needs it to verify Slack's requests.")
        if self.mode == "socket" and not _secret(settings.slack_app_token):
            raise SlackSetupError("SLACK_APP_TOKEN (xapp-…, scope connections:write) is not set; Socket Mode needs it.")
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret,
            name=settings.bot_name,
            process_before_response=False,  # ack() first, listeners run afterwards
            request_verification_enabled=self.mode == "http",
            logger=logging.getLogger(f"{__name__}.bolt"),
        )
        self._register()

    # --- lifecycle ---------------------------------------------------------------------------------------------------
    async def __aenter__(self) -> SlackBot:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._own_client:
            # One connection pool for all Web API calls (slack-sdk otherwise opens a session per call).
            self.client.session = aiohttp.ClientSession()
        try:
            identity = await self.client.auth_test()
        except _API_ERRORS as error:
            await self.close()
            reason = _error_code(error)
            raise SlackSetupError(f"Slack refused the bot token, or could not be reached ({reason}).") from error
        self.bot_user_id = identity.get("user_id", "")
        self.bot_id = identity.get("bot_id", "")
        self.team_id = identity.get("team_id", "")
        self.core.set_download_headers(self.files_host, {"Authorization": f"Bearer {self.client.token}"})
        if self.mode == "http":
            server = self.app.server(port=self.settings.slack_http_port, path="/slack/events", host=self.http_host)
            self._runner = web.AppRunner(server.web_app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, self.http_host, self.settings.slack_http_port).start()
            self.http_port = self._runner.addresses[0][1]
            log.info(
                "Slack HTTP endpoint on %s:%s/slack/events (team %s)", self.http_host, self.http_port, self.team_id
            )
        else:
            self._socket = AsyncSocketModeHandler(
                self.app, _secret(self.settings.slack_app_token), web_client=self.client
            )
            await self._socket.connect_async()
            log.info("connected to Slack over Socket Mode (team %s, bot user %s)", self.team_id, self.bot_user_id)

    async def close(self) -> None:
        if self._socket is not None:
            with suppress(Exception):
                await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._own_client and self.client.session is not None:
            await self.client.session.close()
            self.client.session = None

    def _spawn(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Slack task failed: %s", what)

        task = asyncio.create_task(guarded(), name=f"slack:{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self, timeout: float = 30.0, quiet: float = 0.2) -> None:
        """Wait until no work has been running for `quiet` seconds (Bolt starts listeners just after the ack, so
        work may begin a moment after an event was delivered). For tests and graceful shutdowns."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
                continue
            await asyncio.sleep(quiet)
            if not self._tasks:
                return

    # --- listeners ---------------------------------------------------------------------------------------------------
    def _register(self) -> None:
        app = self.app
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.event("reaction_added")(self._on_reaction)
        app.event("member_joined_channel")(self._on_member_joined)
        # Subscribed or implied events that need no action (files arrive as `message` events of subtype file_share,
        # which carry the channel, the sender and the file objects; `file_shared` would duplicate them).
        for name in ("file_shared", "reaction_removed", "member_left_channel", "file_created", "file_public"):
            app.event(name)(self._ignore)
        app.command("/ask")(self._on_ask)
        app.command("/papers")(self._on_papers)
        app.error(self._on_error)

    async def _ignore(self) -> None:
        return None

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("Slack listener error for %s: %r", body.get("type") or body.get("command"), error, exc_info=error)

    def _first_time(self, body: dict[str, Any]) -> bool:
        """Slack redelivers an event it thinks was not acknowledged; do its work once."""
        event_id = body.get("event_id")
        if not event_id:
            return True
        if event_id in self._events_seen:
            log.info("duplicate delivery of %s ignored", event_id)
            return False
        self._events_seen.put(event_id)
        return True

    def _channel(self, channel_id: str, team_id: str | None) -> Channel:
        return Channel("slack", team_id or self.team_id, channel_id)

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if not self._first_time(body) or event.get("bot_id"):
            return
        channel = self._channel(event["channel"], body.get("team_id") or event.get("team"))
        if not self.core.is_allowed(channel):
            log.debug("mention in %s ignored: not an allowed channel", channel.channel)
            return
        text = render.plain_text(event.get("text", ""), self.bot_user_id)
        links = self.core.paper_links(text)
        if links and not _without(text, links).strip():
            return  # just a link for the bot: the `message` listener indexes it
        thread_ts = event.get("thread_ts") or event["ts"]
        self._spawn(
            self._answer_in_thread(channel, event["user"], text, event["channel"], thread_ts, event["ts"]),
            f"answer {event['channel']}/{event['ts']}",
        )

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        subtype = event.get("subtype")
        if subtype not in (None, "file_share", "thread_broadcast") or event.get("bot_id") or not event.get("user"):
            return  # edits, deletions, joins and other bots' posts
        if not self._first_time(body):
            return
        channel = self._channel(event["channel"], body.get("team_id") or event.get("team"))
        if not self.core.is_allowed(channel):
            return
        thread_ts = event.get("thread_ts") or event["ts"]
        for file in event.get("files") or ():
            if _is_pdf(file) or file.get("file_access") == "check_file_info":
                self._spawn(
                    self._ingest_file(channel, event["user"], event["channel"], thread_ts, file),
                    f"ingest file {file.get('id')}",
                )
        raw = event.get("text", "")
        text = render.plain_text(raw, self.bot_user_id)
        links = self.core.paper_links(text)
        for url in links:
            self._spawn(self._ingest_link(channel, event["user"], event["channel"], thread_ts, url), f"ingest {url}")
        addressed = self.bot_user_id and render.mentions(raw, self.bot_user_id)
        in_thread = event.get("thread_ts") not in (None, event["ts"])
        if in_thread and not addressed and not event.get("files") and _without(text, links).strip():
            # A reply in a thread where the bot answered continues that conversation (mentions go to _on_mention).
            self._spawn(
                self._answer_in_thread(
                    channel, event["user"], text, event["channel"], event["thread_ts"], event["ts"], True
                ),
                f"follow-up {event['channel']}/{event['ts']}",
            )

    async def _on_reaction(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        item = event.get("item") or {}
        vote = _VOTES.get(event.get("reaction", "").split("::")[0])
        if vote is None or item.get("type") != "message" or not self._first_time(body):
            return
        if event.get("item_user") and event["item_user"] != self.bot_user_id:
            return
        channel = self._channel(item["channel"], body.get("team_id"))
        if self.core.is_allowed(channel):
            self._spawn(self._record_vote(channel, event["user"], item["ts"], vote), f"vote {item['ts']}")

    async def _record_vote(self, channel: Channel, user_id: str, ts: str, vote: int) -> None:
        user = await self._user(user_id)
        recorded = await self.core.record_feedback(channel, user, ts, vote)
        log.info(
            "reaction %+d on %s/%s by %s: %s",
            vote,
            channel.channel,
            ts,
            user.id,
            "recorded" if recorded else "not an answer",
        )

    async def _on_member_joined(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("user") != self.bot_user_id or not self._first_time(body):
            return
        channel = self._channel(event["channel"], body.get("team_id") or event.get("team"))
        if self.core.is_allowed(channel):
            self._spawn(self._post(event["channel"], render.markdown_message(self.core.introduction())), "introduction")

    # --- answering ---------------------------------------------------------------------------------------------------
    async def _answer_in_thread(
        self,
        channel: Channel,
        user_id: str,
        question: str,
        channel_id: str,
        thread_ts: str,
        message_ts: str,
        follow_up_only: bool = False,
    ) -> None:
        """Answer in `thread_ts`'s thread; with `follow_up_only`, only if the bot already answered in that thread."""
        history: list[Turn] = []
        if thread_ts != message_ts:
            if follow_up_only and self._threads.get((channel_id, thread_ts)) is False:
                return
            replies = await self._thread_messages(channel_id, thread_ts)
            involved = any(self._is_answer(m) for m in replies)
            self._threads.put((channel_id, thread_ts), involved)
            if follow_up_only and not involved:
                return
            history = self._history(replies, before_ts=message_ts)
        user = await self._user(user_id)
        posted = await self._post(channel_id, render.thinking_message(), thread_ts=thread_ts)
        if posted is None:
            return
        self._threads.put((channel_id, thread_ts), True)
        await self._stream_answer(
            channel,
            user,
            question,
            history,
            LiveMessage(self.client, channel_id, posted, self._edit_interval, self._budget),
            thread_ts,
        )

    async def _stream_answer(
        self, channel: Channel, user: User, question: str, history: Sequence[Turn], live: LiveMessage, thread_ts: str
    ) -> None:
        started = time.monotonic()
        final: Final | None = None
        try:
            async with aclosing(self.core.ask(channel, user, question, history)) as events:
                async for event in events:
                    if isinstance(event, Queued):
                        live.show(render.queued_message(event.position))
                    elif isinstance(event, Partial):
                        live.show(render.partial_message(event.reasoning, event.answer))
                    elif isinstance(event, Final):
                        final = event
                    elif isinstance(event, Failed):
                        await live.finish(render.notice_message(event.message))
                        return
                    if live.gone:
                        log.info("answer message %s/%s is gone; stopping the answer", live.channel, live.ts)
                        return
        except USER_FACING as error:
            await live.finish(render.notice_message(str(error)))
            return
        except asyncio.CancelledError:
            # The bot is shutting down: say so rather than leave "Thinking…" in the thread for good.
            with suppress(Exception):
                await asyncio.wait_for(live.finish(render.notice_message(STOPPED)), timeout=5)
            live.abandon()
            raise
        except Exception:
            log.exception("answering in %s failed", channel.index_name)
            await live.finish(render.notice_message(APOLOGY))
            return
        if final is None:
            log.error("answer stream in %s ended without a result", channel.index_name)
            await live.finish(render.notice_message(APOLOGY))
            return
        parts = render.answer_messages(final.answer, final.elapsed_s or time.monotonic() - started)
        # Each message is registered as soon as its ts is known, so that a quick 👍 on it already counts.
        await self.core.answer_posted(channel, live.ts, question, final.answer)
        await live.finish(parts[0], _answer_metadata(1, len(parts)))
        for n, part in enumerate(parts[1:], start=2):
            ts = await self._post(live.channel, part, thread_ts=thread_ts, metadata=_answer_metadata(n, len(parts)))
            if ts:
                await self.core.answer_posted(channel, ts, question, final.answer)
        log.info("answered in %s (%d message(s), %.1f s)", channel.index_name, len(parts), time.monotonic() - started)

    def _is_answer(self, message: dict[str, Any]) -> bool:
        mine = message.get("user") == self.bot_user_id or (self.bot_id and message.get("bot_id") == self.bot_id)
        return bool(mine and (message.get("metadata") or {}).get("event_type") == ANSWER_METADATA)

    async def _thread_messages(self, channel_id: str, thread_ts: str, pages: int = 5) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        cursor = None
        for _ in range(pages):
            try:
                response = await self.client.conversations_replies(
                    channel=channel_id, ts=thread_ts, limit=200, cursor=cursor, include_all_metadata=True
                )
            except _API_ERRORS as error:
                log.warning("conversations.replies %s/%s failed: %s", channel_id, thread_ts, _error_code(error))
                break
            messages.extend(response.get("messages", []))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return messages

    def _history(self, messages: list[dict[str, Any]], before_ts: str) -> list[Turn]:
        """Earlier (question, answer) pairs in a thread: a person's message followed by the bot's answer message(s)."""
        turns: list[Turn] = []
        question: str | None = None
        answer: list[str] = []
        for message in sorted(messages, key=lambda m: float(m.get("ts", 0))):
            if float(message.get("ts", 0)) >= float(before_ts):
                break
            if self._is_answer(message):
                if question is not None:
                    answer.append(message.get("text", ""))
                continue
            if question is not None and answer:
                turns.append(Turn(question, "\n".join(answer)))
            if message.get("user") and not message.get("bot_id") and message.get("user") != self.bot_user_id:
                question, answer = render.plain_text(message.get("text", ""), self.bot_user_id), []
        if question is not None and answer:
            turns.append(Turn(question, "\n".join(answer)))
        return turns[-HISTORY_TURNS:]

    # --- ingestion ---------------------------------------------------------------------------------------------------
    async def _ingest_file(
        self, channel: Channel, user_id: str, channel_id: str, thread_ts: str, file: dict[str, Any]
    ) -> None:
        if file.get("file_access") == "check_file_info" or not file.get("url_private"):
            # Some events carry only a file's id (`file_access: check_file_info`): ask Slack for the rest.
            try:
                file = (await self.client.files_info(file=file["id"]))["file"]
            except _API_ERRORS as error:
                code = _error_code(error)
                log.warning("files.info %s failed: %s", file.get("id"), code)
                notice = f"I can't access that file (Slack says `{code}`); try sharing it again."
                await self._post(channel_id, render.notice_message(notice), thread_ts=thread_ts)
                return
            if not _is_pdf(file):
                return
        name = file.get("name") or file.get("title") or "file.pdf"
        url = file.get("url_private_download") or file.get("url_private")
        await self._ingest(channel, user_id, channel_id, thread_ts, name, url)

    async def _ingest_link(self, channel: Channel, user_id: str, channel_id: str, thread_ts: str, url: str) -> None:
        name = urlsplit(url).path.rsplit("/", 1)[-1] or url
        await self._ingest(channel, user_id, channel_id, thread_ts, name, url)

    async def _ingest(
        self, channel: Channel, user_id: str, channel_id: str, thread_ts: str, name: str, url: str
    ) -> None:
        user = await self._user(user_id)
        posted = await self._post(channel_id, render.ingest_started_message(name), thread_ts=thread_ts)
        if posted is None:
            return
        live = LiveMessage(self.client, channel_id, posted, self._edit_interval, self._budget)

        async def progress(line: str) -> None:
            live.show(render.ingest_progress_message(name, line))

        try:
            report = await self.core.ingest_url(channel, user, url, progress)
        except USER_FACING as error:
            await live.finish(render.notice_message(f"Could not index {name}: {error}", ":x:"))
            return
        except asyncio.CancelledError:
            live.abandon()  # no stray progress edit after shutdown
            raise
        except Exception:
            log.exception("ingesting %s into %s failed", url, channel.index_name)
            await live.finish(render.notice_message(APOLOGY))
            return
        await live.finish(render.ingest_report_message(report, name))
        log.info("ingest %s into %s: %s", name, channel.index_name, report.status)

    # --- slash commands ----------------------------------------------------------------------------------------------
    async def _on_ask(self, ack: Callable[..., Awaitable[Any]], command: dict[str, Any], respond: Any) -> None:
        await ack()
        channel = self._channel(command["channel_id"], command.get("team_id"))
        if not self.core.is_allowed(channel):
            await respond(**_ephemeral(render.notice_message("I'm not enabled in this channel.")))
            return
        self._spawn(self._ask_command(channel, command, respond), f"/ask {command['channel_id']}")

    async def _ask_command(self, channel: Channel, command: dict[str, Any], respond: Any) -> None:
        question = render.plain_text(command.get("text", ""), self.bot_user_id)
        user = await self._user(command["user_id"])
        # The question is posted as a message so that the answer can stream into its thread (response_url only
        # allows five replies and no edits of the bot's own message).
        shown = render.escape(question)[: render.SECTION_CHARS - 100]
        header = render.SlackMessage(
            f"{user.name} asked: {question}"[: render.MESSAGE_CHARS],
            (render.section(f":question: <@{user.id}> asked: {shown}"),),
        )
        anchor = await self._post(command["channel_id"], header)
        if anchor is None:
            await respond(
                **_ephemeral(
                    render.notice_message(
                        "I can't post in this channel. Invite me first (`/invite @" + self.settings.bot_name + "`)."
                    )
                )
            )
            return
        posted = await self._post(command["channel_id"], render.thinking_message(), thread_ts=anchor)
        if posted is None:
            return
        self._threads.put((command["channel_id"], anchor), True)
        live = LiveMessage(self.client, command["channel_id"], posted, self._edit_interval, self._budget)
        await self._stream_answer(channel, user, question, (), live, anchor)

    async def _on_papers(self, ack: Callable[..., Awaitable[Any]], command: dict[str, Any], respond: Any) -> None:
        await ack()
        channel = self._channel(command["channel_id"], command.get("team_id"))
        if not self.core.is_allowed(channel):
            await respond(**_ephemeral(render.notice_message("I'm not enabled in this channel.")))
            return
        self._spawn(self._papers_command(channel, command, respond), f"/papers {command['channel_id']}")

    async def _papers_command(self, channel: Channel, command: dict[str, Any], respond: Any) -> None:
        words = command.get("text", "").split()
        action = words[0].lower() if words else "help"
        try:
            if action == "list":
                reply = _ephemeral(render.papers_message(await self.core.list_papers(channel)))
            elif action == "status":
                reply = _ephemeral(render.status_message(await self.core.status(channel)))
            elif action == "remove":
                if len(words) != 2 or not words[1].isdigit():
                    reply = _ephemeral(
                        render.notice_message("Usage: `/papers remove ID` (`/papers list` shows the ids).")
                    )
                else:
                    user = await self._user(command["user_id"])
                    paper = await self.core.remove_paper(channel, user, int(words[1]))
                    reply = _in_channel(
                        render.notice_message(
                            f"<@{user.id}> removed *{render.escape(paper.title)}* (id {paper.doc_id}) "
                            "from this channel's papers.",
                            ":wastebasket:",
                        )
                    )
            elif action == "clear":
                user = await self._user(command["user_id"], fresh=True)
                removed = await self.core.clear(channel, user)
                reply = _in_channel(
                    render.notice_message(
                        f"<@{user.id}> cleared this channel's papers ({removed} removed).", ":wastebasket:"
                    )
                )
            else:
                reply = _ephemeral(render.markdown_message(self.core.help_text()))
        except USER_FACING as error:
            reply = _ephemeral(render.notice_message(str(error)))
        except Exception:
            log.exception("/papers %s in %s failed", action, channel.index_name)
            reply = _ephemeral(render.notice_message(APOLOGY))
        await respond(**reply)

    # --- Slack helpers -----------------------------------------------------------------------------------------------
    async def _user(self, user_id: str, fresh: bool = False) -> User:
        """Who `user_id` is; moderators are workspace admins and owners (users.info, cached for a while)."""
        cached = self._users.get(user_id)
        if cached is not None and not fresh and cached[1] > time.monotonic():
            return cached[0]
        try:
            info = (await self.client.users_info(user=user_id))["user"]
        except _API_ERRORS as error:
            # Without users:read (or with Slack unreachable) nobody counts as a moderator; uploaders can still remove.
            log.warning("users.info %s failed: %s", user_id, _error_code(error))
            return User(user_id, user_id, False)
        profile = info.get("profile") or {}
        name = profile.get("display_name") or info.get("real_name") or info.get("name") or user_id
        moderator = bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))
        user = User(user_id, name, moderator)
        self._users.put(user_id, (user, time.monotonic() + self._moderator_ttl))
        return user

    async def _post(
        self,
        channel_id: str,
        message: SlackMessage,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str | None:
        """chat.postMessage; the new message's ts, or None (logged) when Slack refused it."""
        extra: dict[str, Any] = {}
        if thread_ts:
            extra["thread_ts"] = thread_ts
        if metadata:
            extra["metadata"] = metadata
        try:
            response = await self.client.chat_postMessage(channel=channel_id, **message.payload(), **extra)
        except _API_ERRORS as error:
            log.warning("chat.postMessage to %s failed: %s", channel_id, _error_code(error))
            return None
        return response.get("ts")


def _answer_metadata(part: int, parts: int) -> dict[str, Any]:
    """Message metadata marking part `part` of `parts` of an answer (how thread history finds the bot's answers)."""
    return {"event_type": ANSWER_METADATA, "event_payload": {"part": part, "parts": parts}}


def _error_code(error: BaseException) -> str:
    """Slack's error code (`not_in_channel`, …), or the kind of network failure."""
    if isinstance(error, SlackApiError):
        return str(error.response.get("error", "unknown_error"))
    return type(error).__name__


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def _is_pdf(file: dict[str, Any]) -> bool:
    return (
        file.get("filetype") == "pdf"
        or file.get("mimetype") == "application/pdf"
        or str(file.get("name", "")).lower().endswith(".pdf")
    )


def _without(text: str, links: list[str]) -> str:
    """`text` without `links` and other URLs (to tell "here is a paper" from a question that contains a link)."""
    words = [w for w in text.split() if w not in links and not w.startswith(("http://", "https://"))]
    return " ".join(words)


def _ephemeral(message: SlackMessage) -> dict[str, Any]:
    return {"response_type": "ephemeral", **message.payload()}


def _in_channel(message: SlackMessage) -> dict[str, Any]:
    return {"response_type": "in_channel", **message.payload()}


async def serve(core: Core, settings: Settings, *, base_url: str | None = None) -> None:
    """`paperbot run slack`: connect to the workspace and answer until cancelled. `base_url` points the Web API
    elsewhere (a stand-in in tests)."""
    async with SlackBot(core, settings, base_url=base_url or AsyncWebClient.BASE_URL, http_host=settings.slack_http_host):
        await asyncio.Event().wait()
