"""Search speed, in-process and warm: query encoding, then ranking per mode (colbert, lexical, hybrid), median and p95,
at several index sizes; the float16 brute-force MaxSim this replaces is shown next to it up to 10k chunks.

    python bench/bench_search.py [--chunks 1000,10000,100000] [--device cpu|cuda] [--sample PATH] [--repeats 3]
                                 [--threads N]

Indexes come from bench/synthetic.py (real MiniLM token statistics, written in compressed form; its docstring says
what is synthetic) and are kept under .device/ for the next run. Queries: the 10 questions of
tests/test_retrieval_quality.py and 40 sentences of the real papers, encoded once by the real encoder; ranking times
exclude encoding, which is timed on its own (CPU, one question at a time) when the encoder is here.
hybrid = ColBERT top-20 + BM25 top-20 fused, and the 5 passages fetched: what a question costs before generation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import synthetic  # noqa: E402
from bench.machine import describe  # noqa: E402
from rag_engine.retrieval.cache import VectorCache  # noqa: E402
from rag_engine.retrieval.compressed_scorer import CompressedScorer  # noqa: E402
from rag_engine.retrieval.search import Retriever  # noqa: E402
from storage import Database  # noqa: E402

K = 5


def _stats(samples: list[tuple[float, float]]) -> str:
    """median | p95 of wall time, then median process CPU time (all threads): on a machine shared with other jobs
    the CPU time is what the query would take alone, roughly (it also counts threads spinning while they wait)."""
    wall = np.array([w for w, _ in samples]) * 1000
    cpu = np.array([c for _, c in samples]) * 1000
    return f"{np.median(wall):.1f} | {np.percentile(wall, 95):.1f} | {np.median(cpu):.1f}"


async def _timed(fn, inputs, repeats: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(repeats):
        for item in inputs:
            started, cpu = time.perf_counter(), time.process_time()
            await fn(item)
            out.append((time.perf_counter() - started, time.process_time() - cpu))
    return out


async def bench_size(n: int, sample: synthetic.RealSample, device: str, repeats: int) -> None:
    path = synthetic.ROOT / ".device" / f"search-f16-{n}.sqlite3"
    if not path.exists():
        await synthetic.build(path, n, sample)
    async with await Database.open(path) as db:
        index = await db.get_index("bench")
        scorer = CompressedScorer(db, cache=VectorCache(4 << 30), device=device, min_tokens=0)
        vectors = {q: v for q, v in zip(sample.questions, sample.query_vectors, strict=True)}

        async def encode(question: str) -> np.ndarray:
            return vectors[question]

        retriever = Retriever(db, scorer, encode)
        started = time.perf_counter()
        loaded = await scorer.load(index)
        load_s = time.perf_counter() - started
        assert loaded is not None
        tokens = int(loaded.offsets[-1])
        questions = sample.questions
        for q in questions[:3]:  # warm-up
            await retriever.search(index, q, k=K, mode="hybrid")

        colbert = await _timed(lambda q: scorer.top_k(index, vectors[q], K * 4), questions, repeats)
        lexical = await _timed(lambda q: db.lexical_search(index.id, q, K * 4), questions, repeats)
        hybrid = await _timed(lambda q: retriever.search(index, q, k=K, mode="hybrid"), questions, repeats)
        dev = str(loaded.codes.device)
        print(f"| {n:,} | {tokens:,} | colbert (compressed, pruned) | {dev} | {_stats(colbert)} | {load_s:.1f} |")
        print(f"| {n:,} | {tokens:,} | lexical (FTS5 BM25) | cpu | {_stats(lexical)} | |")
        print(f"| {n:,} | {tokens:,} | hybrid (both + fusion + fetch) | {dev} | {_stats(hybrid)} | |")
        if n <= 10_000:
            import torch

            from rag_engine.colbert.maxsim import maxsim_batch

            f16 = loaded.decompress(torch.arange(tokens, device=loaded.codes.device)).cpu().numpy().astype(np.float16)
            offsets = loaded.offsets.cpu().numpy()

            async def brute(q: str) -> None:
                await asyncio.to_thread(maxsim_batch, vectors[q], f16, offsets)

            before = await _timed(brute, questions[:10], 1)
            print(f"| {n:,} | {tokens:,} | colbert, float16 brute force (before) | cpu | {_stats(before)} | |")


def bench_encoding(sample: synthetic.RealSample) -> None:
    if not synthetic.DEFAULT_ENCODER.is_dir():
        print("\n(query encoding: no encoder here)")
        return
    from rag_engine.colbert.encoder import ColBERTEncoder

    encoder = ColBERTEncoder.load(str(synthetic.DEFAULT_ENCODER), synthetic.DEFAULT_ENCODER.parent, "cpu")
    encoder.encode_queries(sample.questions[:2])
    times = []
    for q in sample.questions[:20]:
        started, cpu = time.perf_counter(), time.process_time()
        encoder.encode_queries([q])
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    print(f"\nQuery encoding (MiniLM-L6 colbert-ir, {encoder.device}, one question): median | p95 | CPU ms = "
          f"{_stats(times)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", default="1000,10000,100000")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sample", type=Path, default=synthetic.DEFAULT_SAMPLE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 on a shared machine: waiting threads spin and inflate CPU time)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    sample = synthetic.real_sample(args.sample)
    print(describe())
    print(f"\nRanking only (queries encoded beforehand), k={K}; hybrid takes {4 * K} from each ranking. "
          "Index: synthetic from real MiniLM statistics (bench/synthetic.py), 'pq' residuals "
          "(38 one-byte groups: 40 bytes a token).\n")
    print("| chunks | tokens | mode | device | median ms | p95 ms | median CPU ms | index load s |")
    print("| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for n in (int(x) for x in args.chunks.split(",")):
        await bench_size(n, sample, args.device, args.repeats)
    bench_encoding(sample)


if __name__ == "__main__":
    asyncio.run(main())
