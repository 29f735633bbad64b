"""Question → ranked passages, in one of three modes: ColBERT, lexical (FTS5 BM25) or both fused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rag_engine.retrieval.fusion import reciprocal_rank_fusion
from rag_engine.retrieval.scorer import Scorer
from rag_engine.types import Hit
from storage.db import Database
from storage.records import IndexRecord

Mode = Literal["hybrid", "colbert", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "colbert", "lexical")

#: Each ranking contributes this many candidates per passage wanted, so fusion can promote a passage ranked
#: moderately by both methods over one ranked first by a single method.
CANDIDATES_PER_HIT = 4


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    colbert_best: float | None  # best MaxSim divided by query length (0..1), None when ColBERT was not used
    lexical_matches: int  # how many passages share a content word with the question


class Retriever:
    """Puts an index, a scorer and the lexical search together; knows nothing about how vectors are made."""

    def __init__(self, db: Database, scorer: Scorer, encode_query: Callable[[str], Awaitable[np.ndarray]]) -> None:
        self._db = db
        self._scorer = scorer
        self._encode_query = encode_query

    async def search(
        self, index: IndexRecord, query: str, *, k: int, mode: Mode = "hybrid", doc_id: int | None = None
    ) -> SearchResult:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        candidates = k * CANDIDATES_PER_HIT if mode == "hybrid" else k

        async def colbert() -> tuple[list[tuple[int, float]], float | None]:
            if mode not in ("hybrid", "colbert"):
                return [], None
            query_vectors = await self._encode_query(query)
            ranked = await self._scorer.top_k(index, query_vectors, candidates, doc_id=doc_id)
            return ranked, ranked[0][1] / len(query_vectors) if ranked else None

        async def bm25() -> list[tuple[int, float]]:
            if mode not in ("hybrid", "lexical"):
                return []
            return await self._db.lexical_search(index.id, query, candidates, doc_id=doc_id)

        # side by side: BM25 runs in SQLite's thread while the question is encoded and scored (a GPU, or torch's)
        (dense, colbert_best), lexical = await asyncio.gather(colbert(), bm25())

        if mode == "hybrid":
            ranked = reciprocal_rank_fusion([[c for c, _ in dense], [c for c, _ in lexical]])[:k]
        else:
            ranked = (dense or lexical)[:k]
        # A paper removed between ranking and fetching simply drops out of the results.
        records = {r.id: r for r in await self._db.get_chunks([chunk_id for chunk_id, _ in ranked], index.id)}
        hits = [
            Hit(
                doc_id=r.doc_id,
                chunk_id=r.id,
                title=r.title,
                page_start=r.page_start,
                page_end=r.page_end,
                text=r.text,
                score=score,
                section=r.section,
            )
            for chunk_id, score in ranked
            if (r := records.get(chunk_id)) is not None
        ]
        return SearchResult(hits=hits, colbert_best=colbert_best, lexical_matches=len(lexical))
