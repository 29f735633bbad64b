"""The CLI's commands, one coroutine each: call the library, print the result. Flags and help are in bot.cli.

Heavy modules (the engine and PDF reader, the models' runtime, the web/chat adapters) are imported inside the
command that needs them, so that listing papers never pays for loading a model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.formatting import pages_label, plural, source_lines

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from tqdm import tqdm

    from rag_engine.engine import Engine
    from bot.settings import Settings
    from rag_engine.types import Answer, IngestProgress

EXIT_FAILED = 1
EXIT_USAGE = 2  # a usage error (click's) or an unknown index
EXIT_INTERRUPTED = 130


def print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=_jsonable))


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _engine(settings: Settings) -> AbstractAsyncContextManager[Engine]:
    """`Engine.open(settings)`, imported here: the engine pulls in the PDF reader and numpy."""
    from rag_engine.engine import Engine

    return Engine.open(settings)


class ProgressBar:
    """A stderr progress bar for one file, shown once encoding starts (short files finish before it matters).

    It starts at the passages already encoded when it appears and advances by `update`, so tqdm's rate counts only
    what was encoded while it was shown (setting `n` directly left tqdm dividing every passage by a few microseconds).
    """

    def __init__(self, label: str, file: TextIO | None = None) -> None:
        self._label = label
        self._file = file
        self._bar: tqdm | None = None

    async def __call__(self, step: IngestProgress) -> None:
        if not step.total:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=step.total, initial=step.done, desc=self._label, unit="passage",
                             file=self._file or sys.stderr, leave=False)
        elif step.done > self._bar.n:
            self._bar.update(step.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def ingest(settings: Settings, *, index: str, files: Sequence[Path]) -> int:
    async with _engine(settings) as engine:
        await engine.resume_jobs()
        # One more file in flight than the engine reads at once: while one paper is encoded, the next ones are read
        # (each in its own child process). Results print in the order the files were given.
        width = min(len(files), engine.ingestor.readers + 1) or 1
        gate = asyncio.Semaphore(width)

        async def one(path: Path) -> tuple[bool, str]:
            async with gate:
                return await _ingest_file(engine, index, path, show_bar=width == 1)

        tasks = [asyncio.create_task(one(Path(path))) for path in files]
        failed = False
        try:
            for task in tasks:
                ok, line = await task
                print(line, flush=True)
                failed |= not ok
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return EXIT_FAILED if failed else 0


async def _ingest_file(engine: Engine, index: str, path: Path, *, show_bar: bool) -> tuple[bool, str]:
    """Index one file: whether it went in (or already was), and the line that says so."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as error:
        return False, f"{path}\tfailed: cannot read the file ({error.strerror})"
    bar = ProgressBar(path.name) if show_bar else None
    try:
        report = await engine.ingest(index, data, path.name, uploader="cli", progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if report.status == "indexed":
        return True, f"{path}\tindexed: {report.title} ({plural(report.pages, 'page')})"
    if report.status == "duplicate":
        return True, f"{path}\talready indexed"
    return False, f"{path}\tfailed: {report.message}"


async def search(
    settings: Settings, *, index: str, query: str, top_k: int | None, mode: str | None, as_json: bool
) -> int:
    async with _engine(settings) as engine:
        result = await engine.search(index, query, k=top_k, mode=mode)
    if as_json:
        print_json(
            [
                {
                    "doc_id": h.doc_id,
                    "chunk_id": h.chunk_id,
                    "title": h.title,
                    "page_start": h.page_start,
                    "page_end": h.page_end,
                    "text": h.text,
                    "score": h.score,
                }
                for h in result.hits
            ]
        )
        return 0
    if not result.hits:
        print("no passages found")
    for rank, hit in enumerate(result.hits, start=1):
        pages = pages_label(hit.page_start, hit.page_end)
        print(f"{rank}. {hit.title}, {pages}  (score {hit.score:.4f}, doc {hit.doc_id}, chunk {hit.chunk_id})")
        print(f"   {hit.text[:300].replace(chr(10), ' ')}")
    return 0


async def papers(settings: Settings, *, index: str, as_json: bool) -> int:
    async with _engine(settings) as engine:
        docs = await engine.papers(index)
    if as_json:
        print_json([{"id": d.id, "title": d.title, "pages": d.page_count, "added": d.created_at} for d in docs])
        return 0
    if not docs:
        print("no papers yet")
    for d in docs:
        print(f"{d.id}\t{d.title}\t{plural(d.page_count, 'page')}\tadded {d.created_at}")
    return 0


async def remove(settings: Settings, *, index: str, doc_id: int) -> int:
    async with _engine(settings) as engine:
        doc = await engine.remove(index, doc_id)
    print(f"removed {doc.id}: {doc.title}")
    return 0


async def clear(settings: Settings, *, index: str) -> int:
    async with _engine(settings) as engine:
        removed = await engine.clear(index)
    print(f"removed {plural(removed, 'paper')} from {index}")
    return 0


async def ask(settings: Settings, *, index: str, question: str, paper: str | None, as_json: bool) -> int:
    from bot.hints import for_cli
    from bot.messages import Channel, Failed, Final, Partial, User
    from bot.runtime import open_core

    cli_user = User(id="cli", name="cli", is_moderator=True)
    async with open_core(settings, heartbeat=False) as core:
        await core.engine.index(index)  # an unknown index is an error here, not an abstention
        channel = Channel("cli", "local", index)
        shown = 0
        final: Answer | None = None
        async for event in core.ask(channel, cli_user, question, paper=paper):
            if isinstance(event, Partial) and not as_json:
                sys.stdout.write(event.answer[shown:])
                sys.stdout.flush()
                shown = len(event.answer)
            elif isinstance(event, Final):
                final = event.answer
            elif isinstance(event, Failed):
                print(f"paperbot: {for_cli(event.message, index)}", file=sys.stderr)
                return EXIT_FAILED
    assert final is not None
    if as_json:
        print_json(
            {
                "reasoning": final.reasoning,
                "answer": final.answer,
                "abstained": final.abstained,
                "sources": [dataclasses.asdict(s) for s in final.sources],
            }
        )
        return 0
    if final.answer.startswith(final.answer[:shown]):
        print(final.answer[shown:])
    else:
        print("\n" + final.answer)
    if final.reasoning:
        print(f"\nReasoning: {final.reasoning}")
    for line in source_lines(final):
        print(line)
    return 0


async def chat(settings: Settings, *, index: str) -> int:
    from bot.console_app import run_console
    from bot.runtime import open_core

    async with open_core(settings, heartbeat=False) as core:
        await run_console(core, index)
    return 0


async def status(settings: Settings) -> int:
    async with _engine(settings) as engine:
        summaries = await engine.summaries()
        beat = await engine.last_heartbeat()
        models = engine.describe()
    print(f"data:        {settings.data_dir}")
    print(f"encoder:     {models.encoder}")
    print(f"llm:         {models.llm}")
    if beat is None or beat.age_s > 60:
        print("bot:         not running" + (f" (last seen {beat.age_s:.0f} s ago)" if beat else ""))
    else:
        print(f"bot:         running (pid {beat.pid}), model on {beat.runs_on}, queue depth {beat.queue_depth}")
    print(f"indexes:     {len(summaries)}")
    for s in summaries:
        mib = s.embedding_bytes / (1024 * 1024)
        counts = f"{plural(s.papers, 'paper')}, {plural(s.chunks, 'passage')}, {plural(s.tokens, 'token vector')}"
        print(f"  {s.name}\t{counts} ({mib:.1f} MiB, {s.codec})")
    return 0


async def run(settings: Settings, *, platform: str | None) -> int:
    from bot.runtime import open_core

    platform = platform or ("discord" if settings.discord_token else "slack" if settings.slack_bot_token else "web")
    if platform == "discord":
        from bot.discord_app import serve
    elif platform == "slack":
        from bot.slack_app import serve
    else:
        from bot.web_app import serve
    from bot import health

    async with health.maybe_serving(settings.health_host, settings.health_port) as monitor, open_core(settings) as core:
        if monitor is not None:
            monitor.watch(core)
        try:
            await serve(core, settings)
        except (OSError, ValueError) as error:  # a taken port, a refused token: one clear line, not a traceback
            print(f"paperbot: {error}", file=sys.stderr)
            return EXIT_FAILED
    return 0
