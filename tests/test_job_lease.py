"""Two processes on one data folder: a job another process is working on is left alone; a stale one is resumed."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rag_engine.engine import Engine
from bot.settings import Settings
from storage.codec import CODEC_ID
from storage.db import Database
from tests.conftest import REAL_PDFS

PAPER = REAL_PDFS / "distillation.pdf"


async def _live_job_of_another_process(db: Database, settings: Settings, lease_s: float) -> tuple[int, int]:
    """What a first process leaves in the file while it indexes PAPER: its job (held for `lease_s`) and the
    half-written document attached to it. Returns (job id, document id)."""
    index = await db.get_index("shared")
    data = PAPER.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    stored = settings.uploads_dir / f"{sha}.pdf"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(data)
    job = await db.create_job(index.id, str(stored), PAPER.name, sha, "alice", owner="1@other/abcd", lease_s=lease_s)
    await db.start_job(job.id)
    doc = await db.create_document(index.id, sha, "half", PAPER.name, "alice", 9)
    await db.attach_job_document(job.id, doc.id)
    return job.id, doc.id


async def test_claim_is_refused_while_the_holder_lease_runs(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    async with await Database.open(path) as first, await Database.open(path) as second:
        index = await first.get_or_create_index("x", "enc", CODEC_ID, 4)
        job = await first.create_job(index.id, "/u/a.pdf", "a.pdf", "a" * 64, None, owner="A", lease_s=60)
        assert not await second.claim_job(job.id, "B", 60)
        assert await first.claim_job(job.id, "A", 60)  # its own job: a renewal
        later = datetime.now(timezone.utc) + timedelta(seconds=61)
        assert await second.claim_job(job.id, "B", 60, now=later)  # A stopped renewing: stale, B takes it
        assert (await first.get_job(job.id)).owner == "B"
        assert not await first.renew_lease(job.id, "A", 60)  # A learns it lost the job
        await second.suspend_job(job.id)  # a clean stop hands the job back to whoever starts next
        assert await first.claim_job(job.id, "A", 60)


async def test_a_second_process_leaves_a_live_job_alone(settings: Settings) -> None:
    async with Engine.open(settings) as other, Engine.open(settings) as engine:
        encoder = await engine.encoders.get()
        await other.db.get_or_create_index("shared", encoder.model_id, CODEC_ID, encoder.dim)
        job_id, doc_id = await _live_job_of_another_process(other.db, settings, lease_s=600)

        assert await engine.resume_jobs() == []
        assert await engine.db.document_status(doc_id) == "processing"  # its half-written paper is untouched
        job = await engine.db.get_job(job_id)
        assert (job.status, job.owner, job.document_id) == ("running", "1@other/abcd", doc_id)


async def test_a_job_whose_lease_expired_is_resumed(settings: Settings) -> None:
    async with Engine.open(settings) as other, Engine.open(settings) as engine:
        encoder = await engine.encoders.get()
        await other.db.get_or_create_index("shared", encoder.model_id, CODEC_ID, encoder.dim)
        job_id, _ = await _live_job_of_another_process(other.db, settings, lease_s=-1)  # it died: lease over

        reports = await engine.resume_jobs()
        assert [r.status for r in reports] == ["indexed"]
        papers = await engine.papers("shared")  # the half-written "half" was dropped and the paper indexed again
        assert [d.title for d in papers] == ["Distilling the Knowledge in a Neural Network"]
        job = await engine.db.get_job(job_id)
        assert (job.status, job.document_id) == ("done", papers[0].id)


def test_a_holder_that_no_longer_runs_on_this_host_is_gone() -> None:
    import subprocess
    import sys

    from rag_engine.owner import new_owner, owner_is_gone

    me = new_owner()
    assert not owner_is_gone(me)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    assert owner_is_gone(f"{dead_pid}{me[me.index('@'):]}")
    assert not owner_is_gone(f"{dead_pid}@another-host/abcd")  # unknowable from here: the lease decides
