"""Posted answers, votes on them, and the heartbeat (storage/activity.py)."""

from __future__ import annotations

import json
from pathlib import Path

from storage import CODEC_ID, Database


async def test_votes_are_recorded_only_on_known_answers_and_once_per_user(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "db.sqlite3") as db:
        a = await db.get_or_create_index("slack/T/C1", "enc", CODEC_ID, 8)
        b = await db.get_or_create_index("slack/T/C2", "enc", CODEC_ID, 8)
        await db.save_answer(a.id, "msg-1", "why?", json.dumps({"answer": "because"}))
        assert await db.get_answer(a.id, "msg-1") == ("why?", json.dumps({"answer": "because"}))
        assert await db.get_answer(b.id, "msg-1") is None
        assert await db.record_feedback(a.id, "msg-1", "u1", 1)
        assert await db.record_feedback(a.id, "msg-1", "u1", 1)  # a repeated reaction is not counted twice
        assert await db.record_feedback(a.id, "msg-1", "u2", -1)
        assert not await db.record_feedback(a.id, "msg-unknown", "u1", 1)
        assert not await db.record_feedback(b.id, "msg-1", "u1", 1)  # another channel's message ref
        votes = await db.list_feedback(a.id)
        assert [(v.user_id, v.vote, v.question) for v in votes] == [("u1", 1, "why?"), ("u2", -1, "why?")]
        assert json.loads(votes[0].answer_json) == {"answer": "because"}
        assert await db.list_feedback(b.id) == []


async def test_heartbeat_keeps_the_latest_beat(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "db.sqlite3") as db:
        assert await db.read_heartbeat() is None
        await db.write_heartbeat(11, 3, "CPU")
        await db.write_heartbeat(12, 5, "CUDA, 37/37 layers offloaded")
        beat = await db.read_heartbeat()
        assert beat is not None and (beat.pid, beat.queue_depth, beat.runs_on) == (12, 5, "CUDA, 37/37 layers offloaded")
        assert 0 <= beat.age_s < 60
