"""Running a command so that SIGINT (Ctrl-C) and SIGTERM stop it cleanly.

The first signal cancels the command's task: every `async with` on the way out runs (chat sessions close, the
database closes) and an ingestion in progress puts its job back to 'pending' with its stored upload, so the next
start resumes it. A second signal exits at once; the interrupted job is then resumed like after a crash, once its
lease has expired.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_until_signalled(command: Coroutine[Any, Any, int]) -> int:
    """`asyncio.run(command)`, but a stop signal ends it cleanly with exit status 128 + the signal's number."""
    return asyncio.run(_supervise(command))


async def _supervise(command: Coroutine[Any, Any, int]) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if received:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        received.append(signum)
        log.warning("%s received: stopping (again to exit at once)", signal.Signals(signum).name)
        task.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await command
    except asyncio.CancelledError:
        if not received:
            raise
        return 128 + received[0]
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
