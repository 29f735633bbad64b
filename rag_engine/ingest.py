"""Use case: a file's bytes → an indexed paper. Every upload is a job that survives a restart."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from pathlib import Path

from rag_engine.chunking import chunk_pages
from rag_engine.encoding import EncoderService
from rag_engine.errors import UnsupportedFile
from rag_engine.owner import new_owner, owner_is_gone
from rag_engine.pdf.isolated import ExtractionBudget, extract_pdf_isolated
from rag_engine.settings import EngineSettings
from rag_engine.types import IngestProgress, IngestReport
from rag_engine.wording import plural
from storage.codec import CODEC_ID
from storage.db import Database
from storage.errors import DuplicateDocument
from storage.files import private_dir
from storage.records import JobRecord, NewChunk

log = logging.getLogger(__name__)

Progress = Callable[[IngestProgress], Awaitable[None]]

#: A job interrupted this many times (a crash while reading it, say) is not tried again.
MAX_ATTEMPTS = 3


async def _quiet(_: IngestProgress) -> None:
    return None


class Ingestor:
    def __init__(self, db: Database, encoders: EncoderService, settings: EngineSettings) -> None:
        self._db = db
        self._encoders = encoders
        self._settings = settings
        self._uploads = settings.uploads_dir
        self._running: set[asyncio.Task[IngestReport]] = set()
        self._owner = new_owner()  # holds the jobs this process works on
        self._uploads_lock = asyncio.Lock()
        #: one child process per PDF being read: a flood of uploads queues here instead of forking without bound,
        #: and a paper being encoded leaves the cores to the next ones' reading
        self.readers = settings.pdf_readers or min(8, os.cpu_count() or 1)
        self._reading = asyncio.Semaphore(self.readers)

    async def ingest(
        self,
        index_name: str,
        data: bytes,
        filename: str,
        uploader: str | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Add one file to an index. Bad input comes back as a failed report, never as an exception."""
        progress = progress or _quiet
        started = time.perf_counter()
        encoder = await self._encoders.get()
        index = await self._db.get_or_create_index(index_name, encoder.model_id, CODEC_ID, encoder.dim)
        sha256 = hashlib.sha256(data).hexdigest()
        existing = await self._db.find_document(index.id, sha256)
        if existing is not None:
            state = "already indexed" if existing.status == "ready" else "already being indexed"
            return IngestReport(
                status="duplicate",
                doc_id=existing.id,
                title=existing.title,
                pages=existing.page_count,
                chunks=existing.chunk_count,
                message=f"*{existing.title}* is {state} here.",
            )
        async with self._uploads_lock:  # a removal in this process cannot delete the file before the job holds it
            path = await asyncio.to_thread(self._store_upload, sha256, data)
            job = await self._db.create_job(
                index.id, str(path), filename, sha256, uploader, owner=self._owner, lease_s=self._settings.job_lease_s
            )
        report = await self._run(job, data, progress)
        return _with_time(report, time.perf_counter() - started)

    async def resume_unfinished(self, progress: Progress | None = None) -> list[IngestReport]:
        """Finish (or give up on, with a reason) the jobs a previous process left behind."""
        reports = []
        for job in await self._db.unfinished_jobs():
            # A holder on this host that no longer runs (killed, crashed) gives its job up at once; else its lease decides.
            gone = job.owner if owner_is_gone(job.owner) else None
            if not await self._db.claim_job(job.id, self._owner, self._settings.job_lease_s, gone_owner=gone):
                log.info("job %d (%s) is being worked on by %s; leaving it alone", job.id, job.filename, job.owner)
                continue
            if job.document_id is not None:
                if await self._db.document_status(job.document_id) == "ready":  # crashed after the commit
                    await self._db.finish_job(job.id, job.document_id)
                    continue
                await self._db.delete_document(job.document_id)  # half-written: start it again from the file
            if job.attempts >= MAX_ATTEMPTS:
                await self._db.fail_job(job.id, f"gave up after {job.attempts} interrupted attempts")
                reports.append(_failed("interrupted", f"Indexing {job.filename} was interrupted too often; upload it again."))
                continue
            try:
                data = await asyncio.to_thread(Path(job.path).read_bytes)
            except OSError as error:
                await self._db.fail_job(job.id, f"the stored upload is gone: {error}")
                reports.append(_failed("interrupted", f"Indexing {job.filename} was interrupted; please upload it again."))
                continue
            log.info("resuming ingestion job %d (%s, attempt %d)", job.id, job.filename, job.attempts + 1)
            reports.append(await self._run(job, data, progress or _quiet))
        return reports

    async def _run(self, job: JobRecord, data: bytes, progress: Progress) -> IngestReport:
        await self._db.start_job(job.id)
        self._running.add(asyncio.current_task())  # type: ignore[arg-type]
        lease = asyncio.create_task(self._keep_lease(job), name=f"lease-job-{job.id}")
        try:
            return await self._attempt(job, data, progress)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Stopped from outside (Ctrl-C, SIGTERM, shutdown), not by the file: keep the upload, resume next start.
            await asyncio.shield(self._db.suspend_job(job.id))
            log.info("ingestion of %s stopped; it resumes at the next start", job.filename)
            raise
        finally:
            lease.cancel()
            self._running.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _keep_lease(self, job: JobRecord) -> None:
        """Renew this process's lease on `job` while it works on it, so other processes leave it alone."""
        lease_s = self._settings.job_lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                if not await self._db.renew_lease(job.id, self._owner, lease_s):
                    log.warning("lost the lease on job %d (%s)", job.id, job.filename)
                    return
            except Exception:  # a busy database: try again at the next beat, well inside the lease
                log.warning("renewing the lease on job %d failed", job.id, exc_info=True)

    async def stop(self) -> None:
        """Stop the ingestions running in this process, leaving their jobs to resume at the next start."""
        running = [task for task in self._running if task is not asyncio.current_task()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _attempt(self, job: JobRecord, data: bytes, progress: Progress) -> IngestReport:
        s = self._settings
        try:
            if self._reading.locked():
                await progress(IngestProgress(f"Waiting to read {job.filename}: {plural(self.readers, 'paper')} "
                                              "being read already…"))
            async with self._reading:
                clock = time.perf_counter()  # after the wait: waiting is not reading time
                await progress(IngestProgress(f"Reading {job.filename}…"))
                budget = ExtractionBudget(cpu_seconds=s.pdf_cpu_seconds, memory_bytes=s.pdf_memory_mb << 20)
                pdf = await extract_pdf_isolated(  # a killable child process: hostile files cost at most `budget`
                    data, max_bytes=int(s.max_file_mb * 1024 * 1024), max_pages=s.max_pages, filename=job.filename,
                    budget=budget,
                )
        except UnsupportedFile as error:
            await self._db.fail_job(job.id, str(error))
            await self.release_uploads([job.sha256])
            log.info("refused %s: %s", job.filename, error.reason)
            return _failed(error.reason, str(error))
        stages = [("extract", time.perf_counter() - clock)]

        try:
            doc = await self._db.create_document(
                job.index_id, job.sha256, pdf.title, job.filename, job.uploader, pdf.page_count
            )
        except DuplicateDocument as duplicate:  # the same file, uploaded twice at once: the other upload wins
            await self._db.finish_job(job.id, duplicate.existing.id)
            return IngestReport(status="duplicate", doc_id=duplicate.existing.id, title=duplicate.existing.title,
                                pages=duplicate.existing.page_count, message=f"*{duplicate.existing.title}* is already being indexed here.")
        await self._db.attach_job_document(job.id, doc.id)
        try:
            await progress(IngestProgress(f"Read {plural(pdf.page_count, 'page')} of *{pdf.title}*; splitting into passages…"))
            encoder = await self._encoders.get()
            limit = await self._encoders.chunk_token_limit()
            clock = time.perf_counter()
            chunks = await asyncio.to_thread(
                chunk_pages, pdf.pages, count_tokens=encoder.count_tokens, max_tokens=limit, overlap=s.chunk_overlap
            )
            stages.append(("chunk", time.perf_counter() - clock))
            clock = time.perf_counter()

            async def on_batch(done: int, total: int) -> None:
                await progress(IngestProgress(f"Encoding passages: {done}/{total}", done, total))

            vectors = await self._encoders.encode_documents([c.text for c in chunks], on_batch)
            stages.append(("encode", time.perf_counter() - clock))
            clock = time.perf_counter()
            rows = [
                NewChunk(c.text, c.page_start, c.page_end, c.section, c.ordinal, v)
                for c, v in zip(chunks, vectors, strict=True)
            ]
            doc = await self._db.complete_document(doc.id, rows, job_id=job.id)  # the job is done with it
            stages.append(("store", time.perf_counter() - clock))
        except Exception as error:
            # Broken mid-way: the document never became visible; record why and re-raise.
            await asyncio.shield(self._abandon(job, doc.id, repr(error)))
            raise
        log.info("indexed %s: %d pages, %d chunks (%s)", job.filename, pdf.page_count, len(rows),
                 ", ".join(f"{name} {seconds:.2f}s" for name, seconds in stages))
        return IngestReport(status="indexed", doc_id=doc.id, title=doc.title, pages=doc.page_count, chunks=len(rows),
                            stages=tuple((name, round(seconds, 3)) for name, seconds in stages))

    async def _abandon(self, job: JobRecord, doc_id: int, why: str) -> None:
        await self._db.delete_document(doc_id)
        await self._db.fail_job(job.id, why)
        await self.release_uploads([job.sha256])

    async def release_uploads(self, shas: Collection[str]) -> int:
        """Delete the stored uploads of `shas` that nothing needs any more (no live document in any index, no
        unfinished job): call after removing papers. Returns how many files went."""
        if not shas:
            return 0
        async with self._uploads_lock:
            unused = set(shas) - await self._db.uploads_in_use(set(shas))
            paths = [self._uploads / f"{sha}.pdf" for sha in sorted(unused)]
            gone = await asyncio.to_thread(_unlink_all, paths)
        if gone:
            log.info("deleted %d stored upload(s) no paper uses any more", gone)
        return gone

    def _store_upload(self, sha256: str, data: bytes) -> Path:
        """Keep the original bytes: a restarted job reads them again, and a changed encoder can re-encode."""
        private_dir(self._uploads)
        path = self._uploads / f"{sha256}.pdf"
        if not path.exists():
            # The same file may arrive in two channels at once: each write gets its own temporary file, and the
            # atomic rename makes whichever finishes last win with identical bytes.
            fd, partial = tempfile.mkstemp(dir=self._uploads, prefix=f".{sha256}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(partial, path)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        return path


def _unlink_all(paths: list[Path]) -> int:
    gone = 0
    for path in paths:
        try:
            path.unlink()
            gone += 1
        except FileNotFoundError:
            pass
    return gone


def _failed(reason: str, message: str) -> IngestReport:
    return IngestReport(status="failed", reason=reason, message=message)


def _with_time(report: IngestReport, seconds: float) -> IngestReport:
    return replace(report, seconds=round(seconds, 3))
