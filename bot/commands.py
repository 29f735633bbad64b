"""The CLI's subcommands, one coroutine each: call the library, print the result."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from tqdm import tqdm

from bot.cli import EXIT_FAILED, print_json
from bot.console_app import run_console
from bot.formatting import source_lines
from bot.messages import Channel, Failed, Final, Partial, User
from bot.runtime import open_core
from rag_engine.engine import Engine
from rag_engine.settings import Settings
from rag_engine.types import Answer, IngestProgress


class _ProgressBar:
    """A stderr progress bar for one file, shown once encoding starts (short files finish before it matters)."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: tqdm | None = None

    async def __call__(self, step: IngestProgress) -> None:
        if step.total:
            if self._bar is None:
                self._bar = tqdm(total=step.total, desc=self._label, unit="passage", file=sys.stderr, leave=False)
            self._bar.n = step.done
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    failed = False
    async with Engine.open(settings) as engine:
        await engine.resume_jobs()
        for path in args.files:
            try:
                data = await asyncio.to_thread(Path(path).read_bytes)
            except OSError as error:
                print(f"{path}\tfailed: cannot read the file ({error.strerror})")
                failed = True
                continue
            bar = _ProgressBar(Path(path).name)
            try:
                report = await engine.ingest(args.index, data, Path(path).name, uploader="cli", progress=bar)
            finally:
                bar.close()
            if report.status == "indexed":
                print(f"{path}\tindexed: {report.title} ({report.pages} pages)")
            elif report.status == "duplicate":
                print(f"{path}\talready indexed")
            else:
                print(f"{path}\tfailed: {report.message}")
                failed = True
    return EXIT_FAILED if failed else 0


async def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    async with Engine.open(settings) as engine:
        result = await engine.search(args.index, " ".join(args.query), k=args.top_k, mode=args.mode)
    if args.json:
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
        pages = f"p. {hit.page_start}" if hit.page_start == hit.page_end else f"pp. {hit.page_start}-{hit.page_end}"
        print(f"{rank}. {hit.title}, {pages}  (score {hit.score:.4f}, doc {hit.doc_id}, chunk {hit.chunk_id})")
        print(f"   {hit.text[:300].replace(chr(10), ' ')}")
    return 0


async def cmd_papers(args: argparse.Namespace, settings: Settings) -> int:
    async with Engine.open(settings) as engine:
        docs = await engine.papers(args.index)
    if args.json:
        print_json([{"id": d.id, "title": d.title, "pages": d.page_count, "added": d.created_at} for d in docs])
        return 0
    if not docs:
        print("no papers yet")
    for d in docs:
        print(f"{d.id}\t{d.title}\t{d.page_count} pages\tadded {d.created_at}")
    return 0


async def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    async with Engine.open(settings) as engine:
        doc = await engine.remove(args.index, args.doc_id)
    print(f"removed {doc.id}: {doc.title}")
    return 0


async def cmd_clear(args: argparse.Namespace, settings: Settings) -> int:
    async with Engine.open(settings) as engine:
        removed = await engine.clear(args.index)
    print(f"removed {removed} papers from {args.index}")
    return 0


CLI_USER = User(id="cli", name="cli", is_moderator=True)


async def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    async with open_core(settings, heartbeat=False) as core:
        await core.engine.index(args.index)  # an unknown index is an error here, not an abstention
        channel = Channel("cli", "local", args.index)
        shown = 0
        final: Answer | None = None
        async for event in core.ask(channel, CLI_USER, " ".join(args.question), paper=args.paper):
            if isinstance(event, Partial) and not args.json:
                sys.stdout.write(event.answer[shown:])
                sys.stdout.flush()
                shown = len(event.answer)
            elif isinstance(event, Final):
                final = event.answer
            elif isinstance(event, Failed):
                print(f"paperbot: {event.message}", file=sys.stderr)
                return EXIT_FAILED
    assert final is not None
    if args.json:
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


async def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    async with open_core(settings, heartbeat=False) as core:
        await run_console(core, args.index)
    return 0


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    import llama_cpp
    import torch

    gpu_build = llama_cpp.llama_supports_gpu_offload()
    async with Engine.open(settings) as engine:
        summaries = await engine.summaries()
        beat = await engine.last_heartbeat()
    print(f"data:        {settings.data_dir}")
    print(f"encoder:     {settings.colbert_model} on {'CUDA' if torch.cuda.is_available() and settings.device != 'cpu' else 'CPU'}")
    if settings.llm_backend == "openai":
        print(f"llm:         {settings.llm_model} via {settings.llm_base_url}")
    elif gpu_build:
        layers = "all layers" if settings.n_gpu_layers < 0 else f"{settings.n_gpu_layers} layers"
        print(f"llm:         {settings.llm_model} — llama.cpp with GPU offload ({layers} on the GPU)")
    else:
        print(f"llm:         {settings.llm_model} — llama.cpp on the CPU (this build has no GPU support; "
              "reinstall with CMAKE_ARGS=-DGGML_CUDA=on for CUDA)")
    if beat is None or beat.age_s > 60:
        print("bot:         not running" + (f" (last seen {beat.age_s:.0f} s ago)" if beat else ""))
    else:
        print(f"bot:         running (pid {beat.pid}), model on {beat.runs_on}, queue depth {beat.queue_depth}")
    print(f"indexes:     {len(summaries)}")
    for s in summaries:
        mib = s.embedding_bytes / (1024 * 1024)
        print(f"  {s.name}\t{s.papers} papers, {s.chunks} passages, {s.tokens} token vectors ({mib:.1f} MiB, {s.codec})")
    return 0


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    platform = args.platform or (
        "discord" if settings.discord_token else "slack" if settings.slack_bot_token else "web"
    )
    if platform == "discord":
        from bot.discord_app import serve
    elif platform == "slack":
        from bot.slack_app import serve
    else:
        from bot.web_app import serve
    async with open_core(settings) as core:
        try:
            await serve(core, settings)
        except (OSError, ValueError) as error:  # a taken port, a refused token: one clear line, not a traceback
            print(f"paperbot: {error}", file=sys.stderr)
            return EXIT_FAILED
    return 0
