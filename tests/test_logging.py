"""Logs: one line per event, JSON that parses, the request's context on each line, and never a token."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bot import logging_setup
from bot.logs import setup_logging
from bot.settings import Settings
from tests.conftest import REAL_PDFS
from tests.test_cli import cli_env

# Token-shaped fakes: the shapes Discord and Slack issue, never valid anywhere (two are joined at run time so that
# no secret scanner takes the source for a leak).
FAKE_TOKENS = {
    "DISCORD_TOKEN": ".".join(("MTA5ODc2NTQzMjEwOTg3NjU0", "GaBcDe", "fAkEtOkEnfAkEtOkEnfAkEtOkEnfAkE12")),
    "SLACK_BOT_TOKEN": "-".join(("xoxb", "1111111111", "2222222222", "FaKeFaKeFaKeFaKeFaKeFaKe")),
    "SLACK_APP_TOKEN": "xapp-1-A111111-2222222222-fakefakefakefakefakefake",
    "SLACK_SIGNING_SECRET": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "PAPERBOT_LLM_API_KEY": "sk-fake-api-key-0123456789",
}
PROGRESS_BAR = re.compile(r"^\S+: +\d+%\|")


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_parse_carry_context_and_redact_known_and_token_shaped_secrets(capture: io.StringIO) -> None:
    setup_logging(2, "DEBUG", "json", secrets=[FAKE_TOKENS["SLACK_SIGNING_SECRET"], "short"], stream=capture)
    log = logging.getLogger("paperbot.test")

    async def handler() -> None:
        logging_setup.bind(platform="slack", channel="slack/T1/C1")
        logging_setup.new_request()
        log.info("connecting with %s", FAKE_TOKENS["SLACK_BOT_TOKEN"], extra={"fields": {"elapsed_s": 0.5}})
        log.info("signature %s\nsecond line", FAKE_TOKENS["SLACK_SIGNING_SECRET"])
        try:
            raise RuntimeError(f"login failed for {FAKE_TOKENS['DISCORD_TOKEN']}")
        except RuntimeError:
            log.exception("discord said no")
        log.info("POST https://discord.com/api/v10/webhooks/123/%s", "a" * 60)
        log.info("Authorization: Bearer %s", FAKE_TOKENS["PAPERBOT_LLM_API_KEY"])

    asyncio.run(handler())
    log.info("outside any request, short")  # the handler's task context does not leak here

    lines = _lines(capture)
    entries = [e for e in map(json.loads, lines) if e["logger"] == "paperbot.test"]  # not asyncio's debug line
    assert len(entries) == 6  # a multi-line message and a traceback stay one line each
    for line in lines:
        for token in FAKE_TOKENS.values():
            assert token not in line
        assert "a" * 60 not in line
    first = entries[0]
    assert first["platform"] == "slack" and first["channel"] == "slack/T1/C1" and first["elapsed_s"] == 0.5
    assert len(first["request"]) == 12 and all(e["request"] == first["request"] for e in entries[:5])
    assert "[redacted]" in first["msg"] and "[redacted]" in entries[2]["exc"]
    assert entries[5]["msg"] == "outside any request, short"  # short values are no secrets: they would mask words
    assert "platform" not in entries[5] and "request" not in entries[5]


def test_text_format_is_one_line_per_event(capture: io.StringIO) -> None:
    setup_logging(0, "INFO", "text", stream=capture)
    log = logging.getLogger("paperbot.test")
    logging_setup.bind(platform="discord", channel="discord/1/2", request="r1")
    try:
        raise ValueError("boom\nwith a second line")
    except ValueError:
        log.exception("failed\nbadly")
    logging_setup.bind(platform=None)  # None leaves a field as it was
    lines = _lines(capture)
    assert len(lines) == 1
    assert "platform=discord channel=discord/1/2 request=r1" in lines[0] and "exc=" in lines[0]


def test_library_chatter_is_debug_only(capture: io.StringIO) -> None:
    setup_logging(0, "INFO", "json", stream=capture)
    logging.getLogger("aiosqlite").info("executing SELECT 1")
    logging.getLogger("httpx").info("HTTP Request: GET http://x")
    logging.getLogger("bot.core").info("answered")
    assert [json.loads(line)["logger"] for line in _lines(capture)] == ["bot.core"]

    setup_logging(2, "DEBUG", "json", stream=capture)
    logging.getLogger("aiosqlite").debug("executing SELECT 1")
    assert json.loads(_lines(capture)[-1])["logger"] == "aiosqlite"


def test_secret_values_are_the_secret_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_TOKENS.items():
        monkeypatch.setenv(name, value)
    assert set(logging_setup.secret_values(Settings(_env_file=None))) == set(FAKE_TOKENS.values())


@pytest.mark.slow
def test_a_cli_ingest_and_ask_logs_json_lines_without_tokens(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = {**cli_env(settings), **FAKE_TOKENS, "PAPERBOT_LOG_FORMAT": "json"}

    def paperbot(*args: str) -> subprocess.CompletedProcess[str]:
        # -vv: everything at debug level, the most a run can log.
        command = [sys.executable, "-m", "bot.cli", "-vv", *args]
        return subprocess.run(command, env=env, cwd=settings.data_dir, capture_output=True, text=True, timeout=300)

    ingest = paperbot("ingest", "--index", "logs", str(REAL_PDFS / "distillation.pdf"))
    ask = paperbot("ask", "--index", "logs", "--json", "what is distillation?")
    assert ingest.returncode == 0 and ask.returncode == 0, ingest.stderr[-2000:] + ask.stderr[-2000:]

    records = []
    for line in (ingest.stderr + ask.stderr).split("\n"):
        # Besides log records, stderr holds only `ingest`'s progress bar (a log record may follow it on its line).
        start = line.find('{"ts"')
        if start < 0:
            assert not line.strip() or PROGRESS_BAR.match(line.strip("\r")), line
        else:
            assert start == 0 or PROGRESS_BAR.match(line.strip("\r")), line
            records.append(json.loads(line[start:]))
    loggers = {record["logger"] for record in records}
    assert {"storage.migrations", "rag_engine.ingest", "llama_cpp", "bot.core"} <= loggers
    answered = next(r for r in records if r["msg"] == "answered")
    assert answered["channel"] == "logs" and answered["elapsed_s"] > 0 and "what is" not in json.dumps(answered)
    for output in (ingest.stdout, ingest.stderr, ask.stdout, ask.stderr):
        for token in FAKE_TOKENS.values():
            assert token not in output
