"""`python -m training evaluate`: answer quality of real models through the serving path, one table per model setting.

Each question goes through `Answerer.answer`, the use case the bot runs (retrieval, relevance check, prompt within
the budget, generation through the worker and the backend, parsing). The backend is wrapped only to keep the raw
reply, so that citations are judged as the model wrote them; the sources the model was given are rebuilt with the
same deterministic calls (`Engine.search`, `build_prompt`) and checked against the prompt the backend received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag_engine.answer import NOT_RELEVANT_REASONING, Answerer
from rag_engine.engine import Engine
from rag_engine.llm.base import BackendInfo, GenerationRequest, LLMBackend
from rag_engine.llm.factory import open_backend
from rag_engine.prompting import build_prompt, format_target, split_answer
from rag_engine.settings import EngineSettings
from rag_engine.types import Final, Source
from rag_engine.worker import GenerationWorker
from training import metrics
from training.eval import Question
from training.report import ConfigResult, Record, summarize

log = logging.getLogger(__name__)

INDEX = "evaluation"
#: Settings fields that may name the reply-grammar switch (the backends' setting; see .env.example).
GRAMMAR_FIELDS = ("llm_grammar", "grammar")


class RecordingBackend(LLMBackend):
    """Delegates to a real backend and keeps each reply's full text, keyed by the request's last message."""

    def __init__(self, inner: LLMBackend) -> None:
        self.inner = inner
        self.slots = inner.slots
        self.replies: dict[str, str] = {}

    def info(self) -> BackendInfo:
        return self.inner.info()

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:  # type: ignore[override]
        key = request.messages[-1].content
        self.replies[key] = ""
        async for delta in self.inner.stream(request):
            self.replies[key] += delta
            yield delta


@dataclass(frozen=True, slots=True)
class ModelConfig:
    gguf: Path
    grammar: str | None  # "on" | "off" | None when this build has no grammar setting
    name: str = ""  # the model's name in tables: the file's stem, or folder/stem where stems repeat

    @property
    def label(self) -> str:
        grammar = "" if self.grammar is None else f", grammar {self.grammar}"
        return f"{self.name or self.gguf.stem}{grammar}"


@dataclass
class Run:
    """What one `evaluate` call measures."""

    pdfs: Sequence[Path]
    questions: Sequence[Question]
    configs: Sequence[ModelConfig]
    base: EngineSettings
    qasa: Sequence[Question] = ()
    notes: list[str] = field(default_factory=list)
    progress: Path | None = None  # each record is appended here as JSON when it is done (a cut run keeps them)


def grammar_field() -> str | None:
    return next((name for name in GRAMMAR_FIELDS if name in EngineSettings.model_fields), None)


def model_configs(ggufs: Sequence[Path], grammar: str) -> list[ModelConfig]:
    """One config per model and grammar setting (`on`, `off` or `both`)."""
    settings = ["off", "on"] if grammar == "both" else [grammar]
    if grammar_field() is None:
        if grammar != "off":
            raise SystemExit("this build has no reply-grammar setting: run with --grammar off")
        settings = [None]  # type: ignore[list-item]
    paths = [Path(g) for g in ggufs]
    stems = [p.stem for p in paths]
    # two exports are both model-q4_k_m: their folders tell the columns apart
    names = [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    return [ModelConfig(p, s, n) for p, n in zip(paths, names, strict=True) for s in settings]


def machine(info: BackendInfo) -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU threads visible; model on {info.runs_on}"


async def index_papers(engine: Engine, pdfs: Sequence[Path]) -> dict[str, int]:
    """Index every PDF (once: a second run finds them already there); file name → doc id."""
    doc_ids = {}
    for pdf in pdfs:
        report = await engine.ingest(INDEX, pdf.read_bytes(), pdf.name)
        if report.doc_id is None or report.status == "failed":
            raise RuntimeError(f"could not index {pdf}: {report.message}")
        doc_ids[pdf.name] = report.doc_id
        log.info("%s: %s (%d chunks)", pdf.name, report.status, report.chunks)
    return doc_ids


async def answer_one(
    engine: Engine, answerer: Answerer, recorder: RecordingBackend, question: Question, doc_ids: dict[str, int]
) -> Record:
    started = time.perf_counter()
    final = None
    async for event in answerer.answer(INDEX, question.question):
        if isinstance(event, Final):
            final = event.answer
    seconds = time.perf_counter() - started
    log.info("%s answered in %.1f s", question.id, seconds)
    if final is None:
        raise RuntimeError(f"no answer for {question.id}")
    # The sources the answerer gave the model: the same deterministic retrieval and prompt layout.
    result = await engine.search(INDEX, question.question, k=answerer.settings.top_k)
    prompt = build_prompt(
        question.question, result.hits, budget=answerer.budget, count_tokens=recorder.count_tokens
    )
    key = prompt.messages[-1].content
    asked = key in recorder.replies
    if not asked and final.reasoning != NOT_RELEVANT_REASONING:
        raise RuntimeError(f"{question.id}: the model was asked another prompt than the one rebuilt here")
    raw = recorder.replies.get(key) if asked else format_target(final.reasoning, final.answer)
    sources: tuple[Source, ...] = prompt.sources if asked else ()
    return score(question, raw or "", final, sources, doc_ids, seconds, asked)


def score(
    question: Question, raw: str, final, sources: Sequence[Source], doc_ids: dict[str, int], seconds: float, asked: bool
) -> Record:
    """Every metric of one reply (answerable-only metrics are None for the other kinds)."""
    answer_part = split_answer(raw)[1]
    answerable = question.kind == "answerable"
    doc_id = doc_ids.get(question.paper or "", -1)
    pages = question.answer_pages
    return Record(
        id=question.id,
        kind=question.kind,
        question=question.question,
        raw=raw,
        reasoning=final.reasoning,
        answer=final.answer,
        abstained=final.abstained,
        asked_model=asked,
        sources=[dataclasses.asdict(s) for s in sources],
        seconds=seconds,
        format_ok=metrics.format_ok(raw),
        separator=metrics.has_separator(raw),
        citations_valid=metrics.citations_valid(raw, sources),
        cited_page_right=metrics.cited_page_right(final.answer, sources, doc_id, pages) if answerable else None,
        retrieved_page_right=metrics.retrieved_page_right(sources, doc_id, pages) if answerable else None,
        key_fact=metrics.key_fact_present(final.answer, question.key_facts) if answerable else None,
        token_f1=metrics.token_f1(final.answer, question.reference) if answerable else None,
        rouge_l=metrics.rouge_l(final.answer, question.reference) if answerable else None,
        words=metrics.word_count(final.answer),
        cited_page_written=metrics.cited_page_right(answer_part, sources, doc_id, pages) if answerable else None,
    )


def _progress(run: Run, line: dict) -> None:
    if run.progress is not None:
        with run.progress.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def results_from_progress(path: Path) -> list[ConfigResult]:
    """The results of a run from its records.jsonl, also when it was cut short (wall time: first start to last reply)."""
    results: dict[str, ConfigResult] = {}
    started: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        label = row["config"]
        if "record" not in row:
            results[label] = ConfigResult(label, [], 0.0, row["machine"], row["backend"], row["parallel"])
            started[label] = row["started"]
        else:
            results[label].records.append(Record(**row["record"]))
            results[label].wall_s = row["done"] - started[label]
    return list(results.values())


async def run_config(engine: Engine, run: Run, config: ModelConfig, doc_ids: dict[str, int]) -> ConfigResult:
    updates: dict[str, object] = {"llm_model": str(config.gguf)}
    if config.grammar is not None:
        updates[grammar_field()] = config.grammar  # type: ignore[index]
    settings = run.base.model_copy(update=updates)
    recorder = RecordingBackend(await open_backend(settings))
    try:
        async with GenerationWorker.from_settings(recorder, settings) as worker:
            answerer = Answerer(engine, recorder, worker, settings)
            limit = asyncio.Semaphore(settings.parallel)  # keep the batch full, as concurrent users would

            info = recorder.info()
            _progress(run, {"config": config.label, "machine": machine(info), "backend": info.backend,
                            "parallel": settings.parallel, "started": time.time()})

            async def one(q: Question) -> Record:
                async with limit:
                    record = await answer_one(engine, answerer, recorder, q, doc_ids)
                _progress(run, {"config": config.label, "done": time.time(), "record": dataclasses.asdict(record)})
                return record

            started = time.perf_counter()
            records = await asyncio.gather(*(one(q) for q in [*run.questions, *run.qasa]))
            wall = time.perf_counter() - started
    finally:
        await recorder.close()
    return ConfigResult(config.label, list(records), wall, machine(info), info.backend, settings.parallel)


async def evaluate(run: Run) -> list[ConfigResult]:
    async with Engine.open(run.base) as engine:
        doc_ids = await index_papers(engine, run.pdfs)
        missing = {q.paper for q in run.questions if q.paper and q.paper not in doc_ids}
        if missing:
            raise SystemExit(f"questions refer to papers not in --pdfs: {sorted(missing)}")
        return [await run_config(engine, run, config, doc_ids) for config in run.configs]


def write_outputs(out: Path, run: Run, results: Sequence[ConfigResult], command: str) -> str:
    """results.json (every reply and score) and results.md (the tables); returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    markdown = summarize(results, command, run.notes)
    (out / "results.md").write_text(markdown, encoding="utf-8")
    payload = {
        "command": command,
        "notes": run.notes,
        "configs": [dataclasses.asdict(r) for r in results],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
    return markdown
