"""A loopback Discord: gateway websocket + REST API + CDN that the unmodified discord.py client talks to.

Point the client at it with the two URL settings discord.py has (nothing else of the client is replaced):

    async with FakeDiscord() as discord_fake:
        monkeypatch.setattr(discord.http.Route, "BASE", discord_fake.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(discord_fake.gateway_url))

Tests build a small world (guilds, channels, threads, members), then act as users: `post` a message (with attachments
served by the fake CDN), `slash` a command that the bot synced, `react` to a message, `join_guild`. Everything the bot
does over REST is recorded as what a user would see: `messages` (content after each edit, with timings), interactions
(callbacks, original response, followups) and `calls` (every request).

Where Discord has a rule that a bot can get wrong, the fake enforces it as Discord does: 2,000-character content,
no empty messages, the 3-second window and single acknowledgement of an interaction, the ephemeral flag of a deferred
response sticking to its first followup, Missing Permissions when the bot may not post in a channel, the per-channel
rate limit on posting and editing messages (with the headers and 429s discord.py paces itself by), commands that
exist only once synced, and a join (GUILD_CREATE without `unavailable`) told apart from a guild coming online.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from tests.fakes import serve_on_loopback

T = TypeVar("T")

# Permission bits (discord.com/developers/docs/topics/permissions).
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
EVERYONE = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY | ADD_REACTIONS
    | USE_APPLICATION_COMMANDS | SEND_MESSAGES_IN_THREADS
)

EPHEMERAL = 1 << 6
LOADING = 1 << 7
CONTENT_LIMIT = 2000
INTERACTION_WINDOW_S = 3.0

_ids = itertools.count(1)
_DISCORD_EPOCH_MS = 1420070400000


def snowflake() -> int:
    """A real-looking snowflake (timestamp in the high bits), unique within the process."""
    return ((int(time.time() * 1000) - _DISCORD_EPOCH_MS) << 22) | (next(_ids) & 0x3FFFFF)


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py compares the header to exactly 'application/json'; aiohttp's json_response would add a charset.
    return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"code": code, "message": message}, status)


# --- the world --------------------------------------------------------------------------------------------------------
@dataclass
class FakeUser:
    id: int
    name: str
    bot: bool = False
    moderator: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "username": self.name, "global_name": self.name, "discriminator": "0",
            "avatar": None, "bot": self.bot, "public_flags": 0,
        }


@dataclass
class FakeChannel:
    id: int
    guild_id: int
    name: str
    parent_id: int | None = None  # set for threads
    bot_can_send: bool = True
    position: int = 0

    @property
    def is_thread(self) -> bool:
        return self.parent_id is not None

    def payload(self, bot_id: int) -> dict[str, Any]:
        if self.is_thread:
            return {
                "id": str(self.id), "guild_id": str(self.guild_id), "type": 11, "name": self.name,
                "parent_id": str(self.parent_id), "owner_id": str(bot_id), "message_count": 0, "member_count": 1,
                "rate_limit_per_user": 0, "flags": 0,
                "thread_metadata": {
                    "archived": False, "auto_archive_duration": 1440, "archive_timestamp": _now_iso(), "locked": False,
                },
            }
        overwrites = []
        if not self.bot_can_send:
            overwrites.append({"id": str(bot_id), "type": 1, "allow": "0", "deny": str(SEND_MESSAGES)})
        return {
            "id": str(self.id), "guild_id": str(self.guild_id), "type": 0, "name": self.name,
            "position": self.position, "permission_overwrites": overwrites, "nsfw": False, "topic": None,
            "rate_limit_per_user": 0, "parent_id": None, "last_message_id": None,
        }


@dataclass
class FakeGuild:
    id: int
    name: str
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeUser] = field(default_factory=dict)
    moderator_role: int = field(default_factory=snowflake)
    bot_role: int = field(default_factory=snowflake)  # the role Discord makes for a bot when it joins
    joined: bool = True


@dataclass
class FakeMessage:
    """A message as users see it: `contents[0]` when posted, then one entry per edit (`times` alike)."""

    id: int
    channel_id: int
    guild_id: int
    author: FakeUser
    contents: list[str]
    times: list[float]
    reference_id: int | None = None
    mentions: list[FakeUser] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    interaction_id: int | None = None
    allowed_mentions: dict[str, Any] | None = None
    components: list[Any] = field(default_factory=list)
    embeds: list[Any] = field(default_factory=list)
    deleted: bool = False

    @property
    def content(self) -> str:
        return self.contents[-1]

    @property
    def edits(self) -> int:
        return len(self.contents) - 1

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


@dataclass
class FakeInteraction:
    id: int
    token: str
    user: FakeUser
    channel_id: int
    command: str
    created: float
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # requests Discord would have refused, with why

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def visible(self) -> list[FakeMessage]:
        """The original response (once it has content) and the followups, in order."""
        out = [self.original] if self.original is not None and not (self.original.flags & LOADING) else []
        return out + [m for m in self.followups if m is not self.original]


@dataclass(frozen=True)
class Upload:
    """An attachment a user posts. `declared_size` lets a test claim a size the CDN bytes don't have;
    `status` makes the CDN answer with that HTTP error instead of the bytes."""

    filename: str
    data: bytes
    content_type: str = "application/pdf"
    declared_size: int | None = None
    status: int = 200


@dataclass(frozen=True)
class RestCall:
    method: str
    path: str
    body: Any
    at: float


# --- the server -------------------------------------------------------------------------------------------------------
class FakeDiscord:
    """`message_rate=(n, seconds)`: n message creates/edits per channel per window, the window refilling at once when
    it ends, like Discord's per-channel bucket (about 5 per 5 s). The fake sends the X-RateLimit headers discord.py
    paces itself by, and a 429 with `retry_after` past the limit. Tests may shorten the window; None turns it off."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        bot_name: str = "paperbot",
        message_rate: tuple[int, float] | None = (5, 5.0),
    ) -> None:
        self.token = token
        self.message_rate = message_rate
        self._buckets: dict[int, tuple[float, int]] = {}  # channel -> (window start, requests in it)
        self.rate_limited = 0  # 429s answered
        self.bot = FakeUser(snowflake(), bot_name, bot=True)
        self.application_id = self.bot.id
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.commands: dict[str, dict[str, Any]] = {}  # name -> synced command (global)
        self.guild_commands: dict[int, dict[str, dict[str, Any]]] = {}
        self.calls: list[RestCall] = []
        self.unhandled: list[str] = []  # routes the fake does not know: a test may assert none
        self.cdn: dict[str, Upload] = {}
        self.cdn_downloads: list[str] = []
        self.identified = 0
        self._ws: web.WebSocketResponse | None = None
        self._seq = 0
        self._send_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{channel}/{attachment}/{filename}", self._cdn)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_ready(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    @property
    def connected(self) -> bool:
        """A client holds the gateway connection (identified and not yet closed)."""
        return self._ws is not None

    # --- building the world -------------------------------------------------------------------------------------------
    def add_guild(self, name: str, *, joined: bool = True) -> FakeGuild:
        """A guild the bot is in at READY; with `joined=False`, one it joins later through `join_guild`."""
        guild = FakeGuild(snowflake(), name, joined=joined)
        guild.members[self.bot.id] = self.bot
        self.guilds[guild.id] = guild
        return guild

    def add_channel(self, guild: FakeGuild, name: str, *, bot_can_send: bool = True) -> FakeChannel:
        channel = FakeChannel(snowflake(), guild.id, name, bot_can_send=bot_can_send, position=len(guild.channels))
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        return channel

    async def add_thread(self, parent: FakeChannel, name: str) -> FakeChannel:
        thread = FakeChannel(snowflake(), parent.guild_id, name, parent_id=parent.id)
        self.guilds[parent.guild_id].channels[thread.id] = thread
        self.channels[thread.id] = thread
        if self._ws is not None:
            await self.dispatch("THREAD_CREATE", {**thread.payload(self.bot.id), "newly_created": True})
        return thread

    def add_member(self, guild: FakeGuild, name: str, *, moderator: bool = False, bot: bool = False) -> FakeUser:
        user = FakeUser(snowflake(), name, bot=bot, moderator=moderator)
        guild.members[user.id] = user
        return user

    async def join_guild(self, guild: FakeGuild) -> None:
        """The bot is added to `guild` (made with `joined=False`): GUILD_CREATE without `unavailable`."""
        guild.joined = True
        await self.dispatch("GUILD_CREATE", self._guild_payload(guild, initial=False))

    # --- acting as users ----------------------------------------------------------------------------------------------
    async def post(
        self,
        channel: FakeChannel,
        author: FakeUser,
        content: str = "",
        *,
        attachments: Iterable[Upload] = (),
        reply_to: FakeMessage | None = None,
        ping_reply: bool = True,
    ) -> FakeMessage:
        """A user posts a message; `<@BOT_ID>` in `content` (see `mention`) mentions the bot."""
        message = FakeMessage(
            id=snowflake(), channel_id=channel.id, guild_id=channel.guild_id, author=author, contents=[content],
            times=[time.monotonic()], reference_id=reply_to.id if reply_to else None,
        )
        for upload in attachments:
            attachment_id = snowflake()
            path = f"/attachments/{channel.id}/{attachment_id}/{upload.filename}"
            self.cdn[path] = upload
            message.attachments.append({
                "id": str(attachment_id), "filename": upload.filename,
                "size": upload.declared_size if upload.declared_size is not None else len(upload.data),
                "url": self.base_url + path, "proxy_url": self.base_url + path, "content_type": upload.content_type,
            })
        message.mentions = self._mentioned(content, channel.guild_id)
        if reply_to is not None and ping_reply and reply_to.author not in message.mentions:
            message.mentions.append(reply_to.author)
        self.messages[message.id] = message
        await self.dispatch("MESSAGE_CREATE", self._message_payload(message))
        return message

    def mention(self, user: FakeUser | None = None) -> str:
        return f"<@{(user or self.bot).id}>"

    def mention_role(self, guild: FakeGuild) -> str:
        """A mention of the bot's own role (what users often pick from the @ menu instead of the bot)."""
        return f"<@&{guild.bot_role}>"

    async def slash(
        self, channel: FakeChannel, user: FakeUser, command: str, subcommand: str | None = None, **options: Any
    ) -> FakeInteraction:
        """A user runs a slash command the bot synced (a command it did not sync cannot be run, as on Discord)."""
        return await self._command(2, channel, user, command, subcommand, options, focused=None)

    async def autocomplete(
        self, channel: FakeChannel, user: FakeUser, command: str, subcommand: str | None, focused: str, typed: Any
    ) -> FakeInteraction:
        """A user types `typed` into option `focused`; the bot's choices arrive as a type-8 callback."""
        return await self._command(4, channel, user, command, subcommand, {focused: typed}, focused=focused)

    async def _command(
        self, kind: int, channel: FakeChannel, user: FakeUser, command: str, subcommand: str | None,
        options: dict[str, Any], focused: str | None,
    ) -> FakeInteraction:
        spec = self.commands.get(command) or self.guild_commands.get(channel.guild_id, {}).get(command)
        if spec is None:
            raise AssertionError(f"/{command} was never synced; synced: {sorted(self.commands)}")
        option_specs = spec.get("options", [])
        if subcommand is not None:
            sub = next((o for o in option_specs if o["name"] == subcommand and o["type"] == 1), None)
            if sub is None:
                raise AssertionError(f"/{command} has no subcommand {subcommand!r}")
            values = [{"name": subcommand, "type": 1,
                       "options": self._options(sub.get("options", []), options, focused)}]
        else:
            values = self._options(option_specs, options, focused)
        interaction = FakeInteraction(
            id=snowflake(), token=f"itoken-{snowflake()}", user=user, channel_id=channel.id,
            command=" ".join(filter(None, [command, subcommand])), created=time.monotonic(),
        )
        self.interactions[interaction.id] = interaction
        guild = self.guilds[channel.guild_id]
        permissions = self._permissions(guild, user, channel)
        await self.dispatch("INTERACTION_CREATE", {
            "id": str(interaction.id), "application_id": str(self.application_id), "type": kind,
            "token": interaction.token, "version": 1, "guild_id": str(guild.id), "channel_id": str(channel.id),
            "channel": {**channel.payload(self.bot.id), "permissions": str(permissions)},
            "member": {**self._member_payload(guild, user), "user": user.payload(), "permissions": str(permissions)},
            "data": {"id": spec["id"], "name": command, "type": 1, "options": values, "guild_id": str(guild.id)},
            "app_permissions": str(self._permissions(guild, self.bot, channel)), "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0, "attachment_size_limit": 10 * 1024 * 1024,
        })
        return interaction

    async def react(self, message: FakeMessage, user: FakeUser, emoji: str = "👍") -> None:
        guild = self.guilds[message.guild_id]
        await self.dispatch("MESSAGE_REACTION_ADD", {
            "user_id": str(user.id), "channel_id": str(message.channel_id), "message_id": str(message.id),
            "guild_id": str(guild.id), "member": {**self._member_payload(guild, user), "user": user.payload()},
            "emoji": {"id": None, "name": emoji}, "burst": False, "type": 0,
            "message_author_id": str(message.author.id),
        })

    # --- observing ----------------------------------------------------------------------------------------------------
    def bot_messages(self, channel: FakeChannel | None = None) -> list[FakeMessage]:
        return [
            m for m in self.messages.values()
            if m.author.id == self.bot.id and not m.deleted and (channel is None or m.channel_id == channel.id)
        ]

    def replies_to(self, message: FakeMessage) -> list[FakeMessage]:
        """The bot's messages replying to `message`, then the pieces that continue them (replies to those)."""
        out: list[FakeMessage] = []
        frontier = [message.id]
        while frontier:
            current = frontier.pop(0)
            for m in self.messages.values():
                if m.reference_id == current and m.author.id == self.bot.id and not m.deleted and m not in out:
                    out.append(m)
                    frontier.append(m.id)
        return out

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 30.0, what: str = "") -> T:
        """Wait until `predicate()` is truthy (re-checked after every request the fake serves); return its value."""
        async def _wait() -> T:
            async with self._changed:
                while not (value := predicate()):
                    # Woken by every request; the short timeout re-checks state that changed elsewhere.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.2)
                return value

        try:
            return await asyncio.wait_for(_wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}") from None

    # --- gateway -----------------------------------------------------------------------------------------------------
    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        if self._ws is None:
            raise RuntimeError("no client connected to the fake gateway")
        async with self._send_lock:
            self._seq += 1
            await self._ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            op = payload.get("op")
            if op == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:  # identify
                if payload["d"].get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                self._ws = ws
                self.identified += 1
                await self._send_ready()
            elif op == 6:  # resume: sessions are not kept, ask for a fresh identify
                await ws.send_str(json.dumps({"op": 9, "d": False}))
        if self._ws is ws:
            self._ws = None
        return ws

    async def _send_ready(self) -> None:
        await self.dispatch("READY", {
            "v": 10, "user": self.bot.payload(), "session_id": f"session-{snowflake()}",
            "resume_gateway_url": self.gateway_url,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in self.guilds.values() if g.joined],
            "application": {"id": str(self.application_id), "flags": 0}, "private_channels": [], "relationships": [],
        })
        for guild in [g for g in self.guilds.values() if g.joined]:
            await self.dispatch("GUILD_CREATE", self._guild_payload(guild, initial=True))
        self._ready.set()

    # --- REST -------------------------------------------------------------------------------------------------------
    async def _cdn(self, request: web.Request) -> web.Response:
        upload = self.cdn.get(request.path)
        self.cdn_downloads.append(request.path)
        await self._notify()
        if upload is None:
            return web.Response(status=404, text="not found")
        if upload.status != 200:
            return web.Response(status=upload.status, text="CDN failure")
        return web.Response(body=upload.data, content_type=upload.content_type)

    async def _rest(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {self.token}" and not request.path.startswith(
            ("/api/v10/webhooks/", "/api/v10/interactions/")
        ):
            return _error(401, 0, "401: Unauthorized")
        body = await self._read_body(request)
        path = request.path.removeprefix("/api/v10")
        self.calls.append(RestCall(request.method, path, body, time.monotonic()))
        try:
            for method, pattern, handler in self._routes:
                if method == request.method and (match := re.fullmatch(pattern, path)):
                    bucket = self._message_bucket(request.method, path)
                    if bucket is not None and (limited := self._take(bucket)) is not None:
                        return limited
                    response = await handler(self, request, body, *match.groups())
                    if bucket is not None:
                        response.headers.update(self._rate_headers(bucket))
                    return response
            self.unhandled.append(f"{request.method} {path}")
            return _error(404, 0, "404: Not Found")
        finally:
            await self._notify()

    # --- rate limits --------------------------------------------------------------------------------------------------
    def _message_bucket(self, method: str, path: str) -> int | None:
        if self.message_rate is None or method not in ("POST", "PATCH"):
            return None
        match = re.fullmatch(r"/channels/(\d+)/messages(?:/\d+)?", path)
        return int(match.group(1)) if match else None

    def _window(self, bucket: int) -> tuple[float, int]:
        """(seconds until the bucket resets, requests left): a fixed window that refills at once, as Discord's."""
        assert self.message_rate is not None
        limit, window = self.message_rate
        now = time.monotonic()
        started, used = self._buckets.get(bucket, (now, 0))
        if now - started >= window:
            started, used = now, 0
        self._buckets[bucket] = (started, used)
        return started + window - now, limit - used

    def _take(self, bucket: int) -> web.Response | None:
        reset_after, left = self._window(bucket)
        if left <= 0:
            self.rate_limited += 1
            retry_after = round(reset_after, 3)
            body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
            response = _json(body, 429)
            # discord.py treats a 429 without `Via` as a Cloudflare ban.
            response.headers.update(self._rate_headers(bucket))
            response.headers.update({"Retry-After": str(retry_after), "Via": "1.1 google"})
            return response
        started, used = self._buckets[bucket]
        self._buckets[bucket] = (started, used + 1)
        return None

    def _rate_headers(self, bucket: int) -> dict[str, str]:
        assert self.message_rate is not None
        reset_after, left = self._window(bucket)
        return {
            "X-RateLimit-Limit": str(self.message_rate[0]), "X-RateLimit-Remaining": str(max(0, left)),
            "X-RateLimit-Reset-After": f"{max(reset_after, 0.001):.3f}", "X-RateLimit-Bucket": "channel-messages",
            "X-RateLimit-Reset": f"{time.time() + max(reset_after, 0.001):.3f}",
        }

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @staticmethod
    async def _read_body(request: web.Request) -> Any:
        if request.content_type == "application/json":
            return await request.json()
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            body = json.loads(form["payload_json"]) if "payload_json" in form else {}
            body["_files"] = [name for name in form if name.startswith("files[")]
            return body
        return None

    async def _get_me(self, request: web.Request, body: Any) -> web.Response:
        return _json(self.bot.payload())

    async def _get_application(self, request: web.Request, body: Any) -> web.Response:
        return _json({
            "id": str(self.application_id), "name": self.bot.name, "icon": None, "description": "",
            "rpc_origins": [], "bot_public": True, "bot_require_code_grant": False, "owner": self.bot.payload(),
            "summary": "", "verify_key": "0" * 64, "flags": 0, "team": None,
        })

    async def _put_commands(
        self, request: web.Request, body: Any, app_id: str, guild_id: str | None = None
    ) -> web.Response:
        stored = []
        for command in body:
            record = {
                **command, "id": str(snowflake()), "application_id": app_id, "version": str(snowflake()),
                "type": command.get("type", 1),
            }
            if guild_id is not None:
                record["guild_id"] = guild_id
            stored.append(record)
        target = self.commands if guild_id is None else self.guild_commands.setdefault(int(guild_id), {})
        target.clear()
        target.update({c["name"]: c for c in stored})
        return _json(stored)

    async def _create_message(self, request: web.Request, body: Any, channel_id: str) -> web.Response:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if not self._can_send(channel):
            return _error(403, 50013, "Missing Permissions")
        if (problem := self._check_content(body)) is not None:
            return problem
        reference = (body.get("message_reference") or {}).get("message_id")
        if reference is not None and int(reference) not in self.messages:
            return _error(400, 50035, "Invalid Form Body: Unknown message")
        message = FakeMessage(
            id=snowflake(), channel_id=channel.id, guild_id=channel.guild_id, author=self.bot,
            contents=[body.get("content") or ""], times=[time.monotonic()],
            reference_id=int(reference) if reference else None, flags=int(body.get("flags") or 0),
            allowed_mentions=body.get("allowed_mentions"), components=body.get("components") or [],
            embeds=body.get("embeds") or [],
        )
        self.messages[message.id] = message
        payload = self._message_payload(message)
        await self.dispatch("MESSAGE_CREATE", payload)
        return _json(payload)

    async def _edit_message(self, request: web.Request, body: Any, channel_id: str, message_id: str) -> web.Response:
        message = self.messages.get(int(message_id))
        if message is None or message.deleted or message.channel_id != int(channel_id):
            return _error(404, 10008, "Unknown Message")
        if message.author.id != self.bot.id:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        return await self._apply_edit(message, body)

    async def _apply_edit(self, message: FakeMessage, body: Any, *, dispatch: bool = True) -> web.Response:
        if "content" in body or "embeds" in body:
            merged = {"content": body.get("content", message.content), "embeds": body.get("embeds", message.embeds)}
            if (problem := self._check_content(merged)) is not None:
                return problem
        message.contents.append(body["content"] if body.get("content") is not None else message.content)
        message.times.append(time.monotonic())
        if "embeds" in body:
            message.embeds = body["embeds"] or []
        if "components" in body:
            message.components = body["components"] or []
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        message.flags &= ~LOADING
        payload = self._message_payload(message)
        if dispatch and not message.ephemeral:
            await self.dispatch("MESSAGE_UPDATE", payload)
        return _json(payload)

    async def _get_message(self, request: web.Request, body: Any, channel_id: str, message_id: str) -> web.Response:
        message = self.messages.get(int(message_id))
        if message is None or message.deleted or message.channel_id != int(channel_id) or message.ephemeral:
            return _error(404, 10008, "Unknown Message")
        return _json(self._message_payload(message))

    async def _delete_message(self, request: web.Request, body: Any, channel_id: str, message_id: str) -> web.Response:
        message = self.messages.get(int(message_id))
        if message is None or message.deleted:
            return _error(404, 10008, "Unknown Message")
        message.deleted = True
        deleted = {"id": message_id, "channel_id": channel_id, "guild_id": str(message.guild_id)}
        await self.dispatch("MESSAGE_DELETE", deleted)
        return web.Response(status=204)

    async def _get_channel(self, request: web.Request, body: Any, channel_id: str) -> web.Response:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        return _json(channel.payload(self.bot.id))

    async def _no_content(self, request: web.Request, body: Any, *args: str) -> web.Response:
        return web.Response(status=204)

    # --- interactions -------------------------------------------------------------------------------------------------
    async def _callback(self, request: web.Request, body: Any, interaction_id: str, token: str) -> web.Response:
        interaction = self.interactions.get(int(interaction_id))
        if interaction is None or interaction.token != token:
            return _error(404, 10062, "Unknown interaction")
        if time.monotonic() - interaction.created > INTERACTION_WINDOW_S:
            interaction.errors.append("callback after the 3-second window")
            return _error(404, 10062, "Unknown interaction")
        if interaction.acknowledged:
            interaction.errors.append("acknowledged twice")
            return _error(400, 40060, "Interaction has already been acknowledged.")
        interaction.callbacks.append(body)
        kind, data = body["type"], body.get("data") or {}
        flags = int(data.get("flags") or 0)
        message: FakeMessage | None = None
        if kind in (4, 5):
            if kind == 4 and (problem := self._check_content(data)) is not None:
                interaction.callbacks.pop()
                return problem
            loading = LOADING if kind == 5 else 0
            message = self._interaction_message(interaction, data.get("content") or "", flags | loading)
            interaction.original = message
        result: dict[str, Any] = {
            "interaction": {
                "id": interaction_id, "type": 2, "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
                **({"response_message_id": str(message.id)} if message else {}),
            },
            "resource": {"type": kind, **({"message": self._message_payload(message)} if message else {})},
        }
        if message is not None and not message.ephemeral:
            await self.dispatch("MESSAGE_CREATE", self._message_payload(message))
        return _json(result)

    def _interaction_by_token(self, app_id: str, token: str) -> FakeInteraction | None:
        if int(app_id) != self.application_id:
            return None
        return next((i for i in self.interactions.values() if i.token == token), None)

    async def _followup(self, request: web.Request, body: Any, app_id: str, token: str) -> web.Response:
        interaction = self._interaction_by_token(app_id, token)
        if interaction is None or not interaction.acknowledged:
            return _error(404, 10015, "Unknown Webhook")
        if (problem := self._check_content(body)) is not None:
            return problem
        original = interaction.original
        if original is not None and original.flags & LOADING:
            # Discord: a followup while the deferred response is still loading *is* the response; it keeps the
            # deferral's ephemeral flag whatever the followup asks for.
            interaction.followups.append(original)
            return await self._apply_edit(original, body)
        message = self._interaction_message(interaction, body.get("content") or "", int(body.get("flags") or 0))
        interaction.followups.append(message)
        if not message.ephemeral:
            await self.dispatch("MESSAGE_CREATE", self._message_payload(message))
        return _json(self._message_payload(message))

    async def _webhook_message(
        self, request: web.Request, body: Any, app_id: str, token: str, message_ref: str
    ) -> web.Response:
        interaction = self._interaction_by_token(app_id, token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        if message_ref == "@original":
            message = interaction.original
        else:
            message = next((m for m in interaction.followups if m.id == int(message_ref)), None)
        if message is None or message.deleted:
            return _error(404, 10008, "Unknown Message")
        if request.method == "GET":
            return _json(self._message_payload(message))
        if request.method == "DELETE":
            message.deleted = True
            return web.Response(status=204)
        return await self._apply_edit(message, body)

    def _interaction_message(self, interaction: FakeInteraction, content: str, flags: int) -> FakeMessage:
        channel = self.channels[interaction.channel_id]
        message = FakeMessage(
            id=snowflake(), channel_id=channel.id, guild_id=channel.guild_id, author=self.bot, contents=[content],
            times=[time.monotonic()], flags=flags, interaction_id=interaction.id,
        )
        self.messages[message.id] = message
        return message

    # --- payloads and rules -----------------------------------------------------------------------------------------
    @staticmethod
    def _check_content(body: dict[str, Any]) -> web.Response | None:
        content = body.get("content") or ""
        if len(content) > CONTENT_LIMIT:
            return _json({
                "code": 50035, "message": "Invalid Form Body",
                "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                                    "message": "Must be 2000 or fewer in length."}]}},
            }, 400)
        if not content.strip() and not body.get("embeds") and not body.get("components") and not body.get("_files"):
            return _error(400, 50006, "Cannot send an empty message")
        return None

    def _can_send(self, channel: FakeChannel) -> bool:
        guild = self.guilds[channel.guild_id]
        bits = self._permissions(guild, self.bot, channel)
        needed = SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES
        return bool(bits & VIEW_CHANNEL and bits & needed)

    def _permissions(self, guild: FakeGuild, user: FakeUser, channel: FakeChannel) -> int:
        bits = EVERYONE | (MANAGE_MESSAGES if user.moderator else 0)
        base = self.channels[channel.parent_id] if channel.parent_id else channel
        if user.id == self.bot.id and not base.bot_can_send:
            bits &= ~SEND_MESSAGES
        return bits

    def _member_payload(self, guild: FakeGuild, user: FakeUser) -> dict[str, Any]:
        roles = [guild.moderator_role] if user.moderator else []
        if user.id == self.bot.id:
            roles.append(guild.bot_role)
        return {
            "roles": [str(r) for r in roles], "joined_at": _now_iso(), "deaf": False, "mute": False, "flags": 0,
            "nick": None,
        }

    def _guild_payload(self, guild: FakeGuild, *, initial: bool) -> dict[str, Any]:
        channels = [c for c in guild.channels.values() if not c.is_thread]
        threads = [c for c in guild.channels.values() if c.is_thread]
        payload: dict[str, Any] = {
            "id": str(guild.id), "name": guild.name, "owner_id": str(snowflake()), "icon": None, "splash": None,
            "discovery_splash": None, "features": [], "emojis": [], "stickers": [], "afk_channel_id": None,
            "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "premium_tier": 0, "preferred_locale": "en-US",
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "description": None, "banner": None, "nsfw_level": 0, "large": False, "member_count": len(guild.members),
            "joined_at": _now_iso(), "voice_states": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
            "roles": [
                {"id": str(guild.id), "name": "@everyone", "permissions": str(EVERYONE), "position": 0, "color": 0,
                 "hoist": False, "managed": False, "mentionable": False, "flags": 0},
                {"id": str(guild.moderator_role), "name": "Moderator", "permissions": str(MANAGE_MESSAGES),
                 "position": 1, "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0},
                {"id": str(guild.bot_role), "name": self.bot.name, "permissions": "0", "position": 2, "color": 0,
                 "hoist": False, "managed": True, "mentionable": True, "flags": 0,
                 "tags": {"bot_id": str(self.bot.id)}},
            ],
            "channels": [c.payload(self.bot.id) for c in channels],
            "threads": [c.payload(self.bot.id) for c in threads],
            "members": [{**self._member_payload(guild, u), "user": u.payload()} for u in guild.members.values()],
        }
        if initial:
            payload["unavailable"] = False  # a guild from READY becoming available, not a join
        return payload

    def _mentioned(self, content: str, guild_id: int) -> list[FakeUser]:
        guild = self.guilds[guild_id]
        found = []
        for raw in re.findall(r"<@!?(\d+)>", content):
            user = guild.members.get(int(raw))
            if user is not None and user not in found:
                found.append(user)
        return found

    def _message_payload(self, message: FakeMessage, *, nested: bool = True) -> dict[str, Any]:
        guild = self.guilds[message.guild_id]
        payload: dict[str, Any] = {
            "id": str(message.id), "channel_id": str(message.channel_id), "guild_id": str(message.guild_id),
            "author": message.author.payload(), "content": message.content, "timestamp": _now_iso(),
            "edited_timestamp": _now_iso() if message.edits else None, "tts": False, "mention_everyone": False,
            "mentions": [{**u.payload(), "member": self._member_payload(guild, u)} for u in message.mentions],
            "mention_roles": re.findall(r"<@&(\d+)>", message.content), "attachments": message.attachments,
            "embeds": message.embeds, "pinned": False,
            "type": 19 if message.reference_id else 0, "flags": message.flags, "components": message.components,
        }
        if message.author.id != self.bot.id or message.interaction_id is None:
            payload["member"] = self._member_payload(guild, message.author)
        if message.interaction_id is not None:
            payload["webhook_id"] = str(self.application_id)
            payload["application_id"] = str(self.application_id)
        if message.reference_id is not None:
            payload["message_reference"] = {
                "type": 0, "message_id": str(message.reference_id), "channel_id": str(message.channel_id),
                "guild_id": str(message.guild_id),
            }
            referenced = self.messages.get(message.reference_id)
            if nested and referenced is not None and not referenced.deleted:
                payload["referenced_message"] = self._message_payload(referenced, nested=False)
        return payload

    @staticmethod
    def _options(specs: list[dict[str, Any]], values: dict[str, Any], focused: str | None) -> list[dict[str, Any]]:
        by_name = {s["name"]: s for s in specs}
        unknown = set(values) - set(by_name)
        if unknown:
            raise AssertionError(f"unknown options {sorted(unknown)}; the command has {sorted(by_name)}")
        if focused is None:
            missing = [s["name"] for s in specs if s.get("required") and s["name"] not in values]
            if missing:
                raise AssertionError(f"missing required options {missing}")
        elif not by_name[focused].get("autocomplete"):
            raise AssertionError(f"option {focused!r} was not synced with autocomplete")
        out = []
        for name, value in values.items():
            option = {"name": name, "type": by_name[name]["type"], "value": value}
            if name == focused:
                option["focused"] = True
            out.append(option)
        return out

    _routes: list[tuple[str, str, Callable[..., Any]]] = [
        ("GET", r"/users/@me", _get_me),
        ("GET", r"/oauth2/applications/@me", _get_application),
        ("PUT", r"/applications/(\d+)/commands", _put_commands),
        ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", _put_commands),
        ("POST", r"/channels/(\d+)/messages", _create_message),
        ("GET", r"/channels/(\d+)/messages/(\d+)", _get_message),
        ("PATCH", r"/channels/(\d+)/messages/(\d+)", _edit_message),
        ("DELETE", r"/channels/(\d+)/messages/(\d+)", _delete_message),
        ("GET", r"/channels/(\d+)", _get_channel),
        ("POST", r"/channels/(\d+)/typing", _no_content),
        ("PUT", r"/channels/(\d+)/messages/(\d+)/reactions/([^/]+)/@me", _no_content),
        ("POST", r"/interactions/(\d+)/([^/]+)/callback", _callback),
        ("POST", r"/webhooks/(\d+)/([^/]+)", _followup),
        ("GET", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", _webhook_message),
        ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", _webhook_message),
        ("DELETE", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", _webhook_message),
    ]
