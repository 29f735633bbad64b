"""Ingestion through the Engine: real papers, every edge-case file, duplicates, isolation, resumed jobs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag_engine.engine import Engine
from bot.settings import Settings
from tests.conftest import EDGE_PDFS, REAL_PDFS

# From ../shared/data/pdfs/edge/MANIFEST.md: the outcome each file must get ("indexed" or the refusal's reason code).
EDGE_OUTCOMES = {
    "ok_minimal.pdf": "indexed",
    "encrypted_user_password.pdf": "encrypted",
    "encrypted_owner_only.pdf": "indexed",
    "truncated_half.pdf": {"damaged", "no_pages"},
    "truncated_header_only.pdf": "damaged",
    "broken_xref.pdf": {"indexed", "damaged"},
    "empty.pdf": "empty",
    "not_a_pdf.pdf": "not_pdf",
    "html_named_pdf.pdf": "not_pdf",
    "zero_pages.pdf": "no_pages",
    "many_pages_1200.pdf": "too_large",
    "scanned_image_only.pdf": "no_text",
    "deflate_bomb_200mb.pdf": "no_text",
    "prompt_injection.pdf": "indexed",
    "rotated_page.pdf": "indexed",
    "unicode_mixed.pdf": "indexed",
    "title_is_filename.pdf": "indexed",
}


async def test_every_edge_file_gets_its_outcome_and_nothing_indexed_is_lost(settings: Settings) -> None:
    async with Engine.open(settings) as engine:
        first = await engine.ingest("lab", (REAL_PDFS / "distillation.pdf").read_bytes(), "distillation.pdf")
        assert first.status == "indexed"
        assert sorted(p.name for p in EDGE_PDFS.glob("*.pdf")) == sorted(EDGE_OUTCOMES)
        for name, expected in EDGE_OUTCOMES.items():
            report = await engine.ingest("lab", (EDGE_PDFS / name).read_bytes(), name)
            outcome = "indexed" if report.status == "indexed" else report.reason
            allowed = expected if isinstance(expected, set) else {expected}
            assert outcome in allowed, f"{name}: {report}"
            if report.status == "failed":
                assert report.message and len(report.message) > 20, f"{name} needs a sentence for the user"
        assert await engine.db.integrity_check() == "ok"
        titles = {d.title for d in await engine.papers("lab")}
        assert any("Distilling" in t for t in titles)
        assert not any("Microsoft Word" in t for t in titles), "a junk metadata title must be replaced"
        hits = (await engine.search("lab", "soft targets temperature", mode="lexical")).hits
        assert hits and hits[0].doc_id == first.doc_id
        # a refused upload leaves no job running and no stored bytes behind
        assert await engine.db.unfinished_jobs() == []


async def test_real_papers_ingest_with_the_right_pages(settings: Settings) -> None:
    """Phrases read on known pages are found in chunks whose page span covers that page."""
    known = [
        ("1706.03762.pdf", "we suspect that for large values of", 4),
        ("1706.03762.pdf", "stack of N = 6 identical layers", 3),
        ("distillation.pdf", "produces a softer probability distribution", 3),
        ("ponder_net.pdf", "geometric prior distribution", 4),
    ]
    async with Engine.open(settings) as engine:
        for pdf in sorted(REAL_PDFS.glob("*.pdf")):
            report = await engine.ingest("papers", pdf.read_bytes(), pdf.name)
            assert report.status == "indexed", f"{pdf.name}: {report.message}"
            assert report.pages > 0 and report.chunks > 0
            # where the time went (bench/bench_ingest.py prints it): each stage once, in order, within the total
            assert [name for name, _ in report.stages] == ["extract", "chunk", "encode", "store"]
            assert all(seconds > 0 for _, seconds in report.stages)
            assert sum(seconds for _, seconds in report.stages) <= report.seconds + 0.01
        docs = {d.filename: d for d in await engine.papers("papers")}
        assert len(docs) == len(list(REAL_PDFS.glob("*.pdf")))
        for filename, phrase, page in known:
            hits = (await engine.search("papers", phrase, k=20, mode="lexical")).hits
            squashed = re.sub(r"\s+", " ", phrase.lower())
            matching = [h for h in hits if h.doc_id == docs[filename].id and squashed in re.sub(r"\s+", " ", h.text.lower())]
            assert matching, f"'{phrase}' not found in {filename}"
            assert all(h.page_start <= page <= h.page_end for h in matching), (phrase, [(h.page_start, h.page_end) for h in matching])


async def test_same_bytes_are_a_duplicate_but_fine_in_another_index(settings: Settings) -> None:
    data = (EDGE_PDFS / "ok_minimal.pdf").read_bytes()
    async with Engine.open(settings) as engine:
        first = await engine.ingest("a", data, "ok.pdf")
        again = await engine.ingest("a", data, "renamed.pdf")
        elsewhere = await engine.ingest("b", data, "ok.pdf")
        assert (first.status, again.status, elsewhere.status) == ("indexed", "duplicate", "indexed")
        assert again.doc_id == first.doc_id
        assert len(await engine.papers("a")) == 1


async def test_search_never_crosses_indexes(settings: Settings) -> None:
    async with Engine.open(settings) as engine:
        a = await engine.ingest("discord/1/10", (REAL_PDFS / "distillation.pdf").read_bytes(), "d.pdf")
        b = await engine.ingest("discord/1/11", (REAL_PDFS / "ponder_net.pdf").read_bytes(), "p.pdf")
        for mode in ("hybrid", "colbert", "lexical"):
            hits_a = (await engine.search("discord/1/10", "halting ponder steps distillation", k=50, mode=mode)).hits
            hits_b = (await engine.search("discord/1/11", "halting ponder steps distillation", k=50, mode=mode)).hits
            assert hits_a and {h.doc_id for h in hits_a} == {a.doc_id}
            assert hits_b and {h.doc_id for h in hits_b} == {b.doc_id}


async def test_remove_and_clear_take_papers_out_of_search(settings: Settings) -> None:
    async with Engine.open(settings) as engine:
        a = await engine.ingest("x", (REAL_PDFS / "distillation.pdf").read_bytes(), "d.pdf")
        await engine.ingest("x", (REAL_PDFS / "ponder_net.pdf").read_bytes(), "p.pdf")
        await engine.remove("x", a.doc_id)
        hits = (await engine.search("x", "distillation soft targets", k=50, mode="colbert")).hits
        assert hits and a.doc_id not in {h.doc_id for h in hits}
        assert await engine.clear("x") == 1
        assert (await engine.search("x", "halting", mode="hybrid")).hits == []


async def test_an_index_refuses_vectors_from_another_encoder(settings: Settings, tmp_path: Path) -> None:
    async with Engine.open(settings) as engine:
        await engine.ingest("x", (EDGE_PDFS / "ok_minimal.pdf").read_bytes(), "ok.pdf")
        await engine.db.get_or_create_index("other", "some-other-encoder", "f16-v1", 128)
    from storage.errors import EncoderMismatch

    async with Engine.open(settings) as engine:
        with pytest.raises(EncoderMismatch, match="Re-encode"):
            await engine.search("other", "anything", mode="colbert")
        assert (await engine.search("other", "anything", mode="lexical")).hits == []


async def test_a_flood_of_uploads_reads_at_most_pdf_readers_at_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads arriving together queue for the PDF readers (child processes) and tell the user so; all get indexed."""
    import asyncio

    from rag_engine import ingest as ingest_module

    real = ingest_module.extract_pdf_isolated
    reading = peak = 0

    async def counted(*args, **kwargs):
        nonlocal reading, peak
        reading += 1
        peak = max(peak, reading)
        try:
            return await real(*args, **kwargs)
        finally:
            reading -= 1

    monkeypatch.setattr(ingest_module, "extract_pdf_isolated", counted)
    settings.pdf_readers = 2
    papers = sorted(REAL_PDFS.glob("*.pdf"))[:5]
    said: list[str] = []

    async def progress(step) -> None:
        said.append(step.message)

    async with Engine.open(settings) as engine:
        reports = await asyncio.gather(
            *(engine.ingest("flood", p.read_bytes(), p.name, progress=progress) for p in papers)
        )
        assert [r.status for r in reports] == ["indexed"] * len(papers)
        assert peak == 2
        assert sum(m.startswith("Waiting to read") and "2 papers being read already" in m for m in said) >= 3
        assert len(await engine.papers("flood")) == len(papers)
