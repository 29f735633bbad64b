"""What a log line holds: one line per event, text or JSON, with the request's context, and never a secret.

bot/logs.py puts these on the entry points' handler.

Context (platform, channel, request and document ids) lives in a contextvar: each platform event runs in its own
asyncio task, which copies the context, so what one handler binds never shows up in another's lines.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any, Literal

LogFormat = Literal["text", "json"]

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("paperbot_log_context", default={})

# Token shapes that must not reach a log even when nobody told us they are secret: Slack tokens, Discord bot tokens
# (base64 id . timestamp . hmac), bearer headers, and webhook/interaction URLs that carry a token in their path.
_TOKEN_PATTERNS = (
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"),
    re.compile(r"\bxapp-[A-Za-z0-9-]{8,}"),
    re.compile(r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._-]{20,}"),
)
REDACTED = "[redacted]"


def bind(**fields: Any) -> None:
    """Add fields (platform=, channel=, request=, document=…) to every later log line of this task."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def new_request() -> str:
    """Start a request: a fresh short id bound as `request`, returned for the caller's own use."""
    request_id = uuid.uuid4().hex[:12]
    bind(request=request_id)
    return request_id


def context() -> dict[str, Any]:
    return dict(_context.get())


class Redactor:
    """Replaces known secret values and token-shaped strings in a finished log line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Short values (e.g. "not-needed") would mask ordinary words; real tokens are long.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, REDACTED)
        for pattern in _TOKEN_PATTERNS:
            line = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, line)
        return line


class ContextFilter(logging.Filter):
    """Puts the bound context (and a record's own `extra={"fields": …}`) on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.paperbot_context = {**_context.get(), **getattr(record, "fields", {})}
        return True


class TextFormatter(logging.Formatter):
    """`2026-12-04T16:20:23Z INFO bot.core: answered platform=discord request=ab12 elapsed_s=1.2` on one line."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, f"{record.name}: {record.getMessage()}"]
        parts += [f"{k}={_text_value(v)}" for k, v in getattr(record, "paperbot_context", {}).items()]
        if record.exc_info:
            parts.append("exc=" + _text_value(self.formatException(record.exc_info)))
        return self._redact(" ".join(parts).replace("\n", "\\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the bound context, and exc when there is one."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in getattr(record, "paperbot_context", {}).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # Redacting the serialised line also covers secrets inside exceptions and context values; the patterns
        # never match a JSON quote or backslash, so the line stays valid JSON.
        return self._redact(json.dumps(entry, ensure_ascii=False, default=str))


def formatter(fmt: LogFormat = "text", secrets: Iterable[str] = ()) -> logging.Formatter:
    """The formatter of every handler: one line per event, redacting `secrets` and token-shaped strings."""
    redact = Redactor(secrets)
    return JsonFormatter(redact) if fmt == "json" else TextFormatter(redact)


def secret_values(settings: Any) -> list[str]:
    """The plain values of every SecretStr setting (tokens, signing secret, API key)."""
    from pydantic import SecretStr

    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
    return values


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (not text or any(c in text for c in ' "=\n')) else text
