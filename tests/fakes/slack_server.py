"""A loopback Slack for the real, unmodified slack-bolt / slack-sdk clients.

    async with SlackStandIn(users={"U1": {"name": "ada", "is_admin": True}}) as slack:
        client = AsyncWebClient(token=slack.BOT_TOKEN, base_url=slack.api_url)   # trailing slash matters
        ...
        await slack.send_event(slack.user_message("C1", "U1", "hello"), via="socket")

What it serves:
- the Web API under `/api/METHOD` (auth.test, apps.connections.open, chat.postMessage, chat.update, chat.delete,
  users.info, conversations.replies, files.info), checking tokens and Block Kit limits the way Slack does, and
  recording every call in `calls` (tests assert what users would see from it);
- Slack's native streaming (chat.startStream / appendStream / stopStream) and the `markdown` block, each only when
  switched on (`streaming`, `markdown_blocks`): off, they answer `unknown_method` and `invalid_blocks` as a
  workspace without them does;
- private file downloads under `/files-pri/…`: the bytes with `Authorization: Bearer <bot token>`, Slack's HTML
  sign-in page without it;
- Socket Mode: `apps.connections.open` hands out `ws://127.0.0.1:PORT/socket`; the fake sends `hello`, then pushes
  envelopes (`send_event` / `send_command` with via="socket") and waits for the client's acknowledgement;
- HTTP mode: `send_event` / `send_command` with via="http" POST signed requests (v0 HMAC-SHA256) to the bot's endpoint;
- `response_url`s under `/response/ID`, recorded in `responses`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.fakes import serve_on_loopback

SECTION_CHARS = 3000
MESSAGE_BLOCKS = 50
BLOCKS_TOTAL_CHARS = 13_000  # where Slack starts answering msg_blocks_too_long (observed, not documented)
TEXT_CHARS = 40_000
MARKDOWN_CHARS = 12_000  # a markdown block's text, and one streaming call's markdown_text


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    token: str
    at: float = field(default_factory=time.monotonic)


class SlackStandIn:
    TEAM = "T0LAB"
    BOT_USER = "U0BOT"
    BOT_ID = "B0BOT"
    APP_ID = "A0PAPER"
    BOT_TOKEN = "xoxb-fake-bot"
    APP_TOKEN = "xapp-1-test-app-token"
    SIGNING_SECRET = "test-signing-secret"

    def __init__(self, users: dict[str, dict[str, Any]] | None = None) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        for user_id, info in (users or {}).items():
            self.add_user(user_id, **info)
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) → message as Slack stores it
        self.files: dict[str, dict[str, Any]] = {}
        self._file_bytes: dict[str, bytes] = {}
        self.downloads: list[tuple[str, str]] = []  # (path, Authorization header)
        self.responses: list[tuple[str, dict[str, Any]]] = []  # (response id, body) posted to response_urls
        self.acks: dict[str, dict[str, Any]] = {}  # envelope id → the client's acknowledgement
        self.rate_limited: dict[str, int] = {}  # method → how many more calls get HTTP 429
        self.not_in_channel: set[str] = set()
        self.streaming = False  # chat.startStream / appendStream / stopStream
        self.markdown_blocks = False  # blocks of type `markdown`
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Event()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    async def __aenter__(self) -> SlackStandIn:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/files-pri/{path:.+}", self._file)
        app.router.add_post("/response/{id}", self._response)
        self._runner, self.port = await serve_on_loopback(app)
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- test-side helpers -------------------------------------------------------------------------------------------
    def add_user(self, user_id: str, name: str = "", is_admin: bool = False, is_owner: bool = False) -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": self.TEAM,
            "name": name or user_id.lower(),
            "real_name": (name or user_id).title(),
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_bot": False,
            "profile": {"display_name": name or user_id.lower()},
        }

    def add_file(self, name: str, data: bytes, filetype: str = "pdf") -> dict[str, Any]:
        """A file as Slack describes it in a file_share message (url_private needs the bot token to download)."""
        file_id = f"F{next(self._ids):08d}"
        path = f"{self.TEAM}-{file_id}/{name}"
        self._file_bytes[path] = data
        info = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": "application/pdf" if filetype == "pdf" else "application/octet-stream",
            "filetype": filetype,
            "size": len(data),
            "mode": "hosted",
            "is_external": False,
            "url_private": f"{self.base_url}/files-pri/{path}",
            "url_private_download": f"{self.base_url}/files-pri/{path}?download=1",
        }
        self.files[file_id] = info
        return info

    def delete_file(self, file_id: str) -> None:
        """The file is gone (deleted by its owner): downloads answer 404, files.info file_not_found."""
        info = self.files.pop(file_id)
        self._file_bytes.pop(info["url_private"].split("/files-pri/", 1)[1], None)

    def next_ts(self) -> str:
        n = next(self._ts)
        return f"{1_700_000_000 + n}.{n:06d}"

    def user_message(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
        partial_files: bool = False,
    ) -> dict[str, Any]:
        """Store a person's message as Slack would and return its `message` event."""
        ts = self.next_ts()
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "team": self.TEAM,
            "channel_type": "channel",
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
            parent = self.messages.get((channel, thread_ts))
            if parent:
                event["parent_user_id"] = parent.get("user")
        if files:
            event["subtype"] = "file_share"
            # Slack sometimes sends only ids (`file_access: check_file_info`); the client must call files.info.
            event["files"] = (
                [{"id": f["id"], "file_access": "check_file_info"} for f in files] if partial_files else files
            )
        self.messages[(channel, ts)] = {k: v for k, v in event.items() if k not in ("event_ts", "channel_type")}
        return event

    def mention(self, channel: str, user: str, question: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """'@paperbot question': Slack delivers both a `message` and an `app_mention` event for it."""
        message = self.user_message(channel, user, f"<@{self.BOT_USER}> {question}", thread_ts=thread_ts)
        mention = {
            "type": "app_mention",
            "user": user,
            "text": message["text"],
            "ts": message["ts"],
            "channel": channel,
            "event_ts": message["ts"],
            "team": self.TEAM,
        }
        if thread_ts:
            mention["thread_ts"] = thread_ts
        return [message, mention]

    def reaction(self, channel: str, user: str, ts: str, name: str) -> dict[str, Any]:
        item_user = self.messages.get((channel, ts), {}).get("user")
        return {
            "type": "reaction_added",
            "user": user,
            "reaction": name,
            "item_user": item_user,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "event_ts": self.next_ts(),
        }

    def member_joined(self, channel: str, user: str) -> dict[str, Any]:
        return {
            "type": "member_joined_channel",
            "user": user,
            "channel": channel,
            "channel_type": "C",
            "team": self.TEAM,
        }

    def event_body(self, event: dict[str, Any]) -> dict[str, Any]:
        return {
            "token": "legacy-verification-token",
            "team_id": self.TEAM,
            "api_app_id": self.APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._ids):010d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.TEAM,
                    "user_id": self.BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    def command_payload(self, command: str, text: str, channel: str, user: str) -> dict[str, str]:
        response_id = f"R{next(self._ids):08d}"
        return {
            "token": "legacy-verification-token",
            "team_id": self.TEAM,
            "team_domain": "lab",
            "channel_id": channel,
            "channel_name": channel.lower(),
            "user_id": user,
            "user_name": self.users.get(user, {}).get("name", user),
            "command": command,
            "text": text,
            "api_app_id": self.APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"{self.base_url}/response/{response_id}",
            "trigger_id": f"{next(self._ids)}.trigger",
        }

    async def send_event(self, event: dict[str, Any], via: str, http_url: str | None = None) -> Any:
        """Deliver one Events API event; returns the Socket Mode ack, or the HTTP status of the signed request."""
        body = self.event_body(event)
        if via == "socket":
            return await self._push("events_api", body, accepts_response_payload=False)
        return await self.post_signed(http_url or "", json.dumps(body), "application/json")

    async def send_command(
        self, command: str, text: str, channel: str, user: str, via: str, http_url: str | None = None
    ) -> str:
        """Invoke a slash command; returns its response id (see `responses_to`)."""
        payload = self.command_payload(command, text, channel, user)
        if via == "socket":
            await self._push("slash_commands", payload, accepts_response_payload=True)
        else:
            status = await self.post_signed(http_url or "", urlencode(payload), "application/x-www-form-urlencoded")
            assert status == 200, f"slash command answered HTTP {status}"
        return payload["response_url"].rsplit("/", 1)[1]

    async def post_signed(
        self, url: str, body: str, content_type: str, secret: str | None = None, timestamp: int | None = None
    ) -> int:
        """POST `body` the way Slack signs requests: v0=HMAC-SHA256(secret, f'v0:{timestamp}:{body}')."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        digest = hmac.new((secret or self.SIGNING_SECRET).encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": "v0=" + digest.hexdigest(),
        }
        assert self._http is not None
        async with self._http.post(url, data=body.encode(), headers=headers) as response:
            await response.read()
            return response.status

    @property
    def open_connections(self) -> int:
        """Socket Mode websockets now open (events go to the newest)."""
        return len([ws for ws in self._sockets if not ws.closed])

    def api(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The bot's messages in a thread, oldest first, as they look now."""
        return sorted(
            (
                m
                for (ch, _), m in self.messages.items()
                if ch == channel and m.get("thread_ts") == thread_ts and m.get("user") == self.BOT_USER
            ),
            key=lambda m: float(m["ts"]),
        )

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """A thread as conversations.replies returns it (with metadata)."""
        return self._m_conversations_replies({"channel": channel, "ts": thread_ts, "include_all_metadata": "1"})[
            "messages"
        ]

    def responses_to(self, response_id: str) -> list[dict[str, Any]]:
        return [body for rid, body in self.responses if rid == response_id]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked after every recorded call); returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))

    # --- Socket Mode -------------------------------------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {"host": "applink-loopback", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": self.APP_ID},
                }
            )
        )
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                envelope_id = data.get("envelope_id")
                if envelope_id:
                    self.acks[envelope_id] = data
                    waiter = self._ack_waiters.pop(envelope_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(data)
                    self._touch()
        finally:
            self._sockets.remove(ws)
        return ws

    async def _push(self, kind: str, payload: dict[str, Any], accepts_response_payload: bool) -> dict[str, Any]:
        live = [ws for ws in self._sockets if not ws.closed]
        assert live, "no Socket Mode connection is open"
        envelope_id = str(uuid.uuid4())
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ack_waiters[envelope_id] = waiter
        await live[-1].send_str(
            json.dumps(
                {
                    "envelope_id": envelope_id,
                    "payload": payload,
                    "type": kind,
                    "accepts_response_payload": accepts_response_payload,
                    "retry_attempt": 0,
                    "retry_reason": "",
                }
            )
        )
        # Slack expects the acknowledgement within 3 seconds, or it retries the delivery.
        return await asyncio.wait_for(waiter, timeout=3.0)

    # --- Web API -----------------------------------------------------------------------------------------------------
    def _touch(self) -> None:
        self._changed.set()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else str(args.pop("token", ""))
        self.calls.append(ApiCall(method, args, token))
        self._touch()
        if self.rate_limited.get(method, 0) > 0:
            self.rate_limited[method] -= 1
            return _json({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "0"})
        expected = self.APP_TOKEN if method == "apps.connections.open" else self.BOT_TOKEN
        if token != expected:
            return _json({"ok": False, "error": "not_authed" if not token else "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return _json({"ok": False, "error": "unknown_method"})
        return _json(handler(args))

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://lab.slack.com/",
            "team": "Lab",
            "user": "paperbot",
            "team_id": self.TEAM,
            "user_id": self.BOT_USER,
            "bot_id": self.BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket={uuid.uuid4()}&app_id={self.APP_ID}"}

    def _check_message(self, args: dict[str, Any]) -> str | None:
        """Slack's own validation of a message payload: the error code it answers, or None."""
        channel = args.get("channel")
        if not channel:
            return "channel_not_found"
        if channel in self.not_in_channel:
            return "not_in_channel"
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        text = args.get("text") or ""
        if not text and not blocks:
            return "no_text"
        if len(text) > TEXT_CHARS:
            return "msg_too_long"
        if blocks:
            if len(blocks) > MESSAGE_BLOCKS:
                return "invalid_blocks"
            total = 0
            for block in blocks:
                if block.get("type") == "markdown":
                    if not self.markdown_blocks or not 0 < len(block.get("text", "")) <= MARKDOWN_CHARS:
                        return "invalid_blocks"
                    total += len(block["text"])
                    continue
                texts = [block.get("text", {}).get("text", "")] if "text" in block else []
                texts += [e.get("text", "") for e in block.get("elements", [])]
                if block.get("type") == "context" and len(block.get("elements", [])) > 10:
                    return "invalid_blocks"
                if any(len(t) > SECTION_CHARS for t in texts):
                    return "invalid_blocks"
                total += sum(map(len, texts))
            if total > BLOCKS_TOTAL_CHARS:
                return "msg_blocks_too_long"
        return None

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        error = self._check_message(args)
        if error:
            return {"ok": False, "error": error}
        ts = self.next_ts()
        message = {
            "type": "message",
            "user": self.BOT_USER,
            "bot_id": self.BOT_ID,
            "app_id": self.APP_ID,
            "channel": args["channel"],
            "text": args.get("text", ""),
            "blocks": _blocks(args),
            "ts": ts,
            "edits": [],
        }
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        if args.get("metadata"):
            message["metadata"] = args["metadata"]
        self.messages[(args["channel"], ts)] = message
        return {"ok": True, "channel": args["channel"], "ts": ts, "message": _public(message)}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        error = self._check_message(args)
        if error:
            return {"ok": False, "error": error}
        message = self.messages.get((args["channel"], args.get("ts", "")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message.get("user") != self.BOT_USER:
            return {"ok": False, "error": "cant_update_message"}
        message["edits"].append({"text": message["text"], "blocks": message["blocks"], "at": time.monotonic()})
        message["text"] = args.get("text", "")
        message["blocks"] = _blocks(args)
        if args.get("metadata"):
            message["metadata"] = args["metadata"]
        return {"ok": True, "channel": args["channel"], "ts": message["ts"], "text": message["text"]}

    def _m_chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get((args.get("channel", ""), args.get("ts", "")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message.get("user") != self.BOT_USER:
            return {"ok": False, "error": "cant_delete_message"}
        del self.messages[(message["channel"], message["ts"])]
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    # Native streaming: a message in a thread that grows by appended Markdown, then is finished with blocks.
    def _m_chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.streaming:
            return {"ok": False, "error": "unknown_method"}
        channel, thread_ts = args.get("channel", ""), args.get("thread_ts")
        if channel in self.not_in_channel:
            return {"ok": False, "error": "not_in_channel"}
        if not thread_ts or (channel, thread_ts) not in self.messages:
            return {"ok": False, "error": "invalid_arguments"}  # streams are replies in a thread
        if not args.get("recipient_user_id") or not args.get("recipient_team_id"):
            return {"ok": False, "error": "invalid_arguments"}  # required when streaming to channels
        text = _stream_text(args)
        if len(text) > MARKDOWN_CHARS:
            return {"ok": False, "error": "msg_too_long"}
        ts = self.next_ts()
        self.messages[(channel, ts)] = {
            "type": "message",
            "user": self.BOT_USER,
            "bot_id": self.BOT_ID,
            "app_id": self.APP_ID,
            "channel": channel,
            "text": text,
            "blocks": [],
            "ts": ts,
            "thread_ts": thread_ts,
            "edits": [],
            "appends": [text] if text else [],
            "streaming": True,
        }
        return {"ok": True, "channel": channel, "ts": ts}

    def _streaming_message(self, args: dict[str, Any]) -> dict[str, Any] | str:
        if not self.streaming:
            return "unknown_method"
        message = self.messages.get((args.get("channel", ""), args.get("ts", "")))
        if message is None:
            return "message_not_found"
        if not message.get("streaming"):
            return "message_not_in_streaming_state"
        if len(_stream_text(args)) > MARKDOWN_CHARS:
            return "msg_too_long"
        return message

    def _m_chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming_message(args)
        if isinstance(message, str):
            return {"ok": False, "error": message}
        text = _stream_text(args)
        message["text"] += text
        message["appends"].append(text)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    def _m_chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming_message(args)
        if isinstance(message, str):
            return {"ok": False, "error": message}
        if args.get("blocks"):
            error = self._check_message({"channel": message["channel"], "text": message["text"], **args})
            if error:
                return {"ok": False, "error": error}
        text = _stream_text(args)
        message["text"] += text
        if text:
            message["appends"].append(text)
        message["blocks"] = _blocks(args)
        if args.get("metadata"):
            metadata = args["metadata"]
            message["metadata"] = json.loads(metadata) if isinstance(metadata, str) else metadata
        message["streaming"] = False
        return {"ok": True, "channel": message["channel"], "ts": message["ts"], "message": _public(message)}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(args.get("user", ""))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel", ""), args.get("ts", "")
        if (channel, ts) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        found = [
            _public(m, with_metadata)
            for (ch, _), m in self.messages.items()
            if ch == channel and (m["ts"] == ts or m.get("thread_ts") == ts)
        ]
        found.sort(key=lambda m: float(m["ts"]))
        return {"ok": True, "messages": found, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _m_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(args.get("file", ""))
        return {"ok": True, "file": file} if file else {"ok": False, "error": "file_not_found"}

    # --- files and response_url --------------------------------------------------------------------------------------
    async def _file(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.downloads.append((request.path, auth))
        self._touch()
        data = self._file_bytes.get(request.match_info["path"])
        if auth != f"Bearer {self.BOT_TOKEN}":
            # What Slack really does without a token: 200 with its sign-in page, not an error status.
            return web.Response(
                text="<!DOCTYPE html><html><body>Sign in to Slack</body></html>", content_type="text/html"
            )
        if data is None:
            return web.Response(status=404, text="file not found")
        return web.Response(body=data, content_type="application/pdf")

    async def _response(self, request: web.Request) -> web.Response:
        self.responses.append((request.match_info["id"], await request.json()))
        self._touch()
        return web.Response(text="ok", content_type="text/html")


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Slack answers `application/json; charset=utf-8`; slack-sdk accepts it, so the fake does the same.
    return web.Response(
        text=json.dumps(body), status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


def _stream_text(args: dict[str, Any]) -> str:
    """The Markdown a streaming call adds: `markdown_text`, or its `markdown_text` chunks (slack-sdk's helper)."""
    chunks = args.get("chunks") or []
    chunks = json.loads(chunks) if isinstance(chunks, str) else chunks
    return (args.get("markdown_text") or "") + "".join(
        c.get("text", "") for c in chunks if c.get("type") == "markdown_text"
    )


def _blocks(args: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = args.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else list(blocks)


def _public(message: dict[str, Any], with_metadata: bool = True) -> dict[str, Any]:
    hidden = {"edits", "channel", "appends", "streaming"} | (set() if with_metadata else {"metadata"})
    return {k: v for k, v in message.items() if k not in hidden}
