"""Every question the rest of paperbot asks of the database, as typed async methods. The only door to storage.

Visibility rule: a document is searchable only once `complete_document` has flipped it to 'ready'; every read of
documents, chunks, text search and embeddings below filters on `documents.status = 'ready'`.

Why one module over 400 lines: it is the storage layer's single door (ARCHITECTURE.md: no SQL outside storage/),
33 short methods of a few statements each, one per question asked of the database; splitting it by table would
scatter the visibility rule above across files that each must remember it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from storage import codec as codecs
from storage.connection import Connection, Transaction
from storage.errors import (
    DocumentNotFound,
    DocumentNotProcessing,
    DuplicateDocument,
    EncoderMismatch,
    IndexNotFound,
    InvalidIndexName,
)
from storage.fts import match_expression
from storage.records import (
    ChunkRecord,
    DocumentRecord,
    EmbeddingMatrix,
    IndexRecord,
    IndexStats,
    NewChunk,
)

log = logging.getLogger(__name__)

_INDEX_COLUMNS = "id, name, encoder_id, codec, dim, created_at, version"
_DOC_COLUMNS = (
    "id, index_id, sha256, title, filename, page_count, uploader, status, error, chunk_count, created_at, updated_at"
)
MAX_SEARCH_LIMIT = 1000


#: Marks an ingestion job done with the paper it produced: `JobRepository.finish_job`, and `complete_document` inside
#: its own transaction.
FINISH_JOB = "UPDATE jobs SET status = 'done', document_id = ?, error = NULL, updated_at = ? WHERE id = ?"


def utc_now() -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2025-01-31T12:00:00.000+00:00 (sorts as text, parses with fromisoformat)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _index(row: sqlite3.Row) -> IndexRecord:
    return IndexRecord(**dict(row))


def _document(row: sqlite3.Row) -> DocumentRecord:
    return DocumentRecord(**dict(row))



def _describe(encoder_id: str, codec: str, dim: int) -> str:
    return f"{encoder_id} ({codec}, dim {dim})"


def check_encoder(index: IndexRecord, encoder_id: str, codec: str, dim: int) -> None:
    """Raise EncoderMismatch unless `index` was built with this encoder, codec and dimension."""
    if (index.encoder_id, index.codec, index.dim) != (encoder_id, codec, dim):
        raise EncoderMismatch(
            index.name, _describe(index.encoder_id, index.codec, index.dim), _describe(encoder_id, codec, dim)
        )


MAX_INDEX_NAME = 200


def check_index_name(name: str) -> None:
    """Raise InvalidIndexName (a sentence for the user) unless `name` can name an index."""
    if not name.strip():
        raise InvalidIndexName(name, "it is empty")
    if name != name.strip():
        raise InvalidIndexName(name, "it starts or ends with a space")
    if len(name) > MAX_INDEX_NAME:
        raise InvalidIndexName(name[:40] + "…", f"it is longer than {MAX_INDEX_NAME} characters")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in name):
        raise InvalidIndexName(name, "it contains control or invisible characters")


class Repository:
    """Indexes, documents, chunks and embeddings over one open `Connection` (jobs: storage/jobs.py).

    `storage.db.Database` is this class plus opening and closing; the rest of paperbot uses that.
    """

    def __init__(self, connection: Connection) -> None:
        self._db = connection

    # === indexes ======================================================================================================
    async def get_or_create_index(self, name: str, encoder_id: str, codec: str, dim: int) -> IndexRecord:
        """The index called `name`, created on first use. Raises EncoderMismatch if it was built with another
        encoder, codec or dimension: vectors from two models must never mix."""
        check_index_name(name)
        codecs.get_codec(codec)  # unknown codec → ValueError before anything is written
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        row = await self._db.fetchone(f"SELECT {_INDEX_COLUMNS} FROM indexes WHERE name = ?", (name,))
        if row is None:
            async with self._db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO indexes (name, encoder_id, codec, dim, created_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (name, encoder_id, codec, dim, utc_now()),
                )
                row = await tx.fetchone(f"SELECT {_INDEX_COLUMNS} FROM indexes WHERE name = ?", (name,))
            assert row is not None
        index = _index(row)
        check_encoder(index, encoder_id, codec, dim)
        return index

    async def get_index(self, name: str) -> IndexRecord:
        row = await self._db.fetchone(f"SELECT {_INDEX_COLUMNS} FROM indexes WHERE name = ?", (name,))
        if row is None:
            raise IndexNotFound(name)
        return _index(row)

    async def get_index_by_id(self, index_id: int) -> IndexRecord:
        row = await self._db.fetchone(f"SELECT {_INDEX_COLUMNS} FROM indexes WHERE id = ?", (index_id,))
        if row is None:
            raise IndexNotFound(f"#{index_id}")
        return _index(row)

    async def list_indexes(self) -> list[IndexRecord]:
        """Every index, by name."""
        rows = await self._db.fetchall(f"SELECT {_INDEX_COLUMNS} FROM indexes ORDER BY name")
        return [_index(row) for row in rows]

    async def index_version(self, index_id: int) -> int:
        """The change counter of the index; differs from a cached EmbeddingMatrix.version once it is stale."""
        row = await self._db.fetchone("SELECT version FROM indexes WHERE id = ?", (index_id,))
        if row is None:
            raise IndexNotFound(f"#{index_id}")
        return int(row[0])

    async def index_stats(self, index_id: int) -> IndexStats:
        version = await self.index_version(index_id)
        row = await self._db.fetchone(
            """
            SELECT
              (SELECT count(*) FROM documents WHERE index_id = :i AND status = 'ready') AS papers,
              (SELECT count(*) FROM documents WHERE index_id = :i AND status = 'processing') AS processing,
              count(e.chunk_id) AS chunks,
              coalesce(sum(e.n_tokens), 0) AS tokens,
              coalesce(sum(length(e.vectors)), 0) AS embedding_bytes
            FROM documents d
            JOIN chunks c ON c.document_id = d.id
            JOIN embeddings e ON e.chunk_id = c.id
            WHERE d.index_id = :i AND d.status = 'ready'
            """,
            {"i": index_id},
        )
        assert row is not None
        return IndexStats(index_id=index_id, version=version, **dict(row))

    # === documents ====================================================================================================
    async def find_document(self, index_id: int, sha256: str) -> DocumentRecord | None:
        """The live (ready or processing) document with these bytes in this index; a failed one does not count."""
        row = await self._db.fetchone(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE index_id = ? AND sha256 = ? AND status <> 'failed'",
            (index_id, sha256),
        )
        return None if row is None else _document(row)

    async def create_document(
        self,
        index_id: int,
        sha256: str,
        title: str,
        filename: str,
        uploader: str | None,
        page_count: int,
    ) -> DocumentRecord:
        """A new document in status 'processing' (invisible to search). Raises DuplicateDocument (carrying the
        existing record) if the same bytes are already ready or being indexed in this index."""
        now = utc_now()
        async with self._db.transaction() as tx:
            existing = await tx.fetchone(
                f"SELECT {_DOC_COLUMNS} FROM documents WHERE index_id = ? AND sha256 = ? AND status <> 'failed'",
                (index_id, sha256),
            )
            if existing is not None:
                raise DuplicateDocument(_document(existing))
            doc_id = await tx.insert(
                "INSERT INTO documents (index_id, sha256, title, filename, page_count, uploader, status, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'processing', ?, ?)",
                (index_id, sha256, title, filename, page_count, uploader, now, now),
            )
            row = await tx.fetchone(f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = ?", (doc_id,))
        assert row is not None
        return _document(row)

    async def complete_document(
        self, doc_id: int, chunks: Sequence[NewChunk], *, job_id: int | None = None
    ) -> DocumentRecord:
        """Store the chunks, their full-text rows and token embeddings, and make the document ready — all in one
        transaction, so search sees all of it or none of it. Bumps the index version. With `job_id`, that ingestion
        job is marked done in the same transaction: a crash never leaves a ready paper behind an unfinished job.

        Raises ValueError for chunks that cannot be stored (wrong embedding dim, no tokens, duplicate ordinals;
        nothing is written) and DocumentNotProcessing if the document is gone or no longer 'processing'.
        """
        if not chunks:
            raise ValueError(f"document {doc_id}: a document needs at least one chunk")
        head = await self._db.fetchone(
            "SELECT d.index_id, i.codec, i.dim FROM documents d JOIN indexes i ON i.id = d.index_id WHERE d.id = ?",
            (doc_id,),
        )
        if head is None:
            raise DocumentNotProcessing(doc_id, None)
        index_id, codec_id, dim = int(head["index_id"]), str(head["codec"]), int(head["dim"])
        # Converting to float16 is CPU work proportional to the paper: keep it off the event loop and outside the lock.
        encoded = await asyncio.to_thread(_encode_chunks, chunks, codecs.get_codec(codec_id), dim)

        now = utc_now()
        try:
            async with self._db.transaction() as tx:
                await self._expect_processing(tx, doc_id)
                await tx.executemany(
                    "INSERT INTO chunks (document_id, ordinal, text, page_start, page_end, section) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(doc_id, c.ordinal, c.text, c.page_start, c.page_end, c.section) for c in chunks],
                )
                await tx.executemany(
                    "INSERT INTO embeddings (chunk_id, n_tokens, vectors) "
                    "SELECT id, ?, ? FROM chunks WHERE document_id = ? AND ordinal = ?",
                    [(n_tokens, blob, doc_id, c.ordinal) for c, (n_tokens, blob) in zip(chunks, encoded, strict=True)],
                )
                await tx.execute("UPDATE indexes SET version = version + 1 WHERE id = ?", (index_id,))
                # Last statement: only now does anything of this document become visible to readers.
                await tx.execute(
                    "UPDATE documents SET status = 'ready', chunk_count = ?, error = NULL, updated_at = ? WHERE id = ?",
                    (len(chunks), now, doc_id),
                )
                if job_id is not None:
                    await tx.execute(FINISH_JOB, (doc_id, now, job_id))
                row = await tx.fetchone(f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = ?", (doc_id,))
        except sqlite3.IntegrityError as error:
            raise ValueError(f"document {doc_id}: chunks rejected by the database ({error}); nothing stored") from error
        assert row is not None
        log.info("document %d ready: %d chunks, %d tokens", doc_id, len(chunks), sum(n for n, _ in encoded))
        return _document(row)

    async def fail_document(self, doc_id: int, error: str) -> DocumentRecord:
        """Mark a 'processing' document failed (it stays invisible; the same file may be uploaded again)."""
        async with self._db.transaction() as tx:
            await self._expect_processing(tx, doc_id)
            await tx.execute(
                "UPDATE documents SET status = 'failed', error = ?, updated_at = ? WHERE id = ?",
                (error, utc_now(), doc_id),
            )
            row = await tx.fetchone(f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = ?", (doc_id,))
        assert row is not None
        return _document(row)

    async def delete_document(self, doc_id: int) -> bool:
        """Delete a document in any status with its chunks, FTS rows and embeddings (e.g. a half-done 'processing'
        one found at restart). Returns False if there was none."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone("SELECT index_id, status FROM documents WHERE id = ?", (doc_id,))
            if row is None:
                return False
            if row["status"] == "ready":
                await tx.execute("UPDATE indexes SET version = version + 1 WHERE id = ?", (row["index_id"],))
            await tx.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        return True

    async def document_status(self, doc_id: int) -> str | None:
        """'processing', 'ready', 'failed', or None when there is no such document."""
        row = await self._db.fetchone("SELECT status FROM documents WHERE id = ?", (doc_id,))
        return None if row is None else str(row[0])

    async def list_documents(self, index_id: int) -> list[DocumentRecord]:
        """Ready documents of the index, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE index_id = ? AND status = 'ready' ORDER BY id", (index_id,)
        )
        return [_document(row) for row in rows]

    async def get_document(self, index_id: int, doc_id: int) -> DocumentRecord:
        """A ready document of this index; DocumentNotFound otherwise (also for another index's id)."""
        row = await self._db.fetchone(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = ? AND index_id = ? AND status = 'ready'",
            (doc_id, index_id),
        )
        if row is None:
            raise DocumentNotFound(doc_id, await self._index_name(index_id))
        return _document(row)

    async def remove_document(self, index_id: int, doc_id: int) -> DocumentRecord:
        """Delete a ready document of this index (with chunks, FTS rows, embeddings); returns what was removed."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = ? AND index_id = ? AND status = 'ready'",
                (doc_id, index_id),
            )
            if row is not None:
                await tx.execute("UPDATE indexes SET version = version + 1 WHERE id = ?", (index_id,))
                await tx.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        if row is None:
            raise DocumentNotFound(doc_id, await self._index_name(index_id))
        return _document(row)

    async def document_shas(self, index_id: int) -> set[str]:
        """The SHA-256 of every document of the index, in any status (whose stored uploads a clear may free)."""
        rows = await self._db.fetchall("SELECT DISTINCT sha256 FROM documents WHERE index_id = ?", (index_id,))
        return {str(row[0]) for row in rows}

    async def uploads_in_use(self, shas: Sequence[str] | set[str]) -> set[str]:
        """Those of `shas` whose stored upload is still needed: by a ready or processing document in any index, or
        by an unfinished job."""
        rows = await self._db.fetchall(
            """
            SELECT sha256 FROM documents
            WHERE sha256 IN (SELECT value FROM json_each(:shas)) AND status IN ('ready', 'processing')
            UNION
            SELECT sha256 FROM jobs
            WHERE sha256 IN (SELECT value FROM json_each(:shas)) AND status IN ('pending', 'running')
            """,
            {"shas": json.dumps(sorted(shas))},
        )
        return {str(row[0]) for row in rows}

    async def clear_index(self, index_id: int) -> int:
        """Delete every ready and failed document of the index; returns how many ready papers went. Documents still
        being indexed are left to their job (they appear when it completes)."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT count(*) FROM documents WHERE index_id = ? AND status = 'ready'", (index_id,)
            )
            removed = int(row[0]) if row is not None else 0
            if removed:
                await tx.execute("UPDATE indexes SET version = version + 1 WHERE id = ?", (index_id,))
            await tx.execute("DELETE FROM documents WHERE index_id = ? AND status IN ('ready', 'failed')", (index_id,))
        return removed

    # === chunks and search ============================================================================================
    async def get_chunks(self, chunk_ids: Sequence[int], index_id: int | None = None) -> list[ChunkRecord]:
        """The chunks asked for, in the order asked, with their paper's title. Ids that are not (or no longer)
        searchable — removed, not ready, or in another index when `index_id` is given — are left out."""
        if not chunk_ids:
            return []
        wanted = [int(chunk_id) for chunk_id in chunk_ids]
        rows = await self._db.fetchall(
            """
            SELECT c.id, c.document_id AS doc_id, d.title, c.ordinal, c.text, c.page_start, c.page_end, c.section
            FROM chunks c JOIN documents d ON d.id = c.document_id
            WHERE c.id IN (SELECT value FROM json_each(?)) AND d.status = 'ready'
              AND (? IS NULL OR d.index_id = ?)
            """,
            (_json_ints(wanted), index_id, index_id),
        )
        by_id = {int(row["id"]): ChunkRecord(**dict(row)) for row in rows}
        return [by_id[chunk_id] for chunk_id in dict.fromkeys(wanted) if chunk_id in by_id]

    async def lexical_search(
        self, index_id: int, query: str, limit: int, doc_id: int | None = None
    ) -> list[tuple[int, float]]:
        """BM25 over chunk text: [(chunk_id, score)], best first, score = -bm25 (higher is better).

        Any free text is accepted (it is turned into quoted terms, never FTS5 syntax); no words → [].
        Note BM25's term statistics are those of the whole file, not of this index alone.
        """
        expression = match_expression(query)
        if expression is None or limit <= 0:
            return []
        rows = await self._db.fetchall(
            """
            SELECT c.id, -bm25(chunks_fts) AS score
            FROM chunks_fts
            JOIN chunks c ON c.id = chunks_fts.rowid
            JOIN documents d ON d.id = c.document_id
            WHERE chunks_fts MATCH ? AND d.index_id = ? AND d.status = 'ready' AND (? IS NULL OR d.id = ?)
            ORDER BY score DESC, c.id
            LIMIT ?
            """,
            (expression, index_id, doc_id, doc_id, min(int(limit), MAX_SEARCH_LIMIT)),
        )
        return [(int(row[0]), float(row[1])) for row in rows]

    async def load_embeddings(self, index_id: int, doc_id: int | None = None) -> EmbeddingMatrix:
        """Token vectors of every ready chunk of the index (or of one paper), concatenated paper by paper (oldest
        first), each paper's chunks in ordinal order; `chunk_ids[i]` names the i-th block.

        `version` is the index version read *before* the vectors, so a change racing with this read can only make
        the matrix look older than it is (a cache then reloads), never newer.
        """
        index = await self.get_index_by_id(index_id)
        rows = await self._db.fetchall(
            """
            SELECT e.chunk_id, e.n_tokens, e.vectors
            FROM documents d
            JOIN chunks c ON c.document_id = d.id
            JOIN embeddings e ON e.chunk_id = c.id
            WHERE d.index_id = ? AND d.status = 'ready' AND (? IS NULL OR d.id = ?)
            ORDER BY d.id, c.ordinal  -- the order the indexes already give: no temporary B-tree full of blobs
            """,
            (index_id, doc_id, doc_id),
        )
        codec = codecs.get_codec(index.codec)
        return await asyncio.to_thread(assemble_embeddings, rows, codec, index.dim, index.version)

    async def load_chunk_embeddings(self, index: IndexRecord, chunk_ids: Sequence[int]) -> EmbeddingMatrix:
        """The stored token vectors of the given chunks, in the order asked; chunks not (or no longer) searchable in
        this index are left out. For re-scoring a compressed index's best passages exactly, on every search: the
        caller's record gives the codec and dimension (no lookup of its own)."""
        wanted = list(dict.fromkeys(int(chunk_id) for chunk_id in chunk_ids))
        rows = await self._db.fetchall(
            """
            SELECT e.chunk_id, e.n_tokens, e.vectors
            FROM embeddings e
            JOIN chunks c ON c.id = e.chunk_id
            JOIN documents d ON d.id = c.document_id
            WHERE e.chunk_id IN (SELECT value FROM json_each(?)) AND d.index_id = ? AND d.status = 'ready'
            """,
            (_json_ints(wanted), index.id),
        )
        position = {chunk_id: i for i, chunk_id in enumerate(wanted)}
        rows = sorted(rows, key=lambda row: position[int(row[0])])
        codec = codecs.get_codec(index.codec)
        return await asyncio.to_thread(assemble_embeddings, rows, codec, index.dim, index.version)

    # === helpers ======================================================================================================
    async def _index_name(self, index_id: int) -> str:
        row = await self._db.fetchone("SELECT name FROM indexes WHERE id = ?", (index_id,))
        return f"#{index_id}" if row is None else str(row[0])

    @staticmethod
    async def _expect_processing(tx: Transaction, doc_id: int) -> None:
        row = await tx.fetchone("SELECT status FROM documents WHERE id = ?", (doc_id,))
        status = None if row is None else str(row[0])
        if status != "processing":
            raise DocumentNotProcessing(doc_id, status)





def _encode_chunks(chunks: Sequence[NewChunk], codec: codecs.Codec, dim: int) -> list[tuple[int, bytes]]:
    """(n_tokens, blob) per chunk, after checking each embedding fits the index."""
    encoded: list[tuple[int, bytes]] = []
    for chunk in chunks:
        shape = np.shape(chunk.embedding)
        if len(shape) != 2 or shape[1] != dim or shape[0] == 0:
            raise ValueError(
                f"chunk {chunk.ordinal}: embedding shape {shape} does not fit this index (n_tokens >= 1, dim {dim})"
            )
        encoded.append((int(shape[0]), codec.encode(chunk.embedding)))
    return encoded


def assemble_embeddings(rows: Sequence[sqlite3.Row], codec: codecs.Codec, dim: int, version: int) -> EmbeddingMatrix:
    """One join of the blobs, one decode, offsets from the token counts."""
    n_tokens = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(n_tokens, out=offsets[1:])
    # a bytearray, so the view is writable: torch would warn on every read-only array it is handed
    vectors = codec.decode(bytearray().join(row[2] for row in rows), dim)
    if len(vectors) != offsets[-1]:
        raise ValueError(f"stored embeddings hold {len(vectors)} vectors, token counts say {offsets[-1]}")
    return EmbeddingMatrix(
        chunk_ids=np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
        offsets=offsets,
        vectors=vectors,
        version=version,
    )


def _json_ints(values: Sequence[int]) -> str:
    return "[" + ",".join(str(int(value)) for value in values) + "]"
