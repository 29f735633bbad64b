"""Who holds an ingestion job: `pid@host/token`, unique per process start even when a pid is reused."""

from __future__ import annotations

import os
import secrets
import socket


def new_owner() -> str:
    """A fresh owner name for this process."""
    return f"{os.getpid()}@{socket.gethostname()}/{secrets.token_hex(4)}"


def owner_is_gone(owner: str | None) -> bool:
    """True when `owner` was a process on this host that no longer runs: its jobs need not wait for the lease.

    Unknown (another host, a malformed name, a pid now used by someone else) → False: the lease decides.
    """
    if not owner:
        return False
    pid_text, _, rest = owner.partition("@")
    host = rest.rpartition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False
