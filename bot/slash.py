"""The shape of a slash command on every platform: acknowledge at once (platforms give a few seconds), find where
and by whom it was asked, do the work, and on failure answer with a sentence the user can act on; anything else is
logged and answered with the apology. Adapters pass the platform's own calls for each step."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.messages import APOLOGY
from rag_engine.errors import USER_FACING

log = logging.getLogger(__name__)

C = TypeVar("C")


async def run_command(
    what: str,
    *,
    defer: Callable[[], Awaitable[object]],
    context: Callable[[], Awaitable[C | None]],
    work: Callable[[C], Awaitable[object]],
    fail: Callable[[str], Awaitable[object]],
) -> None:
    """defer → context (None: the adapter has told the user why not, e.g. a channel that is not enabled) → work;
    a user-facing error from the work becomes `fail(its message)`, any other `fail(APOLOGY)` after logging it."""
    await defer()
    found = await context()
    if found is None:
        return
    try:
        await work(found)
    except USER_FACING as error:
        await fail(str(error))
    except Exception:
        log.exception("command %s failed", what)
        await fail(APOLOGY)
