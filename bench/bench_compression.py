"""Index compression fidelity: bytes per token and top-10 overlap with the float16 index, on real encoder vectors
and on random ones; recall@5 of the retrieval-quality questions with float16 vs compressed + pruned.

    python bench/bench_compression.py [--encoder DIR] [--random-chunks 1000] [--sample PATH]

--encoder: all-MiniLM-L6-v2 as a colbert-ir checkpoint (384 → 128 by a seeded random orthonormal linear.weight;
TOOLCHAIN.md), default ~/.cache/paperbot-tests/real-models/minilm-colbert (`python -m training.real_models DIR`
builds it). Passages: the shared real papers cut into ~130-word pieces within a page. Queries: the ten questions of
tests/test_retrieval_quality.py plus 40 sentences taken from random passages (real); for random vectors, noisy
copies of 12 tokens of a random passage (pure random queries rank noise).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe  # noqa: E402
from rag_engine.colbert.maxsim import maxsim_batch  # noqa: E402
from rag_engine.retrieval import residual  # noqa: E402
from rag_engine.retrieval.plaid import CompressedIndex, exact_scores, pruned_top_k  # noqa: E402

DEFAULT_ENCODER = Path.home() / ".cache/paperbot-tests/real-models/minilm-colbert"


def real_passages() -> tuple[list[str], list[tuple[str, int]]]:
    import pymupdf

    from tests.conftest import REAL_PDFS

    texts, where = [], []
    for pdf in sorted(REAL_PDFS.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            for number, page in enumerate(doc, start=1):
                words = page.get_text().split()
                for i in range(0, max(len(words) - 20, 0), 130):
                    texts.append(" ".join(words[i : i + 130]))
                    where.append((pdf.name, number))
    return texts, where


def top(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def fidelity(name: str, vectors: np.ndarray, offsets: np.ndarray, queries: list[np.ndarray], nbits: int) -> dict:
    started = time.perf_counter()
    book = residual.train(vectors, nbits=nbits)
    codes, packed = residual.compress(book, vectors)
    seconds = time.perf_counter() - started
    index = CompressedIndex.build(book, np.arange(len(offsets) - 1), offsets, codes, packed, 0)
    exact_overlap, pruned_overlap, pruned_ms = [], [], []
    f16 = vectors.astype(np.float16)
    for q in queries:
        reference = set(top(maxsim_batch(q, f16, offsets), 10))
        exact_overlap.append(len(reference & set(top(exact_scores(index, q), 10))) / 10)
        t = time.perf_counter()
        pruned = pruned_top_k(index, q, 10)
        pruned_ms.append((time.perf_counter() - t) * 1000)
        pruned_overlap.append(len(reference & {c for c, _ in pruned}) / 10)
    per_token = 2 + packed.shape[1]  # uint16 centroid id + packed residual
    print(
        f"| {name} | {nbits} | {len(offsets) - 1:,} | {len(vectors):,} | {len(book.centroids):,} | {per_token} "
        f"| {per_token * 8 / vectors.shape[1]:.2f} | {np.mean(exact_overlap):.3f} | {np.mean(pruned_overlap):.3f} "
        f"| {np.median(pruned_ms):.1f} | {seconds:.1f} |"
    )
    return {"index": index}


def recall_at_5(index: CompressedIndex | None, q_vectors, f16, offsets, where, questions) -> int:
    found = 0
    for q, (paper, _, pages) in zip(q_vectors, questions, strict=True):
        ids = [c for c, _ in pruned_top_k(index, q, 5)] if index is not None else top(maxsim_batch(q, f16, offsets), 5)
        found += any(where[i][0] == paper and where[i][1] in pages for i in ids)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, default=DEFAULT_ENCODER)
    parser.add_argument("--random-chunks", type=int, default=1000)
    parser.add_argument("--sample", type=Path, default=Path(__file__).resolve().parents[1] / ".device/search-real.npz",
                        help="encoded passages kept by bench/synthetic.py (made here first when missing)")
    args = parser.parse_args()
    print(describe())
    header = (
        "| vectors | bits | passages | tokens | centroids | bytes/token | bits/dim | top-10 overlap, compressed exact "
        "| top-10 overlap, compressed + pruned | pruned ms/query | train+compress s |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    print("\nTop-10 overlap: against brute-force MaxSim over the float16 vectors (the index as stored today).\n")
    print(header)

    rng = np.random.default_rng(0)
    results: dict = {}
    if args.encoder.is_dir() or args.sample.exists():
        from bench import synthetic
        from tests.test_retrieval_quality import QUESTIONS

        sample = synthetic.real_sample(args.sample, args.encoder)  # the same passages, encoded once and kept
        _, where = real_passages()
        offsets = sample.offsets
        vectors = np.load(args.sample)["vectors"].astype(np.float32)
        q_vectors = list(sample.query_vectors)  # the 10 questions, then 40 sentences of the papers
        for nbits in (1, 2):
            results[nbits] = fidelity("MiniLM colbert-ir (real papers)", vectors, offsets, q_vectors, nbits)
    else:
        print(f"(no encoder at {args.encoder}: real-vector rows skipped)")

    n = args.random_chunks
    offsets_r = np.concatenate([[0], np.cumsum(rng.integers(60, 181, n))])
    random_vectors = rng.standard_normal((int(offsets_r[-1]), 128)).astype(np.float32)
    random_vectors /= np.linalg.norm(random_vectors, axis=1, keepdims=True)
    random_queries = []
    for _ in range(50):
        p = int(rng.integers(n))
        q = random_vectors[offsets_r[p] : offsets_r[p] + 12] + 0.08 * rng.standard_normal((12, 128)).astype(np.float32)
        random_queries.append(q / np.linalg.norm(q, axis=1, keepdims=True))
    for nbits in (1, 2):
        fidelity("random unit (noisy-copy queries)", random_vectors, offsets_r, random_queries, nbits)

    if results:
        print("\nRecall@5 (answer page among the 5 best passages), ColBERT alone, the 10 questions of "
              "tests/test_retrieval_quality.py:\n")
        print("| index | found in top 5 |\n| --- | ---: |")
        f16 = vectors.astype(np.float16)
        print(f"| float16, brute force | {recall_at_5(None, q_vectors[:10], f16, offsets, where, QUESTIONS)}/10 |")
        for nbits in (1, 2):
            got = recall_at_5(results[nbits]["index"], q_vectors[:10], f16, offsets, where, QUESTIONS)
            print(f"| {nbits}-bit residuals, pruned | {got}/10 |")


if __name__ == "__main__":
    main()
