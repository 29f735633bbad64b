"""llama.cpp's own log (load details, "control-looking token …" vocabulary remarks) routed into Python logging.

llama.cpp prints every load detail to stderr; through `llama_log_set` each line goes to the `llama_cpp` logger
instead, at debug level (errors at error level), so it shows only with debug logging. Lines arrive in pieces
(level CONT continues the previous one) and are logged whole.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

logger = logging.getLogger("llama_cpp")

_GGML_LOG_LEVEL_ERROR = 3
_GGML_LOG_LEVEL_CONT = 5

_lock = threading.Lock()
_pending: list[str] = []
_pending_level = logging.DEBUG
_callback: Any = None  # the ctypes callback must outlive every call llama.cpp makes to it


def _on_log(level: int, text: bytes | None, _user_data: Any) -> None:
    global _pending_level
    piece = text.decode("utf-8", errors="replace") if text else ""
    with _lock:
        if level != _GGML_LOG_LEVEL_CONT and not _pending:
            _pending_level = logging.ERROR if level == _GGML_LOG_LEVEL_ERROR else logging.DEBUG
        _pending.append(piece)
        if not piece.endswith("\n"):
            return
        line = "".join(_pending).rstrip("\n")
        _pending.clear()
        line_level = _pending_level
    if line:
        logger.log(line_level, "%s", line)


def route_llama_logs() -> None:
    """Send llama.cpp's log to Python logging from now on (idempotent; call before loading a model)."""
    global _callback
    import llama_cpp

    with _lock:
        if _callback is not None:
            return
        _callback = llama_cpp.llama_log_callback(_on_log)
    llama_cpp.llama_log_set(_callback, None)
