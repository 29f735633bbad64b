"""PDF reading and chunking speed on this machine, and the cost of hostile files.

    python bench/bench_ingest_pdf.py [--models DIR] [--repeat 3] [--hostile-only] [--code DIR] [--timeout 120]

Prints, per real paper: pages, extraction time and pages/s, chunks and chunking time (bert-base-uncased WordPiece,
the colbertv2.0 vocabulary, at the default 180 tokens with 32 overlap); then the peak memory and time of the
deflate bomb (in a fresh process, so the peak is its own) and the time to refuse the 1,200-page file.
Then one row per hostile file of scripts/make_hostile_pdfs.py: `extract_pdf` in a fresh process (outcome, time, peak
RSS; killed after --timeout), and the ingest path's isolated reader with the default budget (outcome, wall time with
the child's start, the child's peak RSS).
--models: a tiny_models output whose colbert/tokenizer.json is used (default: the test cache, built if missing).
--code: another checkout to time `extract_pdf` from (e.g. main before a fix, for before/after figures).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag_engine.chunking import chunk_pages  # noqa: E402
from rag_engine.errors import TooLarge  # noqa: E402
from rag_engine.pdf import extract_pdf  # noqa: E402
from tests.conftest import EDGE_PDFS, REAL_PDFS, _tiny_models_cache  # noqa: E402

MAX_BYTES = 50 * 1024 * 1024
MAX_PAGES = 600

_BOMB_PROBE = """
import resource, sys, time
sys.modules['pymupdf.layout'] = None  # an optional PyMuPDF add-on the reader never uses (as in the isolated reader)
from rag_engine.errors import UnsupportedFile
from rag_engine.pdf import extract_pdf
data = open(sys.argv[1], 'rb').read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    extract_pdf(data, max_bytes=50 * 2**20, max_pages=600)
    outcome = 'indexed'
except UnsupportedFile as error:
    outcome = type(error).__name__
except MemoryError:
    outcome = 'MemoryError'
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(outcome, seconds, before, peak)
"""


_ISOLATED_PROBE = """
import asyncio, resource, sys, time
from rag_engine.errors import UnsupportedFile
from rag_engine.pdf.isolated import ExtractionBudget, extract_pdf_isolated
from rag_engine.settings import EngineSettings
settings = EngineSettings(_env_file=None)
budget = ExtractionBudget(settings.pdf_cpu_seconds, settings.pdf_memory_mb << 20)
data = open(sys.argv[1], 'rb').read()
started = time.perf_counter()
try:
    asyncio.run(extract_pdf_isolated(data, max_bytes=50 * 2**20, max_pages=600, budget=budget))
    outcome = 'indexed'
except UnsupportedFile as error:
    outcome = error.reason
seconds = time.perf_counter() - started
print(outcome, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _hostile_rows(code: Path, timeout: float) -> None:
    """One row per hostile file: `extract_pdf` from `code` in a fresh process, then the ingest path's reader."""
    import os
    import tempfile

    from scripts.make_hostile_pdfs import HOSTILE

    print(f"\nhostile files (extract_pdf from {code}; isolated: the ingest path, default budget)")
    print(f"{'file':<18} {'bytes':>8} {'outcome':>12} {'s':>8} {'peak MiB':>8} | {'isolated':>12} {'s':>6} {'MiB':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for name, build in HOSTILE.items():
            path = Path(folder) / name
            path.write_bytes(build())
            env = os.environ | {"PYTHONPATH": str(code)}
            try:
                probe = subprocess.run([sys.executable, "-c", _BOMB_PROBE, str(path)], cwd=code, env=env,
                                       capture_output=True, text=True, check=True, timeout=timeout)
                outcome, seconds, _, peak = probe.stdout.split()
                cells = f"{outcome:>12} {float(seconds):>8.2f} {int(peak) / 1024:>8.0f}"
            except subprocess.TimeoutExpired:
                cells = f"{'killed':>12} {'>' + format(timeout, '.0f'):>8} {'?':>8}"
            isolated = subprocess.run([sys.executable, "-c", _ISOLATED_PROBE, str(path)], cwd=REPO,
                                      capture_output=True, text=True, check=True)
            outcome, seconds, peak = isolated.stdout.split()
            print(f"{name:<18} {path.stat().st_size:>8,} {cells} | {outcome:>12} {float(seconds):>6.2f} "
                  f"{int(peak) / 1024:>6.0f}")


def _tokenizer(models: Path | None):
    from tokenizers import Tokenizer

    if models is None:
        models = _tiny_models_cache()
        if not (models / "DONE").exists():
            from training.tiny_models import build_all

            build_all(models)
            (models / "DONE").write_text("ok")
    tokenizer = Tokenizer.from_file(str(models / "colbert" / "tokenizer.json"))
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def _best(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hostile-only", action="store_true", help="only the hostile files' table")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose extract_pdf the hostile rows time")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a hostile probe is killed")
    args = parser.parse_args(argv)
    if args.hostile_only:
        _hostile_rows(args.code.resolve(), args.timeout)
        return
    count = _tokenizer(args.models)

    print(f"{'paper':<18} {'pages':>5} {'extract s':>9} {'pages/s':>8} {'chunks':>6} {'chunk s':>8} {'mean tok':>8}")
    total_pages = total_extract = total_chunk = 0.0
    for path in sorted(REAL_PDFS.glob("*.pdf")):
        data = path.read_bytes()
        seconds, pdf = _best(lambda: extract_pdf(data, max_bytes=MAX_BYTES, max_pages=MAX_PAGES), args.repeat)
        chunk_seconds, chunks = _best(
            lambda: chunk_pages(pdf.pages, count_tokens=count, max_tokens=180, overlap=32), args.repeat
        )
        mean = statistics.mean(count(chunk.text) for chunk in chunks)
        total_pages += pdf.page_count
        total_extract += seconds
        total_chunk += chunk_seconds
        print(
            f"{path.name:<18} {pdf.page_count:>5} {seconds:>9.3f} {pdf.page_count / seconds:>8.1f} "
            f"{len(chunks):>6} {chunk_seconds:>8.3f} {mean:>8.0f}"
        )
    print(f"{'all':<18} {total_pages:>5.0f} {total_extract:>9.3f} {total_pages / total_extract:>8.1f} "
          f"{'':>6} {total_chunk:>8.3f}")

    probe = subprocess.run(
        [sys.executable, "-c", _BOMB_PROBE, str(EDGE_PDFS / "deflate_bomb_200mb.pdf")],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    outcome, seconds, before, peak = probe.stdout.split()
    print(
        f"\ndeflate_bomb_200mb.pdf: {outcome} in {float(seconds):.3f} s; peak RSS {int(peak) / 1024:.0f} MiB "
        f"(+{(int(peak) - int(before)) / 1024:.1f} MiB over the process with PyMuPDF loaded)"
    )

    data = (EDGE_PDFS / "many_pages_1200.pdf").read_bytes()
    times = []
    for _ in range(max(args.repeat, 5)):
        started = time.perf_counter()
        try:
            extract_pdf(data, max_bytes=MAX_BYTES, max_pages=MAX_PAGES)
        except TooLarge:
            times.append(time.perf_counter() - started)
    print(f"many_pages_1200.pdf: refused (TooLarge) in {statistics.median(times) * 1000:.1f} ms (median)")
    _hostile_rows(args.code.resolve(), args.timeout)


if __name__ == "__main__":
    main()
