"""`Database`: the one door to storage. The whole repository API on an open SQLite file.

async with await Database.open(settings.database_path) as db:
    index = await db.get_or_create_index(name, encoder_id, CODEC_ID, dim)

db = await Database.open(path)
...
await db.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from storage.activity import ActivityRepository
from storage.compressed import CompressedRepository
from storage.connection import Connection
from storage.jobs import JobRepository
from storage.maintenance import MaintenanceRepository
from storage.migrations import MIGRATIONS, Migration
from storage.repository import Repository


class Database(Repository, JobRepository, ActivityRepository, CompressedRepository, MaintenanceRepository):
    """An open paperbot database: one connection, WAL, foreign keys on, migrations applied at open."""

    @classmethod
    async def open(
        cls, path: str | Path, *, busy_timeout_ms: int = 5000, migrations: Sequence[Migration] = MIGRATIONS
    ) -> Database:
        """Open `path` (creating its folders and the file as needed) and bring its schema up to date."""
        return cls(await Connection.open(path, busy_timeout_ms=busy_timeout_ms, migrations=migrations))

    @property
    def path(self) -> str:
        return self._db.path

    async def close(self) -> None:
        """Wait for a running write to finish, then close. Safe to call twice."""
        await self._db.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """How many migrations the file has had (`PRAGMA user_version`)."""
        return await self._db.schema_version()

    async def pragmas(self) -> dict[str, object]:
        """The connection settings that matter for safety and concurrency, for diagnostics."""
        return {
            name: await self._db.pragma(name)
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }

    async def backup(self, target: str | Path) -> None:
        """A consistent copy of the database in `target` (SQLite's online backup; safe while the bot runs)."""
        await self._db.backup_to(target)

    async def integrity_check(self) -> str:
        """ "ok" when healthy: `PRAGMA integrity_check`'s verdict, then the full-text index checked against chunks."""
        return await self._db.integrity_check()
