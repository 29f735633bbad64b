"""Housekeeping use cases over an open Engine: prune what is finished or orphaned, apply the retention settings,
and drop a channel's papers when the bot leaves it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from rag_engine.engine import Engine

log = logging.getLogger(__name__)

#: Files and half-written documents younger than this are left alone: an upload may be on its way into a job.
GRACE_S = 3600.0


@dataclass(frozen=True, slots=True)
class PruneReport:
    jobs: int
    documents: int
    answers: int
    files: int


async def prune(engine: Engine) -> PruneReport:
    """Delete finished jobs older than `job_retention_days`, orphaned documents and stored files, and (when
    `answer_retention_days` is set) older answers and votes."""
    s = engine.settings
    db = engine.db
    jobs = await db.prune_jobs(s.job_retention_days)
    documents = await db.prune_orphan_documents(GRACE_S / 86400)
    answers = await db.prune_answers(s.answer_retention_days) if s.answer_retention_days else 0
    files = await _prune_files(engine)
    report = PruneReport(jobs=jobs, documents=documents, answers=answers, files=files)
    log.info("pruned %s", report)
    return report


async def _prune_files(engine: Engine) -> int:
    """Stored uploads no document or job needs, and temporary files a crash left behind, once past the grace."""
    folder = engine.settings.uploads_dir
    old_enough = time.time() - GRACE_S

    def candidates() -> tuple[list[str], list[Path]]:
        if not folder.is_dir():
            return [], []
        shas, leftovers = [], []
        for path in folder.iterdir():
            if path.stat().st_mtime >= old_enough:
                continue
            if path.name.endswith(".part"):
                leftovers.append(path)
            elif path.suffix == ".pdf":
                shas.append(path.stem)
        return shas, leftovers

    shas, leftovers = await asyncio.to_thread(candidates)
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers) + await engine.ingestor.release_uploads(shas)


async def drop_channel(engine: Engine, address: str) -> int:
    """Delete the index `address` (a channel's, e.g. 'discord/GUILD/CHANNEL'), or every index under it when it
    ends with '/' (a whole server or workspace), with their stored files. Returns how many indexes went."""
    if address.endswith("/"):
        names = await engine.db.index_names_under(address)
    else:
        names = [address] if await engine.has_index(address) else []
    dropped = 0
    for name in names:
        shas = await engine.db.drop_index(name)
        await engine.ingestor.release_uploads(shas)
        dropped += 1
    return dropped
