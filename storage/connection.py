"""The SQLite file underneath `Database`: one aiosqlite connection, pragmas, migrations at open, serialized writes.

Reads run straight on the connection. Writes take `Connection.transaction()`: an asyncio.Lock (one writer at a time
in this process) around a short `BEGIN IMMEDIATE` … `COMMIT` (other processes wait up to busy_timeout).

Because there is one connection, a read issued while a write transaction is open sees that transaction's rows.
The repository therefore orders every write so that the statement making rows visible to search (a document's
status flip, or its deletion) comes last — a reader never sees half of a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from storage.backup import backup_before_migrating, copy_database
from storage.errors import DatabaseBusy
from storage.files import private_dir, private_file, tighten
from storage.lock import DatabaseLock, FileInUse
from storage.migrations import MIGRATIONS, Migration, apply_migrations, schema_version

log = logging.getLogger(__name__)

Params = Sequence[Any] | Mapping[str, Any]


class Transaction:
    """Statements inside one open write transaction (only valid inside `Connection.transaction()`)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns how many rows it changed."""
        async with self._conn.execute(sql, params) as cursor:
            return cursor.rowcount

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run one INSERT; returns the new row's id."""
        async with self._conn.execute(sql, params) as cursor:
            row_id = cursor.lastrowid
        if row_id is None:
            raise RuntimeError("INSERT produced no row id")
        return row_id

    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        async with self._conn.executemany(sql, rows) as cursor:
            return cursor.rowcount

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return list(await self._conn.execute_fetchall(sql, params))


class Connection:
    """The one connection to a paperbot file. Use `storage.db.Database`; this is its plumbing."""

    def __init__(self, conn: aiosqlite.Connection, path: str, lock: DatabaseLock | None = None) -> None:
        self._conn = conn
        self._path = path
        self._lock = lock
        self._write_lock = asyncio.Lock()
        self._reader = Transaction(conn)  # same statements, used outside transactions for reads

    @classmethod
    async def open(
        cls, path: str | Path, *, busy_timeout_ms: int = 5000, migrations: Sequence[Migration] = MIGRATIONS
    ) -> Connection:
        """Open (creating folders and file as needed), set pragmas, and apply pending migrations."""
        location = str(path)
        on_disk = location != ":memory:" and not location.startswith("file:")
        lock = None
        if on_disk:
            private_dir(Path(location).parent)
            private_file(location)  # SQLite gives the -wal and -shm files the database's mode
            lock = DatabaseLock(location)  # shared: tells `restore` that this file is in use
            try:
                lock.acquire()
            except FileInUse as error:
                raise DatabaseBusy(location) from error
        # isolation_level=None: the sqlite3 module opens no implicit transactions; we issue BEGIN ourselves.
        try:
            conn = await aiosqlite.connect(location, isolation_level=None)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            if on_disk:
                await backup_before_migrating(conn, location, len(migrations))
            version = await apply_migrations(conn, location, migrations)
            if on_disk:  # files made by a version that did not set modes
                for suffix in ("-wal", "-shm"):
                    tighten(location + suffix)
        except BaseException:
            await conn.close()
            if lock is not None:
                lock.release()
            raise
        log.debug("opened %s at schema version %d", location, version)
        return cls(conn, location, lock)

    @property
    def path(self) -> str:
        return self._path

    async def close(self) -> None:
        """Wait for the running write to finish, then close. Safe to call twice."""
        async with self._write_lock:
            with contextlib.suppress(ValueError, sqlite3.Error):  # already closed
                await self._conn.execute("PRAGMA optimize")
            await self._conn.close()
            if self._lock is not None:
                self._lock.release()

    # --- reads ------------------------------------------------------------------------------------------------------
    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        return await self._reader.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self._reader.fetchall(sql, params)

    # --- writes -----------------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One write transaction: committed when the block ends, rolled back if it raises (or is cancelled)."""
        async with self._write_lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield Transaction(self._conn)
                await self._conn.commit()
            except BaseException:
                # The connection's worker runs statements in order, so this lands after anything still queued.
                # rollback() is a no-op when BEGIN never ran; shield it so a second cancellation cannot skip it.
                await asyncio.shield(self._conn.rollback())
                raise

    # --- maintenance ------------------------------------------------------------------------------------------------
    async def pragma(self, name: str) -> object:
        """Read one PRAGMA's value (`name` must be a plain identifier)."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        row = await self.fetchone(f"PRAGMA {name}")
        return None if row is None else row[0]

    async def schema_version(self) -> int:
        return await schema_version(self._conn)

    async def backup_to(self, target: str | Path) -> None:
        """Copy the database into `target` (a new file) with SQLite's online backup: a consistent snapshot, taken
        while this and other processes keep reading and writing."""
        async with self._write_lock:  # this connection's own writes wait; other processes' do not
            await copy_database(self._conn, target)

    async def integrity_check(self) -> str:
        """`PRAGMA integrity_check`'s verdict ("ok" when healthy). If the file is fine but the full-text index
        disagrees with the chunks it indexes, says so instead."""
        rows = await self.fetchall("PRAGMA integrity_check")
        verdict = "\n".join(str(row[0]) for row in rows)
        if verdict != "ok":
            return verdict
        try:
            async with self.transaction() as tx:
                # rank = 1: also compare the index with the `chunks` rows it claims to index (external content).
                await tx.execute("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as error:
            return f"chunks_fts: {error}"
        return verdict
