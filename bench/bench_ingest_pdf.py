"""PDF reading and chunking speed on this machine, and the cost of hostile files.

    python bench/bench_ingest_pdf.py [--models DIR] [--repeat 3]

Prints, per real paper: pages, extraction time and pages/s, chunks and chunking time (bert-base-uncased WordPiece,
the colbertv2.0 vocabulary, at the default 180 tokens with 32 overlap); then the peak memory and time of the
deflate bomb (in a fresh process, so the peak is its own) and the time to refuse the 1,200-page file.
--models: a tiny_models output whose colbert/tokenizer.json is used (default: the test cache, built if missing).
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
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(outcome, seconds, before, peak)
"""


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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
