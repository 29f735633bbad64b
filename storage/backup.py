"""Backups and restores of the database file, with SQLite's online backup API.

A backup is a consistent snapshot taken while the bot keeps running; it is written beside the target under a
temporary name, checked (`PRAGMA integrity_check`), switched to a self-contained rollback journal, and only then
renamed into place. A restore refuses to replace a database that a running process has open (`storage.lock`), and
refuses a file that is damaged, is not a paperbot database, or was written by a newer paperbot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import aiosqlite

from storage.errors import BackupRefused, DatabaseBusy
from storage.files import private_dir, private_file
from storage.lock import DatabaseLock, FileInUse

log = logging.getLogger(__name__)

#: A heartbeat younger than this means a bot is running on the file (it beats every 5 s).
RUNNING_BOT_BEAT_S = 60.0


async def copy_database(conn: aiosqlite.Connection, target: str | Path) -> None:
    """Snapshot the open database `conn` into the new file `target` (replacing it atomically if it exists)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = private_file(target.with_name(f".{target.name}.{secrets.token_hex(4)}.part"))
    dest = sqlite3.connect(partial, check_same_thread=False)  # used from aiosqlite's thread, then from ours
    try:
        await conn.backup(dest, pages=-1)  # one step: a single consistent snapshot
        await asyncio.to_thread(_seal, dest)
        dest.close()
        os.replace(partial, target)
    except BaseException:
        dest.close()
        partial.unlink(missing_ok=True)
        raise
    log.info("backed up the database to %s", target)


def _seal(dest: sqlite3.Connection) -> None:
    """Make the copy one self-contained file, and prove it is whole."""
    dest.execute("PRAGMA journal_mode = DELETE")
    verdict = "\n".join(str(row[0]) for row in dest.execute("PRAGMA integrity_check"))
    if verdict != "ok":
        raise BackupRefused(f"The backup copy failed its integrity check: {verdict}")


async def backup_before_migrating(conn: aiosqlite.Connection, location: str, target_version: int) -> Path | None:
    """Before an existing database is migrated to a new schema, keep a copy of it (`<file>.v<N>-<time>.bak`)."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    found = 0 if row is None else int(row[0])
    if found == 0 or found >= target_version:  # a new file, up to date, or too new (refused by the migrations)
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    copy = Path(f"{location}.v{found}-{stamp}.bak")
    await copy_database(conn, copy)
    log.warning("schema %d → %d: the database was backed up first to %s", found, target_version, copy)
    return copy


def check_restorable(source: Path, known_version: int) -> int:
    """The schema version of `source` if it can be restored; BackupRefused with the reason otherwise."""
    if not source.is_file():
        raise BackupRefused(f"There is no file {source}.")
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        verdict = "\n".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise BackupRefused(f"{source} is not a readable SQLite database ({error}).") from error
    finally:
        conn.close()
    if verdict != "ok":
        raise BackupRefused(f"{source} failed its integrity check: {verdict}")
    if not {"indexes", "documents", "jobs"} <= tables or version == 0:
        raise BackupRefused(f"{source} is not a paperbot database.")
    if version > known_version:
        raise BackupRefused(
            f"{source} has schema version {version}, newer than this paperbot knows ({known_version}); upgrade first."
        )
    return version


def bot_heartbeat_age(database: Path) -> float | None:
    """Seconds since the bot using `database` last beat, or None when it never did."""
    if not database.exists():
        return None
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT beat_at FROM heartbeat WHERE id = 1").fetchone()
    except sqlite3.DatabaseError:  # no heartbeat table yet, or not a database at all
        row = None
    finally:
        conn.close()
    if row is None:
        return None
    return (datetime.now(timezone.utc) - datetime.fromisoformat(row[0])).total_seconds()


def restore_database(source: Path, database: Path, known_version: int) -> Path | None:
    """Replace `database` by a copy of `source`. Refuses (DatabaseBusy) while any process has `database` open or
    a bot beat on it within the last minute. The replaced file is kept as `<file>.before-restore-<time>`;
    returns its path (None when there was none). The next open migrates an older copy (backing it up first)."""
    check_restorable(source, known_version)
    private_dir(database.parent)
    lock = DatabaseLock(database, exclusive=True)
    try:
        lock.acquire()
    except FileInUse as error:
        raise DatabaseBusy(str(database), "a paperbot process has it open (a running bot?); stop it first") from error
    try:
        age = bot_heartbeat_age(database)
        if age is not None and age < RUNNING_BOT_BEAT_S:
            raise DatabaseBusy(str(database), f"a bot wrote its heartbeat {age:.0f} s ago; stop it first")
        kept = None
        if database.exists():
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            kept = database.with_name(f"{database.name}.before-restore-{stamp}")
            _copy_file_database(database, private_file(kept))  # folds any WAL content into the kept copy
        partial = private_file(database.with_name(f".{database.name}.{secrets.token_hex(4)}.part"))
        try:
            _copy_file_database(source, partial, read_only=True, forget_heartbeat=True)
            for suffix in ("-wal", "-shm"):  # the old file's; nobody has it open (we hold the lock)
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            os.replace(partial, database)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    finally:
        lock.release()
    log.warning("restored %s from %s", database, source)
    return kept


def _copy_file_database(source: Path, target: Path, *, read_only: bool = False, forget_heartbeat: bool = False) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True) if read_only else sqlite3.connect(source)
    try:
        dest = sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(dest)
            dest.execute("PRAGMA journal_mode = DELETE")
            if forget_heartbeat:  # a backup taken from a running bot carries its last beat; no bot runs on this copy
                with contextlib.suppress(sqlite3.OperationalError):  # no heartbeat table before schema 2
                    dest.execute("DELETE FROM heartbeat")
        finally:
            dest.close()
    finally:
        src.close()

