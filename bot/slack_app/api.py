"""What the parts of the Slack bot share about Web API calls: the errors a call can raise, Slack's error code for
logs and notices, and chat.postMessage."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_app.blocks import SlackMessage

log = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong on my side. The error has been logged; please try again."
#: What a Web API call can raise once slack-sdk's own retries (connection errors, 429s) are used up.
_API_ERRORS = (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError)


class Posting:
    """Part of `SlackBot`: posting a message."""

    client: AsyncWebClient

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


def _error_code(error: BaseException) -> str:
    """Slack's error code (`not_in_channel`, …), or the kind of network failure."""
    if isinstance(error, SlackApiError):
        return str(error.response.get("error", "unknown_error"))
    return type(error).__name__
