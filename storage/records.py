"""Rows as the storage layer hands them out: frozen, typed, never loose dicts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class IndexRecord:
    id: int
    name: str
    encoder_id: str
    codec: str
    dim: int
    created_at: str
    version: int = 0  # bumped on every change of what search sees; scorers key their caches on it


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What one index holds (ready papers only), for `/papers status`."""

    index_id: int
    papers: int
    chunks: int
    tokens: int
    embedding_bytes: int
    processing: int  # papers being indexed right now
    version: int


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: int
    index_id: int
    sha256: str
    title: str
    filename: str
    page_count: int
    uploader: str | None
    status: str  # "processing" | "ready" | "failed"
    error: str | None
    chunk_count: int
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class NewChunk:
    """What ingestion writes: the passage and its token embeddings (n_tokens × dim, float32 or float16)."""

    text: str
    page_start: int
    page_end: int
    section: str | None
    ordinal: int
    embedding: np.ndarray


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    id: int
    doc_id: int
    title: str
    ordinal: int
    text: str
    page_start: int
    page_end: int
    section: str | None


@dataclass(frozen=True, slots=True)
class EmbeddingMatrix:
    """All token vectors of the visible chunks of an index (or one paper), for brute-force scoring.

    `vectors[offsets[i]:offsets[i+1]]` are the token vectors of chunk `chunk_ids[i]`.
    """

    chunk_ids: np.ndarray  # int64 (n_chunks,)
    offsets: np.ndarray  # int64 (n_chunks + 1,)
    vectors: np.ndarray  # float16 (n_tokens, dim)
    version: int  # the index's change counter when it was read

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (what a vector cache budgets)."""
        return int(self.chunk_ids.nbytes + self.offsets.nbytes + self.vectors.nbytes)


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: int
    index_id: int
    index_name: str
    path: str
    filename: str
    sha256: str
    uploader: str | None
    status: str  # "pending" | "running" | "done" | "failed"
    error: str | None
    document_id: int | None
    attempts: int
    created_at: str
    updated_at: str
    owner: str | None = None  # pid@host/token of the process working on it
    lease_until: str | None = None  # past this, the owner is presumed gone and the job may be resumed


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """A 👍 (+1) or 👎 (-1) on a posted answer, with what was asked and answered."""

    message_ref: str
    user_id: str
    vote: int
    question: str
    answer_json: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The running bot's last sign of life (written every few seconds)."""

    pid: int
    queue_depth: int
    runs_on: str
    beat_at: str
    age_s: float
