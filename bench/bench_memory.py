"""The bot process's memory with a large channel loaded: RSS after each step, and the peak while loading.

    python bench/bench_memory.py [--chunks 100000] [--device cpu] [--no-encoder]

The index is bench/synthetic.py's (real MiniLM token statistics, written in compressed form; see its docstring),
the one bench_search.py uses. Steps: imports, database open, the index loaded (compressed rows → tensors), one hybrid
search, the MiniLM query encoder loaded (the bot holds one). The LLM is not loaded here: llama.cpp maps its GGUF,
whose pages are the model file's, the same with or without papers.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import synthetic  # noqa: E402
from bench.machine import describe  # noqa: E402
from rag_engine.retrieval.cache import VectorCache  # noqa: E402
from rag_engine.retrieval.compressed_scorer import CompressedScorer  # noqa: E402
from rag_engine.retrieval.search import Retriever  # noqa: E402
from storage import Database  # noqa: E402


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-encoder", action="store_true")
    args = parser.parse_args()
    process = psutil.Process()
    rows: list[tuple[str, int, str]] = []

    def note(step: str, extra: str = "") -> None:
        rows.append((step, process.memory_info().rss, extra))

    sample = synthetic.real_sample()
    path = synthetic.ROOT / ".device" / f"search-f16-{args.chunks}.sqlite3"
    if not path.exists():
        await synthetic.build(path, args.chunks, sample)
    del sample
    import torch  # noqa: F401  (the bot imports it for the encoder anyway)

    note("python + torch + paperbot imported")
    async with await Database.open(path) as db:
        index = await db.get_index("bench")
        note("database open")
        scorer = CompressedScorer(db, cache=VectorCache(4 << 30), device=args.device, min_tokens=0)
        started = time.perf_counter()
        loaded = await scorer.load(index)
        assert loaded is not None
        note("index loaded", f"{len(loaded):,} chunks, {int(loaded.offsets[-1]):,} tokens, {_mib(loaded.nbytes)} MiB "
             f"held, {time.perf_counter() - started:.1f} s")
        query = synthetic.real_sample().query_vectors[0]

        async def encode(_: str):
            return query

        await Retriever(db, scorer, encode).search(index, "attention scaled by square root", k=5, mode="hybrid")
        note("after a hybrid search")
        if not args.no_encoder and synthetic.DEFAULT_ENCODER.is_dir():
            from rag_engine.colbert.encoder import ColBERTEncoder

            encoder = ColBERTEncoder.load(str(synthetic.DEFAULT_ENCODER), synthetic.DEFAULT_ENCODER.parent, "cpu")
            encoder.encode_queries(["warm up"])
            note("MiniLM query encoder loaded")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(describe())
    print(f"\nIndex: {args.chunks:,} chunks, synthetic from real MiniLM statistics (bench/synthetic.py), 'pq' "
          "residuals (38 one-byte groups: 40 bytes a token)."
          f" A float16 copy in memory would be {_mib(int(loaded.offsets[-1]) * 256)} MiB.\n")
    print("| step | RSS MiB | note |\n| --- | ---: | --- |")
    for step, rss, extra in rows:
        print(f"| {step} | {_mib(rss)} | {extra} |")
    print(f"| peak (ru_maxrss) | {_mib(peak)} | |")


if __name__ == "__main__":
    asyncio.run(main())
