"""llama.cpp's own log (load details, "control-looking token …" vocabulary remarks) routed into Python logging.

llama.cpp prints every load detail to stderr; through `llama_log_set` each line goes to the `llama_cpp` logger
instead, at debug level, so it shows only with debug logging (llama.cpp reports even harmless vocabulary remarks at
its error level; a failure that matters reaches the caller as an exception). Lines arrive in pieces and are logged
whole.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger("llama_cpp")

_lock = threading.Lock()
_pending: list[str] = []
_callback: Any = None  # the ctypes callback must outlive every call llama.cpp makes to it


def _on_log(_level: int, text: bytes | None, _user_data: Any) -> None:
    piece = text.decode("utf-8", errors="replace") if text else ""
    with _lock:
        _pending.append(piece)
        if not piece.endswith("\n"):
            return
        line = "".join(_pending).rstrip("\n")
        _pending.clear()
    if line:
        logger.debug("%s", line)


def route_llama_logs() -> None:
    """Send llama.cpp's log to Python logging from now on (idempotent; call before loading a model)."""
    global _callback
    import llama_cpp

    with _lock:
        if _callback is not None:
            return
        _callback = llama_cpp.llama_log_callback(_on_log)
    llama_cpp.llama_log_set(_callback, None)
