"""What the parts of the Slack bot share about Web API calls: the errors a call can raise, Slack's error code for
logs and notices, chat.postMessage, and who the bot is in the workspace."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_app.blocks import SlackMessage

log = logging.getLogger(__name__)

#: What a Web API call can raise once slack-sdk's own retries (connection errors, 429s) are used up.
API_ERRORS = (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError)


@dataclass
class Identity:
    """Who the bot is in its workspace (auth.test), filled in when it connects."""

    user_id: str = ""
    bot_id: str = ""
    team_id: str = ""


def error_code(error: BaseException) -> str:
    """Slack's error code (`not_in_channel`, …), or the kind of network failure."""
    if isinstance(error, SlackApiError):
        return str(error.response.get("error", "unknown_error"))
    return type(error).__name__


async def post(
    client: AsyncWebClient,
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
        response = await client.chat_postMessage(channel=channel_id, **message.payload(), **extra)
    except API_ERRORS as error:
        log.warning("chat.postMessage to %s failed: %s", channel_id, error_code(error))
        return None
    return response.get("ts")
