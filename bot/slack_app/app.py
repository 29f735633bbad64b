"""The Slack bot itself: its tokens, the Bolt app and which listener handles what, connecting over Socket Mode or
HTTP, and the tasks it owns; `serve` is what `paperbot run slack` runs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot import health
from bot.core import Core
from bot.slack_app.api import API_ERRORS, Identity, error_code
from bot.slack_app.editing import Editing
from bot.slack_app.events import Events
from bot.slack_app.ingest import Ingestion
from bot.slack_app.mapping import People
from bot.slack_app.slash import SlashCommands
from bot.slack_app.threads import Threads
from bot.settings import Settings

log = logging.getLogger(__name__)


class SlackSetupError(ValueError):
    """A missing or rejected token: the message says which one and where it comes from."""


class SlackBot:
    """paperbot in one Slack workspace. `async with SlackBot(core, settings) as bot:` connects it (Socket Mode, or an
    HTTP endpoint at `/slack/events`), and leaving the block disconnects it and cancels unfinished work.

    Composed of one object per job, each given what it needs: `people` (channels and users), `threads` (answering
    in threads, reading them back), `ingestion`, `commands` (slash commands) and `events` (the event listeners)."""

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
        self.identity = Identity()
        self._tasks: set[asyncio.Task[Any]] = set()
        editing = Editing(self.client, edit_interval, edits_per_minute)
        self.people = People(self.client, self.identity, moderator_ttl_s)
        self.threads = Threads(core, self.client, self.identity, self.people, editing)
        self.ingestion = Ingestion(core, self.client, self.people, editing)
        self.commands = SlashCommands(
            core, self.client, self.identity, self.people, self.threads, editing, self._spawn, settings.bot_name
        )
        self.events = Events(core, self.client, self.identity, self.people, self.threads, self.ingestion, self._spawn)
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
        except API_ERRORS as error:
            await self.close()
            reason = error_code(error)
            raise SlackSetupError(f"Slack refused the bot token, or could not be reached ({reason}).") from error
        self.identity.user_id = identity.get("user_id", "")
        self.identity.bot_id = identity.get("bot_id", "")
        self.identity.team_id = identity.get("team_id", "")
        self.core.set_download_headers(self.files_host, {"Authorization": f"Bearer {self.client.token}"})
        if self.mode == "http":
            server = self.app.server(port=self.settings.slack_http_port, path="/slack/events", host=self.http_host)
            self._runner = web.AppRunner(server.web_app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, self.http_host, self.settings.slack_http_port).start()
            self.http_port = self._runner.addresses[0][1]
            log.info(
                "Slack HTTP endpoint on %s:%s/slack/events (team %s)",
                self.http_host,
                self.http_port,
                self.identity.team_id,
            )
        else:
            self._socket = AsyncSocketModeHandler(
                self.app, _secret(self.settings.slack_app_token), web_client=self.client
            )
            await self._socket.connect_async()
            me = self.identity
            log.info("connected to Slack over Socket Mode (team %s, bot user %s)", me.team_id, me.user_id)

    async def connected(self) -> bool:
        """Socket Mode: the websocket is open; HTTP mode: the endpoint listens (the health check asks)."""
        if self._socket is not None:
            return bool(await self._socket.client.is_connected())
        return self._runner is not None

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
        """Run `work` as a task this bot owns: cancelled on close, its failure logged."""
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
        app.event("app_mention")(self.events.on_mention)
        app.event("message")(self.events.on_message)
        app.event("reaction_added")(self.events.on_reaction)
        app.event("member_joined_channel")(self.events.on_member_joined)
        app.event("member_left_channel")(self.events.on_member_left)
        app.event("channel_deleted")(self.events.on_channel_deleted)
        # Subscribed or implied events that need no action (files arrive as `message` events of subtype file_share,
        # which carry the channel, the sender and the file objects; `file_shared` would duplicate them).
        for name in ("file_shared", "reaction_removed", "file_created", "file_public"):
            app.event(name)(self._ignore)
        app.command("/ask")(self.commands.on_ask)
        app.command("/papers")(self.commands.on_papers)
        app.error(self._on_error)

    async def _ignore(self) -> None:
        return None

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("Slack listener error for %s: %r", body.get("type") or body.get("command"), error, exc_info=error)


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


async def serve(core: Core, settings: Settings, *, base_url: str | None = None) -> None:
    """`paperbot run slack`: connect to the workspace and answer until cancelled. `base_url` points the Web API
    elsewhere (a stand-in in tests)."""
    async with SlackBot(
        core, settings, base_url=base_url or AsyncWebClient.BASE_URL, http_host=settings.slack_http_host
    ) as bot:
        health.set_platform("slack", bot.connected)
        await asyncio.Event().wait()
