"""The scorer interface between retrieval and stored token embeddings, and its brute-force implementation: the
exact reference, and what scores indexes too small to compress (see compressed_scorer.py).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import replace

import numpy as np

from rag_engine.colbert.maxsim import maxsim_batch
from rag_engine.retrieval.cache import VectorCache
from storage.db import Database
from storage.records import EmbeddingMatrix, IndexRecord

log = logging.getLogger(__name__)

#: Indexes whose vectors fit in this many bytes as float32 are cached as float32; larger ones stay float16.
FLOAT32_CACHE_BYTES = 2 << 30


class Scorer(ABC):
    """Ranks an index's chunks against encoded query vectors."""

    @abstractmethod
    async def top_k(
        self, index: IndexRecord, query: np.ndarray, k: int, doc_id: int | None = None
    ) -> list[tuple[int, float]]:
        """Best-first (chunk_id, MaxSim score) pairs; `query` is (query tokens × dim)."""


class BruteForceScorer(Scorer):
    """Exact MaxSim over every visible chunk. Embeddings are cached per index until the index changes."""

    def __init__(self, db: Database, *, cache: VectorCache | None = None) -> None:
        self._db = db
        self._cache = cache if cache is not None else VectorCache(FLOAT32_CACHE_BYTES)
        self._lock = asyncio.Lock()

    async def _matrix(self, index: IndexRecord, doc_id: int | None) -> EmbeddingMatrix:
        key = ("float", index.id, doc_id)
        version = await self._db.index_version(index.id)
        async with self._lock:
            cached = self._cache.get(key, version)
            if cached is not None:
                return cached  # type: ignore[return-value]
            matrix = await self._db.load_embeddings(index.id, doc_id=doc_id)
            if matrix.vectors.nbytes * 2 <= min(FLOAT32_CACHE_BYTES, self._cache.budget_bytes):
                # float32 once here instead of a cast per query: about half of MaxSim's time on a CPU
                matrix = replace(matrix, vectors=matrix.vectors.astype(np.float32))
            self._cache.put(key, matrix, matrix.version)
            log.debug("loaded %d chunks of index %s (version %d)", len(matrix.chunk_ids), index.name, version)
            return matrix

    async def top_k(
        self, index: IndexRecord, query: np.ndarray, k: int, doc_id: int | None = None
    ) -> list[tuple[int, float]]:
        matrix = await self._matrix(index, doc_id)
        if len(matrix.chunk_ids) == 0:
            return []
        scores = await asyncio.to_thread(maxsim_batch, query, matrix.vectors, matrix.offsets)
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(matrix.chunk_ids[i]), float(scores[i])) for i in best]
