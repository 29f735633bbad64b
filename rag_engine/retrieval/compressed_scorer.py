"""The scorer behind search: a compressed, pruned index once an index is big enough, exact float16 MaxSim below that.

An index is compressed on first use (and new papers' chunks at the next search after they arrive), from the float16
rows, with progress in the log; centroids are retrained when the index has grown `RETRAIN_GROWTH` times since, and
when the stored codebook is of another scheme than the scorer's (so indexes compressed with 2-bit "scalar" residuals
move to "pq" at their next search). Another
process replacing the codebook meanwhile is detected by its generation, and the work is redone against the new one.
torch is imported only when an index is actually scored (commands that search nothing stay light).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import numpy as np

from rag_engine.colbert.maxsim import maxsim_batch
from rag_engine.retrieval import residual
from rag_engine.retrieval.cache import VectorCache
from rag_engine.retrieval.scorer import BruteForceScorer, Scorer
from storage.db import Database
from storage.records import EmbeddingMatrix, IndexRecord

if TYPE_CHECKING:
    from rag_engine.retrieval.plaid import CompressedIndex

log = logging.getLogger(__name__)

#: Below this many token vectors (~350 passages) an index stays float16: brute force is fast at that size, and
#: k-means on few vectors gives poor centroids.
MIN_TOKENS = 1 << 16
RETRAIN_GROWTH = 4
#: Chunks compressed and written per transaction (progress is logged after each).
COMPRESS_BATCH = 2000
DEFAULT_CACHE_BYTES = 1 << 30
#: The compressed ranking's best passages re-scored with their stored float16 vectors. At 32, the top 10 on real
#: MiniLM vectors is nearly the float16 index's own (bench/bench_compression.py: 0.980 overlap, 0.900 without it).
RERANK_DEPTH = 32


class CompressedScorer(Scorer):
    """ColBERTv2-style residual compression with PLAID-style candidate pruning, on the CPU or a GPU. `scheme`: "pq"
    (40 bytes per token at 128 dims) or "scalar" with `nbits` per dimension (see residual.py).

    Memory holds only the compressed index; the float16 rows stay on disk, and the best `rerank` passages of the
    compressed ranking are read back and scored exactly, so the ranking and its scores (which the relevance gate
    reads) are the float16 index's wherever the compressed ranking keeps the true best ones within its first `rerank`.
    """

    def __init__(
        self,
        db: Database,
        *,
        cache: VectorCache | None = None,
        device: str = "auto",
        scheme: str = residual.PQ,
        nbits: int = 2,
        min_tokens: int = MIN_TOKENS,
        nprobe: int | None = None,
        ndocs: int | None = None,
        rerank: int = RERANK_DEPTH,
    ) -> None:
        self._db = db
        self._rerank = rerank
        self._cache = cache if cache is not None else VectorCache(DEFAULT_CACHE_BYTES)
        self._fallback = BruteForceScorer(db, cache=self._cache)
        self._device = device
        self._scheme = scheme
        self._nbits = 8 if scheme == residual.PQ else nbits
        self._min_tokens = min_tokens
        self._pruning = {k: v for k, v in (("nprobe", nprobe), ("ndocs", ndocs)) if v is not None}
        self._books: dict[tuple[int, int], residual.Codebook] = {}
        self._lock = asyncio.Lock()

    async def top_k(
        self, index: IndexRecord, query: np.ndarray, k: int, doc_id: int | None = None
    ) -> list[tuple[int, float]]:
        compressed = await self.load(index, doc_id)
        if compressed is None:
            return await self._fallback.top_k(index, query, k, doc_id=doc_id)
        from rag_engine.retrieval.plaid import pruned_top_k

        # the rerank's extra candidates come from the passages pruning decompresses for k anyway: no extra cost there
        ranked = await asyncio.to_thread(pruned_top_k, compressed, query, k, keep=self._rerank, **self._pruning)
        if not self._rerank or not ranked:
            return ranked[:k]
        stored = await self._db.load_chunk_embeddings(index, [chunk_id for chunk_id, _ in ranked])
        if len(stored.chunk_ids) == 0:  # every candidate's paper was removed meanwhile
            return []
        scores = await asyncio.to_thread(maxsim_batch, query, stored.vectors, stored.offsets)
        best = np.argsort(-scores, kind="stable")[:k]
        return [(int(stored.chunk_ids[i]), float(scores[i])) for i in best]

    async def load(self, index: IndexRecord, doc_id: int | None = None) -> CompressedIndex | None:
        """The index (or one paper of it) compressed and in memory; None while the index is below `min_tokens`."""
        key = ("compressed", index.id, doc_id)
        version = await self._db.index_version(index.id)
        found = self._cache.get(key, version)
        if found is not None:
            return found  # type: ignore[return-value]
        async with self._lock:
            for _ in range(3):  # another process may replace the codebook between our steps: start over
                prepared = await self.prepare(index)
                if prepared is None:
                    return None
                generation, book = prepared
                matrix = await self._db.load_compressed(index.id, doc_id)
                if matrix is None or matrix.generation != generation:
                    continue
                if matrix.missing:  # a paper completed after `prepare`: compress it before searching
                    continue
                from rag_engine.retrieval.plaid import CompressedIndex

                built = await asyncio.to_thread(
                    CompressedIndex.build, book, matrix.chunk_ids, matrix.offsets, matrix.codes, matrix.residuals,
                    matrix.version, self._resolved_device(),
                )
                self._cache.put(key, built, matrix.version)
                return built
        log.warning("index %s kept changing while being compressed; searching its float16 vectors", index.name)
        return None

    async def prepare(self, index: IndexRecord) -> tuple[int, residual.Codebook] | None:
        """Train centroids if needed and compress every chunk that has no compressed rows yet; returns the codebook
        generation and codebook, or None while the index is too small to compress."""
        stats = await self._db.index_stats(index.id)
        if stats.tokens < self._min_tokens:
            return None
        stored = await self._db.get_codebook(index.id)
        if (
            stored is None
            or (stored.scheme, stored.nbits) != (self._scheme, self._nbits)
            or stats.tokens > RETRAIN_GROWTH * stored.trained_tokens
        ):
            generation, book = await self._train(index, stats.tokens, stats.chunks)
        else:
            generation = stored.generation
            book = self._books.get((index.id, generation)) or residual.Codebook(
                centroids=stored.centroids, cutoffs=stored.cutoffs, weights=stored.weights, nbits=stored.nbits,
                codewords=stored.codewords, rotation=stored.rotation,
            )
        self._books = {key: b for key, b in self._books.items() if key[0] != index.id}
        self._books[(index.id, generation)] = book

        done = 0
        while True:
            batch = await self._db.load_uncompressed(index.id, generation, COMPRESS_BATCH)
            if len(batch.chunk_ids) == 0:
                break
            rows = await asyncio.to_thread(_compress_rows, book, batch)
            if not await self._db.store_compressed(index.id, generation, rows):
                log.info("index %s: centroids replaced by another process; using the new ones", index.name)
                return await self.prepare(index)
            done += len(rows)
            log.info("index %s: compressed %d passages (%d to go at most)", index.name, done,
                     max(stats.chunks - done, 0))
        return generation, book

    async def _train(self, index: IndexRecord, tokens: int, chunks: int) -> tuple[int, residual.Codebook]:
        k = residual.default_centroids(tokens)
        per_chunk = max(tokens / max(chunks, 1), 1.0)
        sample = await self._db.sample_embeddings(index.id, int(k * residual.SAMPLE_PER_CENTROID / per_chunk) + 1)
        log.info("index %s: training %d centroids on %d of its %d token vectors", index.name, k,
                 len(sample.vectors), tokens)
        book = await asyncio.to_thread(
            residual.train, sample.vectors, scheme=self._scheme, nbits=self._nbits, n_centroids=k
        )
        generation = await self._db.save_codebook(
            index.id, nbits=book.nbits, trained_tokens=tokens, centroids=book.centroids, cutoffs=book.cutoffs,
            weights=book.weights, codewords=book.codewords, rotation=book.rotation,
        )
        return generation, book

    def _resolved_device(self) -> str:
        from rag_engine.colbert.encoder import pick_device

        return pick_device(self._device)


def _compress_rows(book: residual.Codebook, batch: EmbeddingMatrix) -> list[tuple[int, np.ndarray, np.ndarray]]:
    codes, packed = residual.compress(book, batch.vectors)
    offsets = batch.offsets
    return [
        (int(chunk_id), codes[offsets[i] : offsets[i + 1]], packed[offsets[i] : offsets[i + 1]])
        for i, chunk_id in enumerate(batch.chunk_ids)
    ]
