"""Operations: backup while the bot writes, restore (and its refusals), the backup taken before a migration,
prune and retention, and a channel's papers dropped when the bot leaves it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import Channel, User
from bot.runtime import open_core
from bot.slack_app import SlackBot
from rag_engine.engine import Engine
from rag_engine.maintenance import GRACE_S, prune
from bot.settings import Settings
from storage.backup import check_restorable, restore_database
from storage.codec import CODEC_ID
from storage.db import Database
from storage.errors import BackupRefused, DatabaseBusy
from storage.migrations import MIGRATIONS
from tests.conftest import EDGE_PDFS, REPO
from tests.fakes.slack_server import SlackStandIn

VERSION = len(MIGRATIONS)


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        value = int(conn.execute(sql).fetchone()[0])
    conn.close()
    return value


async def _writer(db: Database, index_id: int, written: list[int], stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        await db.save_answer(index_id, f"m{n}", f"question {n}?", '{"answer": "x" }')
        n += 1
        written.append(n)


async def test_a_backup_taken_while_a_writer_writes_is_whole_and_restores(tmp_path: Path) -> None:
    live = tmp_path / "live" / "paperbot.sqlite3"
    copy = tmp_path / "backups" / "paperbot-1.sqlite3"
    async with await Database.open(live) as bot, await Database.open(live) as operator:
        index = await bot.get_or_create_index("ml", "enc", CODEC_ID, 4)
        written: list[int] = []
        stop = asyncio.Event()
        writing = asyncio.create_task(_writer(bot, index.id, written, stop))
        while len(written) < 50:  # the writer is well under way
            await asyncio.sleep(0)
        before = len(written)
        await operator.backup(copy)
        after = len(written)
        stop.set()
        await writing
    assert after > before  # the writer kept writing while the backup ran: it did not have to stop

    assert check_restorable(copy, VERSION) == VERSION  # integrity_check ok, a paperbot file, a known schema
    assert oct(copy.stat().st_mode & 0o777) == "0o600"
    saved = _count(copy, "SELECT count(*) FROM answers")
    assert before <= saved <= after

    target = tmp_path / "restored" / "paperbot.sqlite3"
    assert restore_database(copy, target, VERSION) is None
    async with await Database.open(target) as restored:
        assert await restored.integrity_check() == "ok"
        assert await restored.get_answer(index.id, f"m{saved - 1}") is not None
        assert await restored.get_answer(index.id, f"m{saved}") is None


def _holder(database: Path) -> subprocess.Popen[str]:
    """Another process with the database open, as a running bot has: prints 'open' once it holds it."""
    code = (
        "import asyncio, sys\n"
        "from storage.db import Database\n"
        "async def main():\n"
        "    async with await Database.open(sys.argv[1]):\n"
        "        print('open', flush=True)\n"
        "        sys.stdin.readline()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(database)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    return holder


async def _backed_up(tmp_path: Path, before: str, after: str) -> tuple[Path, Path]:
    """A database with indexes `before` and `after`, and a backup taken between the two: (live, backup)."""
    live = tmp_path / "data" / "paperbot.sqlite3"
    backup = tmp_path / "backup.sqlite3"
    async with await Database.open(live) as db:
        await db.get_or_create_index(before, "enc", CODEC_ID, 4)
        await db.backup(backup)
        await db.get_or_create_index(after, "enc", CODEC_ID, 4)
    return live, backup


async def test_restore_refuses_a_database_a_running_bot_uses(tmp_path: Path) -> None:
    live, backup = await _backed_up(tmp_path, "keep-me", "after-backup")

    holder = _holder(live)
    try:
        with pytest.raises(DatabaseBusy, match="has it open"):
            restore_database(backup, live, VERSION)
    finally:
        holder.communicate("\n", timeout=30)
    async with await Database.open(live) as db:  # untouched
        assert [i.name for i in await db.list_indexes()] == ["after-backup", "keep-me"]
        await db.write_heartbeat(4242, 0, "CPU")  # a bot beating on it from elsewhere (another host, say)
    with pytest.raises(DatabaseBusy, match="heartbeat"):
        restore_database(backup, live, VERSION)

    # A backup of a running bot carries its last beat; the restored copy must not look like a running bot.
    async with await Database.open(live) as db:
        await db.backup(backup)
    elsewhere = tmp_path / "elsewhere" / "paperbot.sqlite3"
    restore_database(backup, elsewhere, VERSION)
    restore_database(backup, elsewhere, VERSION)


async def test_restore_refuses_damaged_foreign_and_newer_files_and_keeps_the_replaced_one(tmp_path: Path) -> None:
    live, backup = await _backed_up(tmp_path, "old", "new")

    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    damaged = tmp_path / "damaged.sqlite3"
    raw = bytearray(backup.read_bytes())
    raw[4096 : 4096 * 3] = b"\xff" * (4096 * 2)
    damaged.write_bytes(bytes(raw))
    for bad, reason in ((foreign, "not a paperbot database"), (damaged, "integrity|not a readable")):
        with pytest.raises(BackupRefused, match=reason):
            restore_database(bad, live, VERSION)
    with pytest.raises(BackupRefused, match="newer than this paperbot"):
        restore_database(backup, live, VERSION - 1)

    kept = restore_database(backup, live, VERSION)
    assert kept is not None and oct(kept.stat().st_mode & 0o777) == "0o600"
    async with await Database.open(live) as db:
        assert [i.name for i in await db.list_indexes()] == ["old"]
    async with await Database.open(kept) as db:
        assert [i.name for i in await db.list_indexes()] == ["new", "old"]


async def test_a_migration_backs_the_database_up_first(tmp_path: Path) -> None:
    live = tmp_path / "paperbot.sqlite3"
    async with await Database.open(live, migrations=MIGRATIONS[:2]) as db:
        await db.get_or_create_index("ml", "enc", CODEC_ID, 4)
    assert list(tmp_path.glob("*.bak")) == []
    async with await Database.open(live) as db:
        assert await db.schema_version() == VERSION
    [copy] = tmp_path.glob("paperbot.sqlite3.v2-*.bak")
    assert check_restorable(copy, VERSION) == 2
    assert _count(copy, "SELECT count(*) FROM indexes") == 1
    async with await Database.open(live):
        pass
    assert len(list(tmp_path.glob("*.bak"))) == 1  # no second copy when nothing changes


async def test_prune_removes_old_jobs_orphans_and_expired_answers(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", answer_retention_days=30)  # type: ignore[call-arg]
    long_ago = datetime.now(timezone.utc) + timedelta(days=400)  # "now", a year on
    async with Engine.open(settings) as engine:
        db = engine.db
        index = await db.get_or_create_index("ml", "enc", CODEC_ID, 4)
        used = engine.ingestor._store_upload("a" * 64, b"%PDF used")
        orphan = engine.ingestor._store_upload("b" * 64, b"%PDF orphan")
        fresh_orphan = engine.ingestor._store_upload("c" * 64, b"%PDF just arrived")
        leftover = settings.uploads_dir / ".dddd.1234.part"
        leftover.write_bytes(b"half")
        for old in (orphan, leftover, used):
            os.utime(old, (time.time() - 2 * GRACE_S,) * 2)
        done = await db.create_job(index.id, str(used), "a.pdf", "a" * 64, None)
        await db.finish_job(done.id, None)
        pending = await db.create_job(index.id, str(used), "a.pdf", "a" * 64, None)
        failed_doc = await db.create_document(index.id, "e" * 64, "bad", "e.pdf", None, 1)
        await db.fail_document(failed_doc.id, "refused")
        await db.save_answer(index.id, "m1", "q?", "{}")

        report = await prune(engine)
        assert (report.jobs, report.answers) == (0, 0)  # nothing is old enough yet
        assert report.files == 2 and not orphan.exists() and not leftover.exists()
        assert used.exists() and fresh_orphan.exists()  # needed by a pending job; still within the grace

        assert await db.prune_jobs(settings.job_retention_days, now=long_ago) == 1
        assert [j.id for j in await db.unfinished_jobs()] == [pending.id]
        assert await db.prune_orphan_documents(1, now=long_ago) == 1
        assert await db.document_status(failed_doc.id) is None
        assert await db.prune_answers(settings.answer_retention_days, now=long_ago) == 1
        assert await db.get_answer(index.id, "m1") is None


async def test_when_the_bot_leaves_a_slack_channel_its_papers_and_files_go(settings: Settings) -> None:
    pdf = EDGE_PDFS / "ok_minimal.pdf"
    async with SlackStandIn(users={"UADA": {"name": "ada", "is_admin": True}}) as slack:
        on = settings.model_copy(update={
            "drop_papers_when_channel_gone": True,
            "slack_bot_token": SecretStr(slack.BOT_TOKEN),
            "slack_app_token": SecretStr(slack.APP_TOKEN),
            "slack_signing_secret": SecretStr(slack.SIGNING_SECRET),
        })
        async with open_core(on, heartbeat=False) as core:
            bot = SlackBot(core, on, client=AsyncWebClient(token=slack.BOT_TOKEN, base_url=slack.api_url),
                           files_host="127.0.0.1", http_host="127.0.0.1")
            async with bot:
                ada = User("UADA", "ada", is_moderator=True)
                left, deleted, stays = (Channel("slack", slack.TEAM, c) for c in ("CLEFT", "CGONE", "CSTAY"))
                for channel in (left, deleted, stays):
                    report = await core.ingest_upload(channel, ada, f"{channel.channel}.pdf", pdf.read_bytes())
                    assert report.status == "indexed"
                stored = list(on.uploads_dir.glob("*.pdf"))
                assert len(stored) == 1  # the same bytes, stored once

                await slack.send_event({"type": "member_left_channel", "user": "UADA", "channel": "CSTAY",
                                        "channel_type": "C", "team": slack.TEAM}, "socket")  # not the bot: no-op
                await slack.send_event({"type": "member_left_channel", "user": slack.BOT_USER, "channel": "CLEFT",
                                        "channel_type": "C", "team": slack.TEAM}, "socket")
                await slack.send_event({"type": "channel_deleted", "channel": "CGONE"}, "socket")
                await _until(lambda: _gone(core, left, deleted))
                assert await core.engine.has_index(stays.index_name)
                assert [p.title for p in await core.list_papers(stays)] != []
                assert stored[0].exists()  # the channel that stays still needs the file

                await core.on_channel_gone(f"slack/{slack.TEAM}/")  # the app left the whole workspace
                assert not await core.engine.has_index(stays.index_name)
                assert not stored[0].exists()


async def _gone(core, *channels: Channel) -> bool:
    return not any([await core.engine.has_index(c.index_name) for c in channels])


async def _until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


async def test_backup_and_restore_from_the_command_line(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    async with await Database.open(settings.database_path) as db:
        await db.get_or_create_index("ml", "enc", CODEC_ID, 4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAPERBOT_")}
    env.update(PAPERBOT_DATA_DIR=str(settings.data_dir), PYTHONPATH=str(REPO))

    def paperbot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)

    copy = tmp_path / "b.sqlite3"
    made = paperbot("backup", str(copy))
    assert made.returncode == 0, made.stderr
    assert check_restorable(copy, VERSION) == VERSION

    holder = _holder(settings.database_path)
    try:
        refused = paperbot("restore", str(copy))
    finally:
        holder.communicate("\n", timeout=30)
    assert refused.returncode == 1 and "has it open" in refused.stderr and "Traceback" not in refused.stderr

    restored = paperbot("restore", str(copy))
    assert restored.returncode == 0, restored.stderr
    assert f"schema version {VERSION}" in restored.stdout and "kept as" in restored.stdout
