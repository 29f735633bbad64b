"""Hostile PDFs (issue #9): each gets its outcome through the real ingest path while the event loop keeps ticking, a
document over its budget is refused with its reason and never retried, and no stage costs per point of page width."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import tracemalloc
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path

import pytest

from rag_engine.engine import Engine
from rag_engine.errors import OverBudget
from rag_engine.pdf import extract_pdf
from rag_engine.pdf.isolated import ExtractionBudget, extract_pdf_isolated
from bot.settings import Settings
from scripts.make_hostile_pdfs import HOSTILE
from storage.codec import CODEC_ID
from tests.conftest import make_settings

# The outcome each hostile file must get: "indexed", or the refusal's reason code.
OUTCOMES = {
    "long_word.pdf": "indexed",
    "tiny_objects.pdf": "indexed",
    "wide_page.pdf": "indexed",
    "nested_forms.pdf": "over_budget",
    "many_pages.pdf": "indexed",
}
#: Small budgets keep the refused file cheap; every other hostile file needs well under them.
CPU_SECONDS = 6.0
MEMORY_MB = 1024
TICK_S = 0.05


@cache
def _hostile(name: str) -> bytes:
    return HOSTILE[name]()


@pytest.fixture
def hostile_settings(tmp_path: Path, tiny_models: Path) -> Settings:
    return make_settings(tmp_path / "data", tiny_models, pdf_cpu_seconds=CPU_SECONDS, pdf_memory_mb=MEMORY_MB)


@contextlib.asynccontextmanager
async def _largest_tick_gap() -> AsyncIterator[list[float]]:
    """A timer task ticking every TICK_S; yields a one-item list holding the largest gap seen between two ticks."""
    largest = [0.0]

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            largest[0] = max(largest[0], now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        yield largest
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def test_every_hostile_file_has_an_expected_outcome() -> None:
    assert sorted(HOSTILE) == sorted(OUTCOMES)


@pytest.mark.parametrize("name", sorted(OUTCOMES))
async def test_hostile_file_gets_its_outcome_while_the_event_loop_keeps_ticking(
    name: str, hostile_settings: Settings
) -> None:
    data = _hostile(name)
    async with Engine.open(hostile_settings) as engine:
        await engine.encoders.get()  # loading the models is not the file's doing
        async with _largest_tick_gap() as gap:
            report = await engine.ingest("lab", data, name)
        outcome = "indexed" if report.status == "indexed" else report.reason
        assert outcome == OUTCOMES[name], report
        assert gap[0] < 1.0, f"the event loop stalled {gap[0]:.2f} s while {name} was read"
        if report.status == "failed":
            assert "I allow for one document" in report.message
        else:
            assert report.chunks and report.chunks > 0
        assert await engine.db.unfinished_jobs() == []


async def test_a_document_over_budget_is_refused_on_resume_and_then_never_retried(hostile_settings: Settings) -> None:
    """A crash while a hostile file was read leaves its job running; the resume refuses it once, for good."""
    data = _hostile("nested_forms.pdf")
    async with Engine.open(hostile_settings) as engine:
        encoder = await engine.encoders.get()
        index = await engine.db.get_or_create_index("lab", encoder.model_id, CODEC_ID, encoder.dim)
        sha256 = hashlib.sha256(data).hexdigest()
        path = hostile_settings.uploads_dir / f"{sha256}.pdf"  # where ingest stores an upload
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        job = await engine.db.create_job(index.id, str(path), "nested_forms.pdf", sha256, None)
        await engine.db.start_job(job.id)  # as a process killed while reading it left it

        async with _largest_tick_gap() as gap:
            reports = await engine.resume_jobs()
        assert [(r.status, r.reason) for r in reports] == [("failed", "over_budget")]
        assert gap[0] < 1.0
        failed = await engine.db.get_job(job.id)
        assert failed.status == "failed" and failed.attempts == 2
        assert await engine.db.unfinished_jobs() == []
        assert await engine.resume_jobs() == []  # the next restart does not read it again
        assert not path.exists()


async def test_over_budget_says_whether_time_or_memory_ran_out() -> None:
    data = _hostile("nested_forms.pdf")
    limits = {"max_bytes": 2**26, "max_pages": 600, "filename": "nested_forms.pdf"}
    with pytest.raises(OverBudget, match=r"longer than the 2 s"):
        await extract_pdf_isolated(data, **limits, budget=ExtractionBudget(cpu_seconds=2, memory_bytes=2 << 30))
    with pytest.raises(OverBudget, match="more memory"):
        await extract_pdf_isolated(data, **limits, budget=ExtractionBudget(cpu_seconds=120, memory_bytes=400 << 20))


async def test_a_cancelled_extraction_kills_its_process(monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_exec

    async def recording(*args: object, **kwargs: object) -> asyncio.subprocess.Process:
        spawned.append(await spawn(*args, **kwargs))
        return spawned[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    task = asyncio.create_task(extract_pdf_isolated(
        _hostile("nested_forms.pdf"), max_bytes=2**26, max_pages=600, budget=ExtractionBudget(120, 2 << 30)
    ))
    while not spawned:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert spawned[0].returncode is not None  # killed and reaped, not left reading the file


def test_a_very_wide_page_costs_nothing_per_point_of_width() -> None:
    """10^8 pt wide: the column search used to allocate a counter per point (760 MiB)."""
    tracemalloc.start()
    try:
        pdf = extract_pdf(_hostile("wide_page.pdf"), max_bytes=2**26, max_pages=600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "Left column words of the page, row 7." in pdf.pages[0].text
    assert "Right column words, row 7." in pdf.pages[0].text
    assert peak < 64 << 20, f"{peak >> 20} MiB"
