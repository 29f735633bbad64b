"""Opening and closing everything a running bot needs, in one place (the entry points' lifecycle)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from bot.core import Core
from bot.download import Downloader
from rag_engine.answer import Answerer
from rag_engine.engine import Engine
from rag_engine.errors import ModelUnavailable
from rag_engine.hub import resolve_model_file
from rag_engine.maintenance import prune
from bot.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
MAINTENANCE_S = 24 * 3600.0


@contextlib.asynccontextmanager
async def open_core(settings: Settings, *, heartbeat: bool = True) -> AsyncIterator[Core]:
    """Database, models (both loaded now), worker queue and downloader, opened in order and closed in reverse.

    Unfinished ingestion jobs of a previous run are resumed in the background.
    """
    async with Engine.open(settings) as engine:
        await _load_encoder(engine, settings)  # a missing model is reported at start, not at the first upload
        async with Answerer.open(engine, settings) as answerer:
            downloader = Downloader(
                settings.download_hosts,
                max_bytes=int(settings.max_file_mb * 1024 * 1024),
                deadline_s=settings.download_deadline_s,
            )
            core = Core(answerer, settings, downloader)
            tasks = [asyncio.create_task(_resume(engine), name="resume-jobs")]
            if heartbeat:
                tasks.append(asyncio.create_task(_heartbeat(engine, answerer), name="heartbeat"))
                tasks.append(asyncio.create_task(_maintenance(engine), name="maintenance"))
            try:
                yield core
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await engine.ingestor.stop()  # before the database closes: their jobs go back to pending
                await downloader.close()


async def _load_encoder(engine: Engine, settings: Settings) -> None:
    """Load the encoder; when it is missing, check the LLM file too, so that one run names every missing model."""
    try:
        await engine.encoders.get()
    except ModelUnavailable as missing_encoder:
        problems = [str(missing_encoder)]
        if settings.llm_backend == "llama_cpp":
            try:
                await asyncio.to_thread(resolve_model_file, settings.llm_model, settings.models_dir)
            except ModelUnavailable as missing_llm:
                problems.append(str(missing_llm))
        raise ModelUnavailable("\n".join(problems)) from missing_encoder


async def _resume(engine: Engine) -> None:
    try:
        for report in await engine.resume_jobs():
            log.info("resumed job: %s %s", report.status, report.title or report.message)
    except Exception:
        log.exception("resuming unfinished ingestion jobs failed")


async def _heartbeat(engine: Engine, answerer: Answerer) -> None:
    """Lets `paperbot status`, in another process, see that the bot runs and how busy it is."""
    while True:
        try:
            await engine.heartbeat(answerer.queue_depth, answerer.backend_info().runs_on)
        except Exception:
            log.exception("heartbeat failed")
        await asyncio.sleep(HEARTBEAT_S)


async def _maintenance(engine: Engine) -> None:
    """Retention and orphan pruning, at start and then daily, for a bot that runs for months."""
    while True:
        try:
            await prune(engine)
        except Exception:
            log.exception("pruning failed")
        await asyncio.sleep(MAINTENANCE_S)
