"""Ingestion throughput end to end (read PDF → chunk → encode → store), through the real Engine.

    python bench/bench_ingest.py [--models DIR] [--base] [--device cpu|cuda] [--papers DIR] [--first N]

Ingests every PDF of ../shared/data/pdfs/real into a fresh index and prints pages/s and passages/s. The tiny test
ColBERT measures everything but the encoder; `--base` repeats it with a random BERT-base ColBERT of the real
colbertv2.0 shape (110 M parameters: what a user's ingest costs; slow on a CPU).
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


async def ingest_all(model: Path, papers: list[Path], device: str) -> tuple[int, int, float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = EngineSettings(_env_file=None, data_dir=Path(tmp), colbert_model=str(model), device=device)
        async with Engine.open(settings) as engine:
            await engine.encoders.get()  # load time is not ingest time
            pages = chunks = 0
            stages = dict.fromkeys(STAGES, 0.0)
            started = time.perf_counter()
            for pdf in papers:
                report = await engine.ingest("bench", pdf.read_bytes(), pdf.name)
                assert report.status == "indexed", report
                pages += report.pages
                chunks += report.chunks
                for name, seconds in report.stages:
                    stages[name] += seconds
            return pages, chunks, time.perf_counter() - started, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, help="a training.tiny_models output folder")
    parser.add_argument("--papers", type=Path, default=REPO.parent / "shared" / "data" / "pdfs" / "real")
    parser.add_argument("--base", action="store_true")
    parser.add_argument("--first", type=int, default=None, help="only the first N papers (by name)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.models is None:
        from training.tiny_models import build_all

        args.models = Path(tempfile.mkdtemp()) / "tiny"
        build_all(args.models)
    papers = sorted(args.papers.glob("*.pdf"))[: args.first]
    rows = [("tiny ColBERT (2 layers, 64 hidden)", args.models / "colbert")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.base:
            rows.append(("BERT-base ColBERT shape (random)", _base_checkpoint(Path(tmp) / "base", args.models / "colbert")))
        print(describe())
        print("\nOne paper after another; each stage's share of the wall time (extraction runs in a child process).\n")
        print("| encoder | device | papers | pages | passages | seconds | pages/s | passages/s | "
              + " | ".join(STAGES) + " |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in STAGES) + " |")
        for name, model in rows:
            pages, chunks, seconds, stages = asyncio.run(ingest_all(model, papers, args.device))
            shares = " | ".join(f"{stages[s]:.1f} s ({stages[s] / seconds:.0%})" for s in STAGES)
            print(
                f"| {name} | {args.device} | {len(papers)} | {pages} | {chunks} | {seconds:.1f} | "
                f"{pages / seconds:.1f} | {chunks / seconds:.1f} | {shares} |"
            )


if __name__ == "__main__":
    main()
