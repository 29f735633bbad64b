"""Ingestion jobs: an upload waiting to be indexed, who works on it (owner and lease), and how it ended.

A job is created pending, held by the process that created it; `claim_job` lets another process take over only a
job whose holder's lease has expired (it crashed or was killed), so two processes on one data folder never redo
each other's live work.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from storage.connection import Connection
from storage.errors import JobNotFound
from storage.records import JobRecord
from storage.repository import FINISH_JOB, utc_now

_JOB_SELECT = """
    SELECT j.id, j.index_id, i.name AS index_name, j.path, j.filename, j.sha256, j.uploader, j.status, j.error,
           j.document_id, j.attempts, j.created_at, j.updated_at, j.owner, j.lease_until
    FROM jobs j JOIN indexes i ON i.id = j.index_id
"""


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(**dict(row))


class JobRepository:
    _db: Connection

    async def create_job(
        self,
        index_id: int,
        path: str,
        filename: str,
        sha256: str,
        uploader: str | None,
        *,
        owner: str | None = None,
        lease_s: float = 0.0,
    ) -> JobRecord:
        """A pending ingestion job for an upload stored at `path`, held by `owner` for `lease_s` seconds."""
        now = utc_now()
        async with self._db.transaction() as tx:
            job_id = await tx.insert(
                "INSERT INTO jobs (index_id, path, filename, sha256, uploader, status, created_at, updated_at, owner, "
                "lease_until) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                (index_id, str(path), filename, sha256, uploader, now, now, owner, _lease_end(owner, lease_s)),
            )
        return await self.get_job(job_id)

    async def claim_job(
        self,
        job_id: int,
        owner: str,
        lease_s: float,
        *,
        gone_owner: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Take an unfinished job for `owner` if nobody holds it, its holder's lease has expired, it is `owner`'s
        already, or it is still held by `gone_owner` (a holder known to have stopped). False when another live
        process works on it. Atomic across processes."""
        at = (now or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                """
                UPDATE jobs SET owner = :owner, lease_until = :until
                WHERE id = :id AND status IN ('pending', 'running')
                  AND (owner IS NULL OR owner = :owner OR owner = :gone OR lease_until IS NULL OR lease_until < :at)
                """,
                {"owner": owner, "until": _lease_end(owner, lease_s, now), "id": job_id, "gone": gone_owner, "at": at},
            )
        return changed > 0

    async def renew_lease(self, job_id: int, owner: str, lease_s: float) -> bool:
        """Extend `owner`'s lease on a job it still holds; False when the job is finished or was taken over."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND owner = ? AND status IN ('pending', 'running')",
                (_lease_end(owner, lease_s), job_id, owner),
            )
        return changed > 0

    async def start_job(self, job_id: int) -> JobRecord:
        """Mark a job running and count the attempt (a job found 'running' at restart was interrupted)."""
        await self._update_job(
            job_id,
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, error = NULL, updated_at = ? WHERE id = ?",
        )
        return await self.get_job(job_id)

    async def attach_job_document(self, job_id: int, document_id: int) -> JobRecord:
        """Record the 'processing' document a job is writing, so a restart can find and drop it."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE jobs SET document_id = ?, updated_at = ? WHERE id = ?", (document_id, utc_now(), job_id)
            )
        if not changed:
            raise JobNotFound(job_id)
        return await self.get_job(job_id)

    async def finish_job(self, job_id: int, document_id: int | None) -> JobRecord:
        """Mark a job done; `document_id` is the paper it produced (or the existing one it duplicated)."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(FINISH_JOB, (document_id, utc_now(), job_id))
        if not changed:
            raise JobNotFound(job_id)
        return await self.get_job(job_id)

    async def fail_job(self, job_id: int, error: str) -> JobRecord:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE jobs SET status = 'failed', error = ?, updated_at = ? WHERE id = ?", (error, utc_now(), job_id)
            )
        if not changed:
            raise JobNotFound(job_id)
        return await self.get_job(job_id)

    async def suspend_job(self, job_id: int) -> JobRecord:
        """Put a job stopped cleanly (a signal, a shutdown) back to 'pending' for the next start: its half-written
        document, never visible, is deleted, the stored upload stays, and the attempt is not counted (attempts
        guard against files that crash the process, and this one did not)."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone("SELECT document_id, status FROM jobs WHERE id = ?", (job_id,))
            if row is None:
                raise JobNotFound(job_id)
            if row["status"] in ("pending", "running"):
                if row["document_id"] is not None:
                    await tx.execute(
                        "DELETE FROM documents WHERE id = ? AND status = 'processing'", (row["document_id"],)
                    )
                await tx.execute(
                    "UPDATE jobs SET status = 'pending', document_id = NULL, attempts = max(attempts - 1, 0), "
                    "owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ?",
                    (utc_now(), job_id),
                )
        return await self.get_job(job_id)

    async def get_job(self, job_id: int) -> JobRecord:
        row = await self._db.fetchone(f"{_JOB_SELECT} WHERE j.id = ?", (job_id,))
        if row is None:
            raise JobNotFound(job_id)
        return _job(row)

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Pending and running jobs of every index, oldest first: what to resume after a restart."""
        rows = await self._db.fetchall(f"{_JOB_SELECT} WHERE j.status IN ('pending', 'running') ORDER BY j.id")
        return [_job(row) for row in rows]

    async def _update_job(self, job_id: int, sql: str) -> None:
        async with self._db.transaction() as tx:
            changed = await tx.execute(sql, (utc_now(), job_id))
        if not changed:
            raise JobNotFound(job_id)

def _lease_end(owner: str | None, lease_s: float, now: datetime | None = None) -> str | None:
    if owner is None:
        return None
    return ((now or datetime.now(timezone.utc)) + timedelta(seconds=lease_s)).isoformat(timespec="milliseconds")
