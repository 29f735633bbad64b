"""The operator's commands: `backup`, `restore` and `prune` (flags and help are in bot.cli)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings


async def backup(settings: Settings, *, path: Path) -> int:
    from storage.db import Database

    if not settings.database_path.exists():
        print(f"paperbot: there is no database at {settings.database_path} to back up", file=sys.stderr)
        return 1
    async with await Database.open(settings.database_path) as db:
        await db.backup(path)
    print(f"backed up {settings.database_path} to {path}")
    return 0


async def restore(settings: Settings, *, path: Path) -> int:
    from storage.backup import restore_database
    from storage.db import Database
    from storage.migrations import MIGRATIONS

    kept = await asyncio.to_thread(restore_database, path, settings.database_path, len(MIGRATIONS))
    async with await Database.open(settings.database_path) as db:  # migrates an older backup (copying it first)
        version = await db.schema_version()
    print(f"restored {settings.database_path} from {path} (schema version {version})")
    if kept is not None:
        print(f"the replaced database is kept as {kept}")
    return 0


async def prune(settings: Settings) -> int:
    from rag_engine.engine import Engine
    from rag_engine.maintenance import prune as prune_all

    async with Engine.open(settings) as engine:
        report = await prune_all(engine)
    print(
        f"pruned {report.jobs} finished jobs, {report.documents} orphaned documents, "
        f"{report.files} unused files, {report.answers} expired answers"
    )
    return 0
