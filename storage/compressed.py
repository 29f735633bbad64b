"""Compressed token embeddings: a per-index codebook and, per chunk, centroid ids plus packed residual bits.

The float16 `embeddings` rows stay the source of truth; these rows are derived from them (rag_engine.retrieval
trains and compresses) and are what search loads. Rows carry the codebook `generation` they were made with, so rows
written against a replaced codebook are never mixed with new ones, also across processes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from storage import codec as codecs
from storage.connection import Connection
from storage.records import EmbeddingMatrix
from storage.repository import assemble_embeddings

_F32 = np.dtype("<f4")
_U16 = np.dtype("<u2")


@dataclass(frozen=True, slots=True)
class StoredCodebook:
    """An index's centroids (K, dim) and residual code, all float32 (rag_engine/retrieval/residual.py's Codebook)."""

    generation: int
    nbits: int
    trained_tokens: int
    centroids: np.ndarray
    cutoffs: np.ndarray  # scalar: (dim, 2**nbits - 1); pq: (dim, 0)
    weights: np.ndarray  # scalar: (dim, 2**nbits); pq: (dim, 0)
    scheme: str = "scalar"
    codewords: np.ndarray | None = None  # pq: (groups, 256, width)
    rotation: np.ndarray | None = None  # pq: (dim, dim)


@dataclass(frozen=True, slots=True)
class CompressedMatrix:
    """Compressed vectors of the visible chunks of an index (or one paper), in `load_embeddings`' order.

    Token rows `offsets[i]:offsets[i+1]` belong to chunk `chunk_ids[i]`. `missing` counts visible chunks left out
    because they have no rows of this generation yet (a paper completed after the last compression pass).
    """

    chunk_ids: np.ndarray  # int64 (n_chunks,)
    offsets: np.ndarray  # int64 (n_chunks + 1,)
    codes: np.ndarray  # uint16 (n_tokens,)
    residuals: np.ndarray  # uint8 (n_tokens, the codebook's residual bytes per token)
    generation: int
    version: int  # the index's change counter, read before the rows
    missing: int


class CompressedRepository:
    """Codebooks and compressed rows; mixed into `Database`."""

    _db: Connection

    async def get_codebook(self, index_id: int) -> StoredCodebook | None:
        row = await self._db.fetchone(
            "SELECT i.dim, b.generation, b.scheme, b.nbits, b.residual_bytes, b.trained_tokens, b.centroids, "
            "b.cutoffs, b.weights, b.rotation "
            "FROM codebooks b JOIN indexes i ON i.id = b.index_id WHERE b.index_id = ?",
            (index_id,),
        )
        if row is None:
            return None
        dim, levels = int(row["dim"]), 1 << int(row["nbits"])
        codewords: np.ndarray | None = None
        rotation: np.ndarray | None = None
        if row["scheme"] == "pq":
            cutoffs = weights = np.zeros((dim, 0), dtype=np.float32)
            codewords = _floats(row["weights"], (int(row["residual_bytes"]), 256, -1))
            rotation = _floats(row["rotation"], (dim, dim))
        else:
            cutoffs, weights = _floats(row["cutoffs"], (dim, levels - 1)), _floats(row["weights"], (dim, levels))
        return StoredCodebook(
            generation=int(row["generation"]),
            nbits=int(row["nbits"]),
            trained_tokens=int(row["trained_tokens"]),
            centroids=_floats(row["centroids"], (-1, dim)),
            cutoffs=cutoffs,
            weights=weights,
            scheme=str(row["scheme"]),
            codewords=codewords,
            rotation=rotation,
        )

    async def save_codebook(
        self,
        index_id: int,
        *,
        nbits: int,
        trained_tokens: int,
        centroids: np.ndarray,
        cutoffs: np.ndarray,
        weights: np.ndarray,
        codewords: np.ndarray | None = None,
        rotation: np.ndarray | None = None,
    ) -> int:
        """Replace the index's codebook (its compressed rows become stale and are dropped); returns the new
        generation. With `codewords` (and `rotation`) it is a "pq" codebook: a byte per codeword group."""
        if codewords is None:
            scheme, width, weights_blob = "scalar", centroids.shape[1] * nbits // 8, _blob(weights)
        else:
            scheme, width, weights_blob = "pq", len(codewords), _blob(codewords)
        async with self._db.transaction() as tx:
            row = await tx.fetchone("SELECT generation FROM codebooks WHERE index_id = ?", (index_id,))
            generation = 1 if row is None else int(row[0]) + 1
            await tx.execute(
                "INSERT OR REPLACE INTO codebooks (index_id, generation, scheme, nbits, residual_bytes, "
                "trained_tokens, centroids, cutoffs, weights, rotation, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, datetime('now'))",
                (index_id, generation, scheme, nbits, width, trained_tokens, _blob(centroids), _blob(cutoffs),
                 weights_blob, None if rotation is None else _blob(rotation)),
            )
            await tx.execute(
                "DELETE FROM compressed_embeddings WHERE chunk_id IN "
                "(SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.index_id = ?)",
                (index_id,),
            )
        return generation

    async def load_uncompressed(self, index_id: int, generation: int, limit: int) -> EmbeddingMatrix:
        """Float16 vectors of up to `limit` ready chunks that have no compressed rows of `generation`."""
        head = await self._db.fetchone("SELECT codec, dim, version FROM indexes WHERE id = ?", (index_id,))
        assert head is not None
        rows = await self._db.fetchall(
            """
            SELECT e.chunk_id, e.n_tokens, e.vectors
            FROM documents d
            JOIN chunks c ON c.document_id = d.id
            JOIN embeddings e ON e.chunk_id = c.id
            LEFT JOIN compressed_embeddings z ON z.chunk_id = c.id AND z.generation = ?
            WHERE d.index_id = ? AND d.status = 'ready' AND z.chunk_id IS NULL
            ORDER BY d.id, c.ordinal
            LIMIT ?
            """,
            (generation, index_id, limit),
        )
        codec = codecs.get_codec(str(head["codec"]))
        return await asyncio.to_thread(assemble_embeddings, rows, codec, int(head["dim"]), int(head["version"]))

    async def sample_embeddings(self, index_id: int, n_chunks: int, seed: int = 0) -> EmbeddingMatrix:
        """Float16 vectors of `n_chunks` ready chunks drawn at random (reproducibly for a seed): what centroids are
        trained on without loading a large index whole."""
        ids = [int(r[0]) for r in await self._db.fetchall(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE d.index_id = ? AND d.status = 'ready' ORDER BY c.id",
            (index_id,),
        )]
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(ids, size=min(n_chunks, len(ids)), replace=False).tolist()) if ids else []
        head = await self._db.fetchone("SELECT codec, dim, version FROM indexes WHERE id = ?", (index_id,))
        assert head is not None
        rows = await self._db.fetchall(
            "SELECT chunk_id, n_tokens, vectors FROM embeddings WHERE chunk_id IN (SELECT value FROM json_each(?)) "
            "ORDER BY chunk_id",
            ("[" + ",".join(map(str, chosen)) + "]",),
        )
        codec = codecs.get_codec(str(head["codec"]))
        return await asyncio.to_thread(assemble_embeddings, rows, codec, int(head["dim"]), int(head["version"]))

    async def store_compressed(
        self, index_id: int, generation: int, rows: Sequence[tuple[int, np.ndarray, np.ndarray]]
    ) -> bool:
        """Write (chunk_id, codes, packed residuals) rows made with codebook `generation`; False (nothing written)
        when another process replaced the codebook meanwhile. Does not bump the index version: what search sees
        is the same passages."""
        payload = [
            (int(chunk_id), generation, np.ascontiguousarray(codes, _U16).tobytes(), np.ascontiguousarray(res).tobytes())
            for chunk_id, codes, res in rows
        ]
        async with self._db.transaction() as tx:
            row = await tx.fetchone("SELECT generation FROM codebooks WHERE index_id = ?", (index_id,))
            if row is None or int(row[0]) != generation:
                return False
            await tx.executemany(
                # A chunk deleted since it was read has no parent row any more: skip it instead of failing the batch.
                "INSERT OR REPLACE INTO compressed_embeddings (chunk_id, generation, codes, residuals) "
                "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?1)",
                payload,
            )
        return True

    async def load_compressed(self, index_id: int, doc_id: int | None = None) -> CompressedMatrix | None:
        """Compressed rows of the visible chunks, or None when the index has no codebook yet."""
        version_row = await self._db.fetchone("SELECT version FROM indexes WHERE id = ?", (index_id,))
        book = await self._db.fetchone(
            "SELECT generation, residual_bytes FROM codebooks WHERE index_id = ?", (index_id,)
        )
        if version_row is None or book is None:
            return None
        generation = int(book["generation"])
        rows = await self._db.fetchall(
            """
            SELECT c.id, z.codes, z.residuals
            FROM documents d
            JOIN chunks c ON c.document_id = d.id
            LEFT JOIN compressed_embeddings z ON z.chunk_id = c.id AND z.generation = ?
            WHERE d.index_id = ? AND d.status = 'ready' AND (? IS NULL OR d.id = ?)
            ORDER BY d.id, c.ordinal
            """,
            (generation, index_id, doc_id, doc_id),
        )
        width = int(book["residual_bytes"])
        return await asyncio.to_thread(_assemble, rows, width, generation, int(version_row[0]))


def _floats(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(blob, _F32).reshape(shape).astype(np.float32)


def _blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=_F32).tobytes()


def _assemble(rows: Sequence[sqlite3.Row], width: int, generation: int, version: int) -> CompressedMatrix:
    present = [row for row in rows if row[1] is not None]
    lengths = np.fromiter((len(row[1]) // 2 for row in present), dtype=np.int64, count=len(present))
    offsets = np.zeros(len(present) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # bytearray: one copy, and writable arrays (torch.from_numpy warns on read-only ones)
    codes = np.frombuffer(bytearray().join(row[1] for row in present), _U16).astype(np.uint16, copy=False)
    residuals = np.frombuffer(bytearray().join(row[2] for row in present), np.uint8).reshape(-1, width)
    if len(residuals) != len(codes):
        raise ValueError(f"compressed rows hold {len(codes)} centroid ids but {len(residuals)} residual rows")
    return CompressedMatrix(
        chunk_ids=np.fromiter((row[0] for row in present), dtype=np.int64, count=len(present)),
        offsets=offsets,
        codes=codes,
        residuals=residuals,
        generation=generation,
        version=version,
        missing=len(rows) - len(present),
    )
