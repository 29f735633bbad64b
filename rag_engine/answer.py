"""Use case: a question → retrieved passages → a prompt → the model's streamed reply → a parsed, cited answer."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from rag_engine.engine import Engine
from rag_engine.llm.base import BackendInfo, GenerationRequest, LLMBackend
from rag_engine.llm.factory import open_backend
from rag_engine.prompting import PromptBudget, abstain, build_prompt, parse_answer, reply_grammar, split_partial
from rag_engine.retrieval.search import SearchResult
from rag_engine.settings import EngineSettings
from rag_engine.types import Answer, AnswerEvent, Final, Partial, Queued, Turn
from rag_engine.worker import GenerationWorker

log = logging.getLogger(__name__)

EMPTY_INDEX_ANSWER = "There are no papers in this channel yet. Add a PDF (or an arXiv link) and ask again."
NOT_RELEVANT_REASONING = "None of the passages I found shares enough with the question to answer it."


class Answerer:
    """Owns the generation backend and its worker queue; answers questions over an Engine's indexes."""

    def __init__(self, engine: Engine, backend: LLMBackend, worker: GenerationWorker, settings: EngineSettings) -> None:
        self.engine = engine
        self.backend = backend
        self.worker = worker
        self.settings = settings
        self.budget = PromptBudget.from_settings(settings)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, engine: Engine, settings: EngineSettings) -> AsyncIterator[Answerer]:
        backend = await open_backend(settings)
        try:
            async with GenerationWorker.from_settings(backend, settings) as worker:
                yield cls(engine, backend, worker, settings)
        finally:
            await backend.close()

    def backend_info(self) -> BackendInfo:
        return self.backend.info()

    @property
    def queue_depth(self) -> int:
        return self.worker.depth

    def relevant(self, result: SearchResult) -> bool:
        """Worth asking the model: ColBERT scores some passage high enough; without ColBERT (lexical mode), some
        passage shares a content word with the question.

        A shared word alone says little: "How do you make sourdough bread rise faster?" shares one with every
        passage of most papers, so where ColBERT scored the passages its score decides.
        """
        if not result.hits:
            return False
        if result.colbert_best is None:
            return result.lexical_matches > 0
        return result.colbert_best >= self.settings.min_relevance

    async def answer(
        self, index: str, question: str, history: Sequence[Turn] = (), paper: str | None = None
    ) -> AsyncIterator[AnswerEvent]:
        """Queued(position)… → Partial(reasoning, answer)… → Final(answer). Closing the stream stops generation.

        `history` is oldest first. `paper` (an id or part of a title) limits the question to one paper; when none or
        several match, InvalidQuestion. The index is looked up once, here, and its record passed on.
        """
        record = await self.engine.find_index(index)
        if record is None:
            yield Final(Answer(reasoning="", answer=EMPTY_INDEX_ANSWER, abstained=True))
            return
        doc_id = await self.engine.resolve_paper(record, paper) if paper else None
        result = await self.engine.search(record, question, k=self.settings.top_k, doc_id=doc_id)
        if not result.hits and not await self.engine.papers(record):  # listed only when nothing was found
            yield Final(Answer(reasoning="", answer=EMPTY_INDEX_ANSWER, abstained=True))
            return
        if not self.relevant(result):
            log.info("abstaining in %s: nothing relevant (colbert %s)", index, result.colbert_best)
            yield Final(abstain(NOT_RELEVANT_REASONING))
            return
        prompt = build_prompt(
            question, result.hits, history, budget=self.budget, count_tokens=self.backend.count_tokens
        )
        max_tokens = self.settings.max_new_tokens
        request = GenerationRequest(
            messages=prompt.messages,
            max_tokens=max_tokens,
            temperature=self.settings.temperature,
            grammar=reply_grammar(max_tokens) if self.settings.llm_grammar == "on" else None,
        )
        handle = self.worker.submit(index, request)
        try:
            async for position in handle.queue_positions():
                yield Queued(position)
            text = ""
            async for delta in handle.stream():
                text += delta
                reasoning, answer = split_partial(text)
                yield Partial(reasoning, answer)
            yield Final(parse_answer(text, prompt.sources, prompt.texts))
        finally:
            if not handle.done:
                handle.cancel()
