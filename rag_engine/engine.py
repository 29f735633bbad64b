"""The doors into rag_engine: ingest, search, answer and index management, over one database and one set of models."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from rag_engine.devices import ModelsDescription, describe_models
from rag_engine.encoding import EncoderService
from rag_engine.errors import InvalidQuestion
from rag_engine.ingest import Ingestor, Progress
from rag_engine.retrieval import CompressedScorer, Retriever
from rag_engine.retrieval.cache import VectorCache
from rag_engine.retrieval.search import Mode, SearchResult
from rag_engine.settings import EngineSettings
from rag_engine.types import Answer, IngestReport, Turn
from storage.codec import CODEC_ID
from storage.db import Database
from storage.errors import LIST_PAPERS, IndexNotFound
from storage.files import private_dir
from storage.records import DocumentRecord, Heartbeat, IndexRecord
from storage.repository import check_encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexSummary:
    name: str
    papers: int
    chunks: int
    tokens: int
    embedding_bytes: int
    encoder_id: str
    codec: str


class Engine:
    """Everything the bot and the CLI may do with papers. Open it with `async with Engine.open(settings)`."""

    def __init__(self, db: Database, settings: EngineSettings) -> None:
        self.db = db
        self.settings = settings
        self.encoders = EncoderService(settings)
        self.ingestor = Ingestor(db, self.encoders, settings)
        cache = VectorCache(int(settings.vector_cache_mb * 2**20))
        scorer = CompressedScorer(db, cache=cache, device=settings.device, rerank=settings.rerank_depth)
        self.retriever = Retriever(db, scorer, self.encoders.encode_query)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: EngineSettings) -> AsyncIterator[Engine]:
        for folder in (settings.data_dir, settings.uploads_dir, settings.models_dir):
            private_dir(folder)
        db = await Database.open(settings.database_path)
        try:
            yield cls(db, settings)
        finally:
            await db.close()

    # --- adding papers ---------------------------------------------------------------------------------------------
    async def ingest(
        self, index: str, data: bytes, filename: str, uploader: str | None = None, progress: Progress | None = None
    ) -> IngestReport:
        return await self.ingestor.ingest(index, data, filename, uploader, progress)

    async def resume_jobs(self) -> list[IngestReport]:
        """Finish what a previous process was indexing when it stopped."""
        return await self.ingestor.resume_unfinished()

    # --- finding passages ------------------------------------------------------------------------------------------
    async def search(
        self,
        index: str | IndexRecord,
        query: str,
        *,
        k: int | None = None,
        mode: Mode | None = None,
        doc_id: int | None = None,
    ) -> SearchResult:
        """The best passages for `query`. `index` is a name, or the record a caller already looked up."""
        record = await self.index(index)
        mode = mode or self.settings.retrieval_mode
        if mode != "lexical":
            await self._check_encoder(record)
        return await self.retriever.search(record, query, k=k or self.settings.top_k, mode=mode, doc_id=doc_id)

    async def _check_encoder(self, record: IndexRecord) -> None:
        """Refuse to score an index with vectors from another model."""
        encoder = await self.encoders.get()
        check_encoder(record, encoder.model_id, CODEC_ID, encoder.dim)

    # --- managing indexes ------------------------------------------------------------------------------------------
    async def index(self, name: str | IndexRecord) -> IndexRecord:
        """The index called `name` (IndexNotFound if none); a record is returned as is, so callers that hold one
        pass it on instead of looking the index up again."""
        if isinstance(name, IndexRecord):
            return name
        return await self.db.get_index(name)

    async def find_index(self, name: str) -> IndexRecord | None:
        """The index called `name`, or None."""
        try:
            return await self.db.get_index(name)
        except IndexNotFound:
            return None

    async def has_index(self, name: str) -> bool:
        return await self.find_index(name) is not None

    async def papers(self, index: str | IndexRecord) -> list[DocumentRecord]:
        return await self.db.list_documents((await self.index(index)).id)

    async def paper(self, index: str, doc_id: int) -> DocumentRecord:
        return await self.db.get_document((await self.index(index)).id, doc_id)

    async def remove(self, index: str, doc_id: int) -> DocumentRecord:
        doc = await self.db.remove_document((await self.index(index)).id, doc_id)
        await self.ingestor.release_uploads([doc.sha256])
        return doc

    async def clear(self, index: str | IndexRecord) -> int:
        record = await self.index(index)
        shas = await self.db.document_shas(record.id)
        removed = await self.db.clear_index(record.id)
        await self.ingestor.release_uploads(shas)
        return removed

    async def resolve_paper(self, index: str | IndexRecord, spec: str) -> int:
        """A paper id from an id or a piece of its title; InvalidQuestion when none or several match."""
        docs = await self.papers(index)
        spec = spec.strip()
        if spec.isdigit() and any(d.id == int(spec) for d in docs):
            return int(spec)
        matches = [d for d in docs if spec.casefold() in d.title.casefold() or spec.casefold() in d.filename.casefold()]
        if len(matches) == 1:
            return matches[0].id
        if not matches:
            raise InvalidQuestion(f"No paper here matches '{spec}'. {LIST_PAPERS} shows the titles and ids.")
        listed = "; ".join(f"{d.id}: {d.title}" for d in matches[:5])
        raise InvalidQuestion(f"Several papers match '{spec}' ({listed}). Use the paper's id.")

    # --- answers, feedback and liveness ----------------------------------------------------------------------------
    async def remember_answer(self, index: str, message_ref: str, question: str, answer: Answer) -> None:
        record = await self.index(index)
        await self.db.save_answer(record.id, message_ref, question, answer_to_json(answer))

    async def answer_for(self, index: str, message_ref: str) -> Turn | None:
        """The question and answer shown in a posted message (so follow-ups survive a restart)."""
        record = await self.find_index(index)
        if record is None:
            return None
        found = await self.db.get_answer(record.id, message_ref)
        if found is None:
            return None
        question, answer_json = found
        return Turn(question=question, answer=str(json.loads(answer_json).get("answer", "")))

    async def record_feedback(self, index: str, message_ref: str, user_id: str, vote: int) -> bool:
        record = await self.find_index(index)
        if record is None:
            return False
        return await self.db.record_feedback(record.id, message_ref, user_id, vote)

    async def feedback(self, index: str) -> list[dict[str, object]]:
        record = await self.find_index(index)
        if record is None:
            return []
        return [
            {"message_ref": f.message_ref, "user": f.user_id, "vote": f.vote, "question": f.question,
             "answer": json.loads(f.answer_json), "at": f.created_at}
            for f in await self.db.list_feedback(record.id)
        ]

    async def heartbeat(self, queue_depth: int, runs_on: str) -> None:
        await self.db.write_heartbeat(os.getpid(), queue_depth, runs_on)

    def describe(self) -> ModelsDescription:
        """The models this engine's settings select and where they would run, without loading them."""
        return describe_models(self.settings)

    async def last_heartbeat(self) -> Heartbeat | None:
        return await self.db.read_heartbeat()

    async def summaries(self) -> list[IndexSummary]:
        return [await self._summary(record) for record in await self.db.list_indexes()]

    async def summary(self, index: str) -> IndexSummary | None:
        """Size of one index, or None when there is no such index yet."""
        record = await self.find_index(index)
        return None if record is None else await self._summary(record)

    async def _summary(self, record: IndexRecord) -> IndexSummary:
        stats = await self.db.index_stats(record.id)
        return IndexSummary(
            name=record.name,
            papers=stats.papers,
            chunks=stats.chunks,
            tokens=stats.tokens,
            embedding_bytes=stats.embedding_bytes,
            encoder_id=record.encoder_id,
            codec=record.codec,
        )


def answer_to_json(answer: Answer) -> str:
    return json.dumps(dataclasses.asdict(answer), ensure_ascii=False)
