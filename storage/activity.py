"""What happens around answers: posted answers, the reactions on them, and the running bot's heartbeat."""

from __future__ import annotations

from datetime import datetime, timezone

from storage.connection import Connection
from storage.records import FeedbackRecord, Heartbeat
from storage.repository import utc_now


class ActivityRepository:
    _db: Connection

    async def save_answer(self, index_id: int, message_ref: str, question: str, answer_json: str) -> None:
        """Remember the answer shown in `message_ref` (re-posting the same message replaces it)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                """
                INSERT INTO answers (index_id, message_ref, question, answer_json, created_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (index_id, message_ref)
                DO UPDATE SET question = excluded.question, answer_json = excluded.answer_json
                """,
                (index_id, message_ref, question, answer_json, utc_now()),
            )

    async def get_answer(self, index_id: int, message_ref: str) -> tuple[str, str] | None:
        """(question, answer_json) of the answer shown in `message_ref`, if it was remembered."""
        row = await self._db.fetchone(
            "SELECT question, answer_json FROM answers WHERE index_id = ? AND message_ref = ?", (index_id, message_ref)
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def record_feedback(self, index_id: int, message_ref: str, user_id: str, vote: int) -> bool:
        """Record a vote on a remembered answer; False when `message_ref` holds no answer of this index."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT id FROM answers WHERE index_id = ? AND message_ref = ?", (index_id, message_ref)
            )
            if row is None:
                return False
            await tx.execute(
                "INSERT OR IGNORE INTO feedback (answer_id, user_id, vote, created_at) VALUES (?, ?, ?, ?)",
                (int(row[0]), user_id, vote, utc_now()),
            )
        return True

    async def list_feedback(self, index_id: int) -> list[FeedbackRecord]:
        rows = await self._db.fetchall(
            """
            SELECT a.message_ref, f.user_id, f.vote, a.question, a.answer_json, f.created_at
            FROM feedback f JOIN answers a ON a.id = f.answer_id
            WHERE a.index_id = ? ORDER BY f.id
            """,
            (index_id,),
        )
        return [FeedbackRecord(**dict(row)) for row in rows]

    async def write_heartbeat(self, pid: int, queue_depth: int, runs_on: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                """
                INSERT INTO heartbeat (id, pid, queue_depth, runs_on, beat_at) VALUES (1, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, queue_depth = excluded.queue_depth,
                    runs_on = excluded.runs_on, beat_at = excluded.beat_at
                """,
                (pid, queue_depth, runs_on, utc_now()),
            )

    async def read_heartbeat(self) -> Heartbeat | None:
        row = await self._db.fetchone("SELECT pid, queue_depth, runs_on, beat_at FROM heartbeat WHERE id = 1")
        if row is None:
            return None
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(row["beat_at"])).total_seconds()
        return Heartbeat(int(row["pid"]), int(row["queue_depth"]), str(row["runs_on"]), str(row["beat_at"]), age)
