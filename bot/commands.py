"""The CLI's subcommands, one coroutine each: call the library, print the result."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tqdm import tqdm

from bot.cli import EXIT_FAILED, EXIT_USAGE, print_json
from rag_engine.engine import Engine
from rag_engine.settings import Settings
from rag_engine.types import IngestProgress


async def _require_index(engine: Engine, name: str) -> bool:
    if await engine.has_index(name):
        return True
    print(f"paperbot: there is no index named '{name}'. Create it with: paperbot ingest --index {name} FILE...", file=sys.stderr)
    return False


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
        if not await _require_index(engine, args.index):
            return EXIT_USAGE
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
        if not await _require_index(engine, args.index):
            return EXIT_USAGE
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
        if not await _require_index(engine, args.index):
            return EXIT_USAGE
        doc = await engine.remove(args.index, args.doc_id)
    print(f"removed {doc.id}: {doc.title}")
    return 0


async def cmd_clear(args: argparse.Namespace, settings: Settings) -> int:
    async with Engine.open(settings) as engine:
        if not await _require_index(engine, args.index):
            return EXIT_USAGE
        removed = await engine.clear(args.index)
    print(f"removed {removed} papers from {args.index}")
    return 0
