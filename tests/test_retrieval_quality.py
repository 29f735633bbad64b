"""Lexical search alone finds the answer page: questions written by reading the papers, answer pages checked by hand.

The questions paraphrase the papers (they are not copied sentences), and nothing in the retrieval code was tuned on
them. Random-weight ColBERT says nothing about quality, so the first test checks the BM25 half of the hybrid; the
MiniLM tests below check the ColBERT half and the fusion on real trained weights.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rag_engine.engine import Engine
from rag_engine.retrieval.search import Mode
from bot.settings import Settings
from tests.conftest import REAL_PDFS, make_settings

# (paper, question, pages on which the answer is stated)
QUESTIONS = [
    ("1706.03762.pdf", "Why is dot-product attention scaled by the square root of the key dimension?", {4}),
    ("1706.03762.pdf", "How many identical layers does the Transformer encoder stack have?", {3}),
    ("distillation.pdf", "What does raising the temperature do to the softmax distribution over classes?", {3}),
    ("distillation.pdf", "How well do soft targets generalize when only 3% of the speech training set is used?", {8}),
    ("ponder_net.pdf", "Which prior distribution over halting steps does the KL regularisation term use?", {4}),
    ("ponder_net.pdf", "Can PonderNet extrapolate on the parity task to input vectors with 96 elements?", {6}),
    ("2205.01068.pdf", "How many layers and attention heads does the 175B OPT model have?", {2}),
    ("2205.01068.pdf", "How does the carbon footprint of developing OPT-175B compare with GPT-3?", {1, 9}),
    ("1910.02054.pdf", "What are the three stages of ZeRO-DP: partitioning optimizer states, gradients and parameters?", {2, 10}),
    ("1803.02999.pdf", "How does Reptile update the initialization after training on a sampled task?", {1, 2, 3}),
]


async def test_lexical_search_puts_the_answer_page_in_the_top_5(settings: Settings) -> None:
    async with Engine.open(settings) as engine:
        doc_ids = {}
        for name in sorted({paper for paper, _, _ in QUESTIONS}):
            report = await engine.ingest("eval", (REAL_PDFS / name).read_bytes(), name)
            doc_ids[name] = report.doc_id
        found = []
        for paper, question, pages in QUESTIONS:
            hits = (await engine.search("eval", question, k=5, mode="lexical")).hits
            found.append(
                any(h.doc_id == doc_ids[paper] and any(h.page_start <= p <= h.page_end for p in pages) for h in hits)
            )
        misses = [q for (_, q, _), ok in zip(QUESTIONS, found, strict=True) if not ok]
        assert sum(found) >= 9, f"answer page missing from the top 5 for: {misses}"


# --- the same questions on a real trained encoder ----------------------------------------------------------------------
# all-MiniLM-L6-v2 (real weights, not ColBERT-trained) read by the project's ColBERT path: with it the ColBERT half and
# the hybrid fusion are measured, not just the BM25 half. Measured on this set (2-core dev CPU, 2026-12): colbert 10/10,
# hybrid 10/10; the thresholds sit one below. (The harness's retrieval row measures the same on 48 more questions.)
MINILM_THRESHOLDS = {"colbert": 9, "hybrid": 9}


@pytest.fixture(scope="module")
def minilm_index(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path, minilm_colbert: Path) -> Settings:
    """The six papers indexed once with the MiniLM checkpoint (encoding them is the slow part)."""
    settings = make_settings(tmp_path_factory.mktemp("minilm") / "data", tiny_models, colbert_model=str(minilm_colbert))

    async def ingest() -> None:
        async with Engine.open(settings) as engine:
            for name in sorted({paper for paper, _, _ in QUESTIONS}):
                report = await engine.ingest("eval", (REAL_PDFS / name).read_bytes(), name)
                assert report.status == "indexed", report.message

    asyncio.run(ingest())
    return settings


async def _answer_pages_found(settings: Settings, mode: Mode) -> list[str]:
    """The questions whose answer page is NOT in the top 5 in `mode`."""
    async with Engine.open(settings) as engine:
        doc_ids = {d.filename: d.id for d in await engine.papers("eval")}
        misses = []
        for paper, question, pages in QUESTIONS:
            hits = (await engine.search("eval", question, k=5, mode=mode)).hits
            if not any(h.doc_id == doc_ids[paper] and any(h.page_start <= p <= h.page_end for p in pages) for h in hits):
                misses.append(question)
        return misses


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["colbert", "hybrid"])
async def test_minilm_puts_the_answer_page_in_the_top_5(minilm_index: Settings, mode: Mode) -> None:
    misses = await _answer_pages_found(minilm_index, mode)
    found = len(QUESTIONS) - len(misses)
    assert found >= MINILM_THRESHOLDS[mode], f"{mode}: {found}/{len(QUESTIONS)}; answer page missing for {misses}"
