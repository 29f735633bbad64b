"""Housekeeping: finished jobs and orphans pruned, answers and votes kept only as long as configured, and a
channel's whole index dropped when the bot leaves it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from storage.connection import Connection


def _cutoff(days: float, now: datetime | None) -> str:
    return ((now or datetime.now(timezone.utc)) - timedelta(days=days)).isoformat(timespec="milliseconds")


class MaintenanceRepository:
    _db: Connection

    async def prune_jobs(self, older_than_days: float, *, now: datetime | None = None) -> int:
        """Delete done and failed jobs last touched more than `older_than_days` ago; returns how many."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_at < ?",
                (_cutoff(older_than_days, now),),
            )

    async def prune_orphan_documents(self, grace_days: float, *, now: datetime | None = None) -> int:
        """Delete documents that hold nothing and never will, untouched for `grace_days`: failed ones, 'processing'
        ones no unfinished job is writing (left by a crash), and ready ones without chunks. Returns how many."""
        cutoff = _cutoff(grace_days, now)
        async with self._db.transaction() as tx:
            empty_ready = await tx.fetchall(
                "SELECT DISTINCT index_id FROM documents d WHERE status = 'ready' AND updated_at < ? "
                "AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id)",
                (cutoff,),
            )
            for row in empty_ready:  # search saw these: its caches must reload
                await tx.execute("UPDATE indexes SET version = version + 1 WHERE id = ?", (row[0],))
            return await tx.execute(
                """
                DELETE FROM documents AS d WHERE d.updated_at < :cutoff AND (
                    d.status = 'failed'
                    OR (d.status = 'processing' AND NOT EXISTS (
                        SELECT 1 FROM jobs j WHERE j.document_id = d.id AND j.status IN ('pending', 'running')))
                    OR (d.status = 'ready' AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id))
                )
                """,
                {"cutoff": cutoff},
            )

    async def prune_answers(self, older_than_days: float, *, now: datetime | None = None) -> int:
        """Forget posted answers (and the votes on them) and votes older than `older_than_days`; returns how many
        answers went."""
        cutoff = _cutoff(older_than_days, now)
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM feedback WHERE created_at < ?", (cutoff,))
            return await tx.execute("DELETE FROM answers WHERE created_at < ?", (cutoff,))

    async def drop_index(self, name: str) -> set[str]:
        """Delete the index `name` with everything in it (papers, passages, jobs, answers, votes); returns the
        SHA-256 of its documents, whose stored uploads may now be unused. Nothing happens for an unknown name."""
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT DISTINCT d.sha256 FROM documents d JOIN indexes i ON i.id = d.index_id WHERE i.name = ? "
                "UNION SELECT DISTINCT j.sha256 FROM jobs j JOIN indexes i ON i.id = j.index_id WHERE i.name = ?",
                (name, name),
            )
            await tx.execute("DELETE FROM indexes WHERE name = ?", (name,))
        return {str(row[0]) for row in rows}

    async def index_names_under(self, prefix: str) -> list[str]:
        """Names of the indexes that start with `prefix` (e.g. every channel of one server: 'discord/123/')."""
        rows = await self._db.fetchall(
            "SELECT name FROM indexes WHERE substr(name, 1, length(:p)) = :p ORDER BY name", {"p": prefix}
        )
        return [str(row[0]) for row in rows]
