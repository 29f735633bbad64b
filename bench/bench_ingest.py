"""Ingestion throughput end to end (read PDF → chunk → encode → store), through the real Engine.

    python bench/bench_ingest.py [--models DIR] [--base] [--device cpu|cuda] [--papers DIR] [--first N]
                                 [--copies N] [--concurrency 1,4]

Ingests every PDF of ../shared/data/pdfs/real into a fresh index and prints pages/s and passages/s. The tiny test
ColBERT measures everything but the encoder; `--base` repeats it with a random BERT-base ColBERT of the real
colbertv2.0 shape (110 M parameters: what a user's ingest costs; slow on a CPU).
`--copies N` ingests each paper N times, each copy made distinct (a PDF comment after its end: other bytes, the same
pages) so that none is skipped as a duplicate. `--concurrency` ingests that many papers at a time, as `paperbot
ingest` with several files and a flood of uploads do: their reading (child processes, `PAPERBOT_PDF_READERS` at once)
overlaps the encoding of another. With more than one at a time, the stage columns are busy seconds summed over the
papers in flight, so they add up to more than the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_colbert import _base_checkpoint  # noqa: E402
from machine import describe  # noqa: E402

from rag_engine.engine import Engine  # noqa: E402
from rag_engine.settings import EngineSettings  # noqa: E402


STAGES = ("extract", "chunk", "encode", "store")


async def ingest_all(
    model: Path, papers: list[bytes], names: list[str], device: str, concurrency: int
) -> tuple[int, int, float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = EngineSettings(_env_file=None, data_dir=Path(tmp), colbert_model=str(model), device=device)
        async with Engine.open(settings) as engine:
            await engine.encoders.get()  # load time is not ingest time
            gate = asyncio.Semaphore(concurrency)

            async def one(data: bytes, name: str):
                async with gate:
                    report = await engine.ingest("bench", data, name)
                assert report.status == "indexed", report
                return report

            started = time.perf_counter()
            reports = await asyncio.gather(*(one(data, name) for data, name in zip(papers, names, strict=True)))
            seconds = time.perf_counter() - started
            stages = dict.fromkeys(STAGES, 0.0)
            for report in reports:
                for name, spent in report.stages:
                    stages[name] += spent
            return sum(r.pages for r in reports), sum(r.chunks for r in reports), seconds, stages


def distinct_copies(paths: list[Path], copies: int) -> tuple[list[bytes], list[str]]:
    """Each paper `copies` times, every copy other bytes (a comment after %%EOF) with the same pages."""
    data, names = [], []
    for k in range(copies):
        for path in paths:
            raw = path.read_bytes()
            data.append(raw if k == 0 else raw + f"\n% paperbot bench copy {k}\n".encode())
            names.append(path.name if k == 0 else f"{path.stem}-copy{k}.pdf")
    return data, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, help="a training.tiny_models output folder")
    parser.add_argument("--papers", type=Path, default=REPO.parent / "shared" / "data" / "pdfs" / "real")
    parser.add_argument("--base", action="store_true")
    parser.add_argument("--first", type=int, default=None, help="only the first N papers (by name)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--copies", type=int, default=1, help="each paper this many times, made distinct")
    parser.add_argument("--concurrency", default="1", help="papers ingested at a time, comma-separated for several rows")
    args = parser.parse_args()
    if args.models is None:
        from training.tiny_models import build_all

        args.models = Path(tempfile.mkdtemp()) / "tiny"
        build_all(args.models)
    papers, names = distinct_copies(sorted(args.papers.glob("*.pdf"))[: args.first], args.copies)
    rows = [("tiny ColBERT (2 layers, 64 hidden)", args.models / "colbert")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.base:
            rows.append(("BERT-base ColBERT shape (random)", _base_checkpoint(Path(tmp) / "base", args.models / "colbert")))
        print(describe())
        print("\nEach stage's busy seconds and their share of the wall time (extraction runs in child processes; "
              "at a time > 1 the shares add up to more than 100 %).\n")
        print("| encoder | device | at a time | papers | pages | passages | seconds | pages/s | passages/s | "
              + " | ".join(STAGES) + " |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in STAGES) + " |")
        for name, model in rows:
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                pages, chunks, seconds, stages = asyncio.run(
                    ingest_all(model, papers, names, args.device, concurrency)
                )
                shares = " | ".join(f"{stages[s]:.1f} s ({stages[s] / seconds:.0%})" for s in STAGES)
                print(
                    f"| {name} | {args.device} | {concurrency} | {len(papers)} | {pages} | {chunks} | {seconds:.1f} | "
                    f"{pages / seconds:.1f} | {chunks / seconds:.1f} | {shares} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
